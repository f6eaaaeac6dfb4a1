"""VOMS groups through the installed binary: mapping.groupmapfile (LCMAPS voms_localgroup)
in front of voms_pool / voms_local (LCMAPS voms_poolaccount / voms_localaccount), lease
names with group names, GLEXEC_MAPCOUNT leases, and a side-by-side run of the real LCMAPS
(``vomslocalgroup -> vomspoolaccount``, pem harness) on copies of the same gridmapdir.

Accounts: groups gxtvgprod 47160, gxtvgvo 47161, gxtvpool 47162; pool gxtvpool01-03
47163-47165 (primary group gxtvpool, which must never reach the payload)."""
import os
import re
import shutil
import subprocess

import pytest

from glexec_py.core.leases import lease_name
from tests.privileged.conftest import USER1_DN, USER2_DN
from tests.support import accounts as acc
from tests.support import install as inst

VO, HOST = "testvo", "voms.example.org"
VOMS_DN = "/DC=test/DC=glexec-py/CN=voms.example.org"
F_VO = "/testvo/Role=NULL/Capability=NULL"
F_PROD = "/testvo/prod/Role=pilot/Capability=NULL"
GROUPS = {"gxtvgprod": 47160, "gxtvgvo": 47161, "gxtvpool": 47162}
POOL = {"gxtvpool01": 47163, "gxtvpool02": 47164, "gxtvpool03": 47165}
GROUPMAP = f'"{F_PROD}" gxtvgprod\n"/testvo/*" gxtvgvo\n'
MODDIR = "/usr/lib/lcmaps"
HARNESS_SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "voms",
                           "lcmaps_pem_harness.c")
_ID = re.compile(r"uid=(\d+)\((\w+)\) gid=(\d+)\((\w+)\) groups=(.*)")


@pytest.fixture(scope="module")
def vg_accounts(accounts):
    made_groups, made_users = [], []
    try:
        for name, gid in GROUPS.items():
            acc.create_group(name, gid)
            made_groups.append(name)
        for name, uid in POOL.items():
            made_users.append(acc.create_user(name, uid, "gxtvpool"))
        yield made_users
    finally:
        acc.kill_uid_processes(set(POOL.values()))
        for name in POOL:
            acc.remove_user(name)
        for name in made_groups:
            acc.remove_group(name)


def _voms_fake(pkis, user, out, fqans, run_dir):
    host = pkis.pki.user(VOMS_DN)
    cmd = ["voms-proxy-fake", "-q", "-cert", str(user.cert), "-key", str(user.key),
           "-certdir", str(pkis.pki.ca_dir), "-hostcert", str(host.cert), "-hostkey", str(host.key),
           "-voms", VO, "-uri", f"{HOST}:15000", "-rfc", "-out", str(out)]
    for f in fqans:
        cmd += ["-fqan", f]
    subprocess.run(cmd, check=True, capture_output=True, env={"PATH": "/usr/bin:/bin", "HOME": str(run_dir)})
    return out


@pytest.fixture(scope="module")
def proxies(pkis, run_dir):
    if not shutil.which("voms-proxy-fake"):
        pytest.skip("voms-proxy-fake (voms-clients) is not installed")
    return {"vo_prod": _voms_fake(pkis, pkis.user1, run_dir / "vg-vo-prod.pem", [F_VO, F_PROD], run_dir),
            "prod_vo": _voms_fake(pkis, pkis.user1, run_dir / "vg-prod-vo.pem", [F_PROD, F_VO], run_dir),
            "user2": _voms_fake(pkis, pkis.user2, run_dir / "vg-user2.pem", [F_VO, F_PROD], run_dir)}


class Setup:
    def __init__(self, gx, vomsdir, gridmapdir, groupmap):
        self.gx, self.vomsdir, self.gridmapdir, self.groupmap = gx, vomsdir, gridmapdir, groupmap
        # one pilot takes leases for many group sets: these tests are about LCMAPS's lease
        # names and the pool, not the per-caller limit (tests/leases/test_caller_limit.py)
        self.mapping = {"gridmapdir": str(gridmapdir), "groupmapfile": str(groupmap),
                        "max_leases_per_caller": 0}

    def config(self, **mapping):
        self.gx.config(credentials={"vomsdir": str(self.vomsdir)}, mapping={**self.mapping, **mapping})

    def write_groupmap(self, text):
        self.groupmap.write_text(text)
        os.chmod(self.groupmap, 0o644)

    def run(self, which="vo_prod", env=None, args=("/usr/bin/id",)):
        gx = self.gx
        proxy = gx.file(f"vg-{which}.pem", gx.pkis_proxies[which].read_bytes(), mode=0o600)
        return gx.run(list(args), proxy=proxy, env=env)

    def leases(self):
        return sorted(p.name for p in self.gridmapdir.iterdir() if p.name.startswith("%"))


@pytest.fixture
def vg(gx, vg_accounts, proxies):
    etc = gx.prefix / "etc" / "glexec-py"
    vomsdir = etc / "vomsdir"
    shutil.rmtree(vomsdir, ignore_errors=True)
    (vomsdir / VO).mkdir(parents=True, mode=0o755)
    os.chmod(vomsdir, 0o755)
    (vomsdir / VO / f"{HOST}.lsc").write_text(f"{VOMS_DN}\n{gx.pkis.pki.ca_dn}\n")
    d = gx.prefix / "var" / "lib" / "glexec-py" / "gridmapdir"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(mode=0o755)
    for name in POOL:
        (d / name).touch(mode=0o644)
    groupmap = etc / "groupmapfile"
    gx.pkis_proxies = proxies
    s = Setup(gx, vomsdir, d, groupmap)
    s.write_groupmap(GROUPMAP)
    gx.gridmap([("/testvo/*", ".gxtvpool"), (USER1_DN, "gxttarget1")])
    s.config()
    yield s
    shutil.rmtree(d, ignore_errors=True)
    shutil.rmtree(vomsdir, ignore_errors=True)
    groupmap.unlink(missing_ok=True)
    for uid in POOL.values():
        acc._remove_default_proxy(uid)


def _ids(r):
    m = _ID.match(r.stdout.decode())
    assert m, r
    groups = {int(g.split("(")[0]) for g in m.group(5).strip().split(",")}
    return m.group(2), int(m.group(3)), groups


def _lease(*groups, mapcount=0, dn=USER1_DN):
    return lease_name(dn.encode(), tuple(g.encode() for g in groups), mapcount).decode()


def test_primary_from_first_fqan_secondary_from_later(vg):
    r = vg.run("vo_prod")
    vg.gx.assert_granted(r)
    account, gid, groups = _ids(r)
    assert account in POOL
    assert gid == GROUPS["gxtvgvo"]                                   # first FQAN's group
    assert groups == {GROUPS["gxtvgvo"], GROUPS["gxtvgprod"]}         # nothing from the account
    lease = _lease("gxtvgvo", "gxtvgprod")
    assert lease.endswith("%2fcn%3dtest%20user%20one:gxtvgvo:gxtvgprod")
    assert vg.leases() == [lease]
    assert os.stat(vg.gridmapdir / lease).st_ino == os.stat(vg.gridmapdir / account).st_ino
    g = r.grants[0]
    assert g["mapped_by"]["source"] == "voms_pool"
    assert g["mapped_by"]["groups"] == {"primary": ["gxtvgvo"], "secondary": ["gxtvgprod"]}
    assert (g["gid"], g["groups"]) == (GROUPS["gxtvgvo"], [GROUPS["gxtvgvo"], GROUPS["gxtvgprod"]])
    assert g["lease"]["name"] == lease and g["lease"]["groups"] == ["gxtvgvo", "gxtvgprod"]
    again = vg.run("vo_prod")
    vg.gx.assert_granted(again)
    assert _ids(again)[0] == account and again.grants[0]["lease"]["reused"] is True


def test_fqan_order_decides_the_primary_group_and_the_lease(vg):
    one = vg.run("vo_prod")
    two = vg.run("prod_vo")
    vg.gx.assert_granted(one)
    vg.gx.assert_granted(two)
    a1, gid1, _ = _ids(one)
    a2, gid2, groups2 = _ids(two)
    assert gid2 == GROUPS["gxtvgprod"] and groups2 == {GROUPS["gxtvgvo"], GROUPS["gxtvgprod"]}
    assert a1 != a2      # other groups, other lease, other account (as LCMAPS)
    assert vg.leases() == sorted([_lease("gxtvgvo", "gxtvgprod"), _lease("gxtvgprod", "gxtvgvo")])


def test_lease_without_secondary_groups(vg):
    vg.config(lease_secondary_groups=False)
    r = vg.run("vo_prod")
    vg.gx.assert_granted(r)
    assert _ids(r)[2] == {GROUPS["gxtvgvo"], GROUPS["gxtvgprod"]}   # still the payload's groups
    assert vg.leases() == [_lease("gxtvgvo")]


def test_voms_local_takes_the_voms_groups(vg):
    vg.gx.gridmap([("/testvo/*", "gxttarget2")])
    r = vg.run("vo_prod")
    vg.gx.assert_granted(r)
    assert _ids(r) == ("gxttarget2", GROUPS["gxtvgvo"], {GROUPS["gxtvgvo"], GROUPS["gxtvgprod"]})
    assert vg.leases() == []


def test_dn_mapping_keeps_the_account_groups(vg):
    """No FQAN line matches: the DN line maps, with the account's own groups (LCMAPS: the
    DN policy starts from reset credential data)."""
    vg.gx.gridmap([(USER1_DN, "gxttarget1")])
    r = vg.gx.run(["/usr/bin/id"])       # a plain proxy of user1: no FQANs at all
    vg.gx.assert_granted(r)
    t1 = vg.gx.accounts.target1
    assert _ids(r) == ("gxttarget1", t1.gid, set(t1.groups))
    r = vg.run("vo_prod")
    vg.gx.assert_granted(r)
    assert _ids(r) == ("gxttarget1", t1.gid, set(t1.groups))


def test_missing_group_is_refused(vg):
    vg.write_groupmap(f'"{F_PROD}" gxtnosuchgroup\n"/testvo/*" gxtvgvo\n')
    r = vg.run("vo_prod")
    vg.gx.assert_refused(r, 202, "group_missing")
    assert vg.leases() == []


def test_forbidden_group_is_refused(vg):
    vg.config(forbidden_groups=["root", "sudo", "gxtvgprod"])
    vg.gx.assert_refused(vg.run("vo_prod"), 202, "target_unsafe")
    assert vg.leases() == []
    vg.write_groupmap('"/testvo/*" root\n')       # gid 0
    vg.config()
    vg.gx.assert_refused(vg.run("vo_prod"), 202, "target_unsafe")
    assert vg.leases() == []


def test_no_group_for_the_first_fqan_is_refused(vg):
    vg.write_groupmap(f'"{F_PROD}" gxtvgprod\n')
    r = vg.run("vo_prod")
    vg.gx.assert_refused(r, 203, "no_primary_group")
    assert vg.leases() == []


def test_groupmap_all_and_min(vg):
    vg.write_groupmap(f'"{F_VO}" gxtvgvo\n')
    vg.config(groupmap_all=True)
    vg.gx.assert_refused(vg.run("vo_prod"), 203, "voms_group_unmapped")
    vg.config(groupmap_min=2)
    vg.gx.assert_refused(vg.run("vo_prod"), 203, "voms_groups_too_few")
    assert vg.leases() == []
    vg.config(groupmap_min=1)
    r = vg.run("vo_prod")
    vg.gx.assert_granted(r)
    assert _ids(r)[1:] == (GROUPS["gxtvgvo"], {GROUPS["gxtvgvo"]})


def test_mapcount_gives_another_account(vg):
    vg.config(max_mappings_per_credential=3)
    plain = vg.run("vo_prod")
    second = vg.run("vo_prod", env={"GLEXEC_MAPCOUNT": "2"})
    vg.gx.assert_granted(plain)
    vg.gx.assert_granted(second)
    assert _ids(plain)[0] != _ids(second)[0]
    assert _ids(second)[1:] == _ids(plain)[1:]
    lease2 = _lease("gxtvgvo", "gxtvgprod", mapcount=2)
    assert lease2.endswith(":gxtvgvo:gxtvgprod:mapcount=0002")
    assert vg.leases() == sorted([_lease("gxtvgvo", "gxtvgprod"), lease2])
    assert second.grants[0]["lease"]["mapcount"] == 2
    again = vg.run("vo_prod", env={"GLEXEC_MAPCOUNT": "2"})
    vg.gx.assert_granted(again)
    assert _ids(again)[0] == _ids(second)[0]


def test_mapcount_on_a_dn_pool(vg):
    vg.gx.gridmap([(USER2_DN, ".gxtvpool")])
    vg.config(max_mappings_per_credential=2)
    one = vg.gx.run(["/usr/bin/id", "-un"], proxy=vg.gx.proxy("user2"), env={"GLEXEC_MAPCOUNT": "1"})
    vg.gx.assert_granted(one)
    assert vg.leases() == [_lease(mapcount=1, dn=USER2_DN)]


@pytest.mark.parametrize("value", ["4", "0", "-1", "x", "", "1e3", "99999"])
def test_mapcount_out_of_range_is_refused(vg, value):
    vg.config(max_mappings_per_credential=3)
    r = vg.run("vo_prod", env={"GLEXEC_MAPCOUNT": value})
    vg.gx.assert_refused(r, 201, "mapcount_invalid")
    assert r.stderr == b"glexec: GLEXEC_MAPCOUNT must be a number from 1 to 3\n"
    assert vg.leases() == []


def test_mapcount_default_max_is_one(vg):
    vg.gx.assert_refused(vg.run("vo_prod", env={"GLEXEC_MAPCOUNT": "2"}), 201, "mapcount_invalid")
    vg.gx.assert_granted(vg.run("vo_prod", env={"GLEXEC_MAPCOUNT": "1"}))
    assert vg.leases() == [_lease("gxtvgvo", "gxtvgprod", mapcount=1)]


# --- side by side with the real LCMAPS --------------------------------------------------------

def _lcmaps_missing():
    if not os.path.exists("/usr/include/lcmaps/lcmaps.h"):
        return "liblcmaps-dev is not installed"
    for m in ("lcmaps_verify_proxy.mod", "lcmaps_voms_localgroup.mod", "lcmaps_voms_poolaccount.mod"):
        if not os.path.exists(os.path.join(MODDIR, m)):
            return f"{m} is not installed"
    if not shutil.which("gcc"):
        return "gcc is not installed"
    return None


def _copy_pool(src, dst, with_leases):
    """The pool entries of ``src`` (and, with ``with_leases``, its leases as hard links to
    the same entries) in a new directory; glexec-py's own metadata is not copied."""
    dst.mkdir(mode=0o755)
    by_ino = {}
    for p in sorted(src.iterdir()):
        if p.name.startswith((".", "%")):
            continue
        (dst / p.name).touch(mode=0o644)
        by_ino[os.stat(p).st_ino] = dst / p.name
    if with_leases:
        for p in src.iterdir():
            if p.name.startswith("%"):
                os.link(by_ino[os.stat(p).st_ino], dst / p.name)


def _lcmaps(gx, work, proxy, gridmapdir, groupmap, secondary, local=False):
    """The real LCMAPS: ``verifyproxy -> vomslocalgroup -> vomspoolaccount`` (or, with
    ``local``, ``-> vomslocalaccount --use-voms-gid``)."""
    harness = work / "harness"
    if not harness.exists():
        subprocess.run(["gcc", "-O2", "-o", str(harness), HARNESS_SRC, "-llcmaps"], check=True)
    pool_opts = "" if secondary else " -do_not_use_secondary_gids"
    gridmapfile = inst.gridmap_path(gx.prefix)
    mapper = (f'"lcmaps_voms_localaccount.mod -gridmapfile {gridmapfile} --use-voms-gid"\n' if local else
              f'"lcmaps_voms_poolaccount.mod -gridmapfile {gridmapfile}" "-gridmapdir {gridmapdir}{pool_opts}"\n')
    (work / "lcmaps.db").write_text(
        f"path = {MODDIR}\n"
        f'verifyproxy = "lcmaps_verify_proxy.mod" "-certdir {inst.trust_dir_path(gx.prefix)}"\n'
        f'vomslocalgroup = "lcmaps_voms_localgroup.mod -groupmapfile {groupmap} -mapmin 0"\n'
        f"vomsmapper = {mapper}"
        "voms:\nverifyproxy -> vomslocalgroup\nvomslocalgroup -> vomsmapper\n")
    env = {"PATH": "/usr/bin:/bin", "LCMAPS_DIR": str(work), "LCMAPS_DB_FILE": "lcmaps.db",
           "LCMAPS_LOG_FILE": str(work / "lcmaps.log"), "LCMAPS_DEBUG_LEVEL": "3",
           "X509_CERT_DIR": str(inst.trust_dir_path(gx.prefix)), "X509_VOMS_DIR": str(gx.prefix / "etc" / "glexec-py" / "vomsdir")}
    p = subprocess.run([str(harness), "pem", str(proxy)], env=env, capture_output=True, text=True)
    m = re.match(r"OK uid=(\d+) pgid=([\d,]*) sgid=([\d,]*) poolindex=(\S*)", p.stdout)
    assert m, (p.stdout, p.stderr, (work / "lcmaps.log").read_text(errors="replace")[-3000:])
    ints = lambda s: [int(x) for x in s.split(",") if x]  # noqa: E731
    return int(m.group(1)), ints(m.group(2)), ints(m.group(3)), m.group(4)


@pytest.mark.skipif(_lcmaps_missing() is not None, reason=f"real LCMAPS unavailable: {_lcmaps_missing()}")
@pytest.mark.parametrize("secondary", [True, False], ids=["with-sgids", "do_not_use_secondary_gids"])
def test_same_lease_and_groups_as_lcmaps(vg, secondary):
    gx = vg.gx
    pristine = gx.box / "pristine"
    _copy_pool(vg.gridmapdir, pristine, with_leases=False)
    vg.config(lease_secondary_groups=secondary)
    r = vg.run("vo_prod")
    gx.assert_granted(r)
    account, gid, groups = _ids(r)
    (ours,) = vg.leases()

    # 1. the same request on a copy of the pool as it was: same lease name, same groups
    work = gx.box / "lcmaps"
    work.mkdir()
    proxy = gx.pkis_proxies["vo_prod"]
    uid, pgid, sgid, lease = _lcmaps(gx, work, proxy, pristine, vg.groupmap, secondary)
    print(f"\nglexec-py: {account} gid={gid} groups={sorted(groups)} lease={ours}"
          f"\nLCMAPS:    uid={uid} pgid={pgid} sgid={sgid} poolindex={lease}")
    assert lease == ours
    assert pgid == [gid]
    assert set(pgid + sgid) == groups and sgid == [GROUPS["gxtvgprod"]]
    assert sorted(p.name for p in pristine.iterdir() if p.name.startswith("%")) == [ours]

    # 2. on a copy of glexec-py's gridmapdir: LCMAPS finds our lease and reuses our account
    ours_copy = gx.box / "ours"
    _copy_pool(vg.gridmapdir, ours_copy, with_leases=True)
    uid2, pgid2, sgid2, lease2 = _lcmaps(gx, work, proxy, ours_copy, vg.groupmap, secondary)
    assert (uid2, lease2) == (POOL[account], ours)
    assert (pgid2, sgid2) == (pgid, sgid)
    assert sorted(p.name for p in ours_copy.iterdir() if p.name.startswith("%")) == [ours]
    assert os.stat(ours_copy / ours).st_nlink == 2


@pytest.mark.skipif(_lcmaps_missing() is not None, reason=f"real LCMAPS unavailable: {_lcmaps_missing()}")
def test_voms_local_groups_as_lcmaps_use_voms_gid(vg):
    """voms_local with a groupmapfile = vomslocalgroup -> vomslocalaccount --use-voms-gid."""
    gx = vg.gx
    gx.gridmap([("/testvo/*", "gxttarget2")])
    r = vg.run("prod_vo")
    gx.assert_granted(r)
    account, gid, groups = _ids(r)
    work = gx.box / "lcmaps"
    work.mkdir()
    uid, pgid, sgid, lease = _lcmaps(gx, work, gx.pkis_proxies["prod_vo"], vg.gridmapdir, vg.groupmap,
                                     True, local=True)
    assert uid == gx.accounts.target2.uid and account == "gxttarget2"
    assert pgid == [gid] == [GROUPS["gxtvgprod"]]
    assert sgid == [GROUPS["gxtvgvo"]] and set(pgid + sgid) == groups
