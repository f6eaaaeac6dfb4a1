"""The golden promise of glexec-import: the same proxies, mapped by the real LCMAPS with a
site's old configuration and by glexec-py with the imported glexec.yaml, get the same
account (uid, primary gid, groups) or are refused by both -- except where the import
report announces a difference, and then exactly that difference is asserted.

Each site of tests/importer/sites/ is made concrete under its own root-owned directory
(@ROOT@): a real test PKI (TestPKI; proxies by grid-proxy-init and voms-proxy-fake), a
vomsdir, the grid-mapfile, groupmapfile and ban lists below, real accounts gxtimp* (uids
47300-47349, made and removed here under the machine-wide session lock) and two copies of
one gridmapdir (one per side, same readdir order).

LCMAPS side: tests/voms/lcmaps_pem_harness.c (pem mode: verify-proxy plus the VOMS parsing
of the LCMAPS core) with the site's lcmaps.db, asked for the policy glexec.conf names.
Three substitutions, because Debian 12 lacks the module or it cannot run in a harness; none
changes which account is chosen: ``path`` = Debian's module directory; the OSG tracking
plugin and posix_enf (which drops root for good) become lcmaps_dummy_good.mod; LCAS's
lcas_userban (LCAS plugins are not packaged) becomes an lcmaps_ban_dn.mod state in front of
the policy, on the same ban file -- LCAS ran before LCMAPS and denied a listed DN.

glexec-py side: the engine's own steps on the imported configuration --
engine.verify_credential, check_namespaces, establish_identity, apply_bans, map_identity --
as root for a root-owned proxy (the caller/PAM/payload steps are not about mapping)."""
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.importer import sites as S
from tests.support import accounts as A

ROOT_BASE = "/var/lib/glexec-py-tests"
MODDIR = "/usr/lib/lcmaps"
HARNESS_SRC = Path(__file__).resolve().parent.parent / "voms" / "lcmaps_pem_harness.c"
CA_DN = "/DC=test/DC=glexec-py/CN=glexec-py Test CA"
VOMS_DN = "/DC=test/DC=glexec-py/CN=voms.example.org"
VOMS_HOST = "voms.example.org"
DN = "/DC=test/DC=glexec-py/CN="

GROUPS = {"gxtimplg": 47300, "gxtimppool": 47310, "gxtimpvp": 47320, "gxtimpvlg": 47330,
          "gxtimpvo": 47340, "gxtimpprod": 47341}
USERS = {"gxtimplocal": (47301, "gxtimplg"), "gxtimpvl": (47331, "gxtimpvlg"),
         **{f"gxtimpp{i:03d}": (47310 + i, "gxtimppool") for i in range(1, 9)},
         **{f"gxtimpv{i:03d}": (47320 + i, "gxtimpvp") for i in range(1, 4)}}

GRID_MAPFILE = f'''# DN and FQAN lines in one file, as YAIM wrote it
"{DN}Alice" gxtimplocal
"{DN}Bob" .gxtimpp
"{DN}Dave Banned" gxtimplocal
"{DN}Eve" .gxtimpp
"{DN}Frank" .gxtimpp
"{DN}Henry" .gxtimpp
"/testvo/Role=NULL/Capability=NULL" .gxtimpv
"/othervo/Role=NULL/Capability=NULL" gxtimpvl
'''
GROUPMAPFILE = '''"/testvo/prod/Role=pilot/Capability=NULL" gxtimpprod
"/testvo/*" gxtimpvo
"/othervo/*" gxtimpvo
'''
BAN_USERS = f'# LCAS ban_users.db\n"{DN}Dave Banned"\n'
BAN_DN = f'"{DN}Dave*"\n'
BAN_FQAN = '"/testvo/banned/*"\n'

# (name, DN, kind, FQANs); in this order on both sides (pool leases depend on it).  One
# caller maps them all: the pool of 8 leaves room under glexec-py's default
# mapping.max_leases_per_caller of 50% (the report warns about it).
PROXIES = [
    ("alice", "Alice", "rfc", None),
    ("alice-limited", "Alice", "limited", None),
    ("bob", "Bob", "rfc", None),
    ("carol-voms", "Carol", "voms", ["/testvo/Role=NULL/Capability=NULL",
                                     "/testvo/prod/Role=pilot/Capability=NULL"]),
    ("dave-banned", "Dave Banned", "rfc", None),
    ("frank-othervo", "Frank", "voms", ["/othervo/Role=NULL/Capability=NULL"]),
    ("henry-group-only", "Henry", "voms", ["/othervo/sub/Role=NULL/Capability=NULL"]),
    ("ivan-unmapped", "Ivan", "rfc", None),
    ("bob-again", "Bob", "rfc", None),
    ("carol-again", "Carol", "voms", ["/testvo/Role=NULL/Capability=NULL",
                                      "/testvo/prod/Role=pilot/Capability=NULL"]),
    # last: where LCMAPS maps it and glexec-py does not, its lease must not shift the others
    ("eve-banned-fqan", "Eve", "voms", ["/testvo/banned/Role=NULL/Capability=NULL"]),
]

# What each side must do, per site; a tuple (lcmaps, glexec) marks an announced difference.
EXPECT = {
    "osg": {"alice": "gxtimplocal", "alice-limited": "gxtimplocal", "bob": None,
            "carol-voms": None, "dave-banned": "gxtimplocal", "eve-banned-fqan": None,
            "frank-othervo": None, "henry-group-only": None, "ivan-unmapped": None,
            "bob-again": None, "carol-again": None},
    "emi": {"alice": "gxtimplocal", "alice-limited": "gxtimplocal", "bob": "gxtimpp",
            "carol-voms": "gxtimpv", "dave-banned": None, "eve-banned-fqan": None,
            "frank-othervo": "gxtimpvl", "henry-group-only": "gxtimpp", "ivan-unmapped": None,
            "bob-again": "gxtimpp", "carol-again": "gxtimpv"},
    "multi": {"alice": "gxtimplocal", "alice-limited": "gxtimplocal", "bob": "gxtimpp",
              "carol-voms": "gxtimpv", "dave-banned": None,
              # policy 'standard' has no ban_fqan: LCMAPS maps Eve by DN; glexec-py's bans are global
              "eve-banned-fqan": ("gxtimpp", None),
              "frank-othervo": "gxtimpp", "henry-group-only": "gxtimpp", "ivan-unmapped": None,
              "bob-again": "gxtimpp", "carol-again": "gxtimpv"},
}
# Announced in the report (policy glexec_get_account, 'differs'): LCMAPS keeps the VOMS
# group of voms_localgroup as primary gid of a DN-mapped pool account; glexec-py uses the
# account's own groups.
GROUP_DIFFERENCE = {("emi", "henry-group-only")}


def _missing():
    if os.geteuid() != 0:
        return "needs root (accounts, root-owned configuration)"
    if not os.path.exists("/usr/include/lcmaps/lcmaps.h"):
        return "liblcmaps-dev is not installed"
    for m in ("lcmaps_verify_proxy.mod", "lcmaps_localaccount.mod", "lcmaps_poolaccount.mod",
              "lcmaps_voms_poolaccount.mod", "lcmaps_voms_localgroup.mod", "lcmaps_ban_dn.mod",
              "lcmaps_ban_fqan.mod", "lcmaps_dummy_good.mod"):
        if not os.path.exists(os.path.join(MODDIR, m)):
            return f"{m} is not installed"
    for tool in ("gcc", "grid-proxy-init", "voms-proxy-fake", "openssl"):
        if not shutil.which(tool):
            return f"{tool} is not installed"
    return None


pytestmark = pytest.mark.skipif(_missing() is not None, reason=f"real LCMAPS side by side: {_missing()}")


@pytest.fixture(scope="module")
def world():
    """Accounts, PKI, proxies and the compiled harness, shared by every site."""
    os.makedirs(ROOT_BASE, mode=0o755, exist_ok=True)
    top = Path(tempfile.mkdtemp(prefix="importer-", dir=ROOT_BASE))
    os.chmod(top, 0o755)
    from tests.support.slurm_fixtures import session_lock    # no-op if this run holds it
    lock = session_lock("needs root")
    next(lock)
    try:
        A.cleanup_leftovers(47300, 47349)
        for g, gid in GROUPS.items():
            A.create_group(g, gid)
        for u, (uid, g) in USERS.items():
            A.create_user(u, uid, g)
        yield _World(top)
    finally:
        try:
            A.cleanup_leftovers(47300, 47349)
            shutil.rmtree(top, ignore_errors=True)
        finally:
            next(lock, None)


class _World:
    def __init__(self, top):
        from tests.support.pki import TestPKI
        self.top = top
        self.pki = TestPKI(top / "pki", ca_dn=CA_DN)
        self.voms_host = self.pki.user(VOMS_DN)
        self.harness = str(top / "harness")
        subprocess.run(["gcc", "-O2", "-o", self.harness, str(HARNESS_SRC), "-llcmaps"], check=True)
        self.proxies = {}
        pdir = top / "proxies"
        pdir.mkdir(mode=0o700)
        users = {}
        for name, cn, kind, fqans in PROXIES:
            if name.endswith("-again"):
                self.proxies[name] = self.proxies[name.replace("-again", "") if name != "carol-again"
                                                  else "carol-voms"]
                continue
            cred = users.setdefault(cn, self.pki.user(DN + cn))
            out = pdir / f"{name}.pem"
            if kind == "voms":
                self._voms(cred, out, fqans)
            else:
                self.pki.proxy(cred, out, limited=kind == "limited")
            self.proxies[name] = out

    def _voms(self, cred, out, fqans):
        vo = fqans[0].split("/")[1]
        cmd = ["voms-proxy-fake", "-q", "-cert", str(cred.cert), "-key", str(cred.key),
               "-certdir", str(self.pki.ca_dir), "-hostcert", str(self.voms_host.cert),
               "-hostkey", str(self.voms_host.key), "-voms", vo, "-uri", f"{VOMS_HOST}:15000",
               "-rfc", "-out", str(out)]
        for q in fqans:
            cmd += ["-fqan", q]
        env = {"PATH": "/usr/bin:/bin", "HOME": str(self.top), "RANDFILE": str(self.top / ".rnd")}
        subprocess.run(cmd, check=True, capture_output=True, env=env)
        os.chmod(out, 0o600)


def _site_root(world, site):
    """@ROOT@ for one site: the files the site's configuration names."""
    root = world.top / site
    for d in ("", "etc", "vomsdir/testvo", "vomsdir/othervo", "gridmapdir", "gridmapdir-lcmaps"):
        (root / d).mkdir(mode=0o755, parents=True, exist_ok=True)
    shutil.copytree(world.pki.ca_dir, root / "certificates")
    for vo in ("testvo", "othervo"):
        (root / "vomsdir" / vo / f"{VOMS_HOST}.lsc").write_text(f"{VOMS_DN}\n{CA_DN}\n")
    for name, text in (("grid-mapfile", GRID_MAPFILE), ("groupmapfile", GROUPMAPFILE),
                       ("ban_users.db", BAN_USERS), ("ban_dn.db", BAN_DN), ("ban_fqan.db", BAN_FQAN)):
        (root / "etc" / name).write_text(text)
    for gmd in ("gridmapdir", "gridmapdir-lcmaps"):
        for prefix, n in (("gxtimpp", 8), ("gxtimpv", 3)):
            for i in range(1, n + 1):
                fd = os.open(root / gmd / f"{prefix}{i:03d}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                os.close(fd)
    assert os.listdir(root / "gridmapdir") == os.listdir(root / "gridmapdir-lcmaps")
    for name, text in S.concrete(site, root).items():
        (root / name).write_text(text)
    return root


# --- the real LCMAPS ---------------------------------------------------------------------

def _oracle_db(site, root, texts):
    db_name = next(n for n in texts if "lcmaps" in n)
    db = texts[db_name].replace(f"{root}/gridmapdir", f"{root}/gridmapdir-lcmaps")
    db = re.sub(r"(?m)^path\s*=.*$", f"path = {MODDIR}", db)
    db = db.replace("lcmaps_glexec_tracking.mod", "lcmaps_dummy_good.mod")
    db = re.sub(r'"lcmaps_posix_enf.mod"(\s*"[^"]*")*', '"lcmaps_dummy_good.mod"', db)
    lcas = next((n for n in texts if "lcas" in n), None)
    if lcas and "pluginname=lcas_userban.mod" in texts[lcas]:
        ban = re.search(r"pluginargs=(\S+)", texts[lcas]).group(1)
        db = db.replace("# Policies:\n", f'lcasban = "lcmaps_ban_dn.mod -banmapfile {ban}"\n# Policies:\n')
        db = re.sub(r"(?m)^(glexec_get_account:\n)(\w+)", r"\1lcasban -> \2\n\2", db)
    (root / "oracle-lcmaps.db").write_text(db)
    return "oracle-lcmaps.db"


def lcmaps_map(world, root, db_name, policy, proxy):
    env = {"PATH": "/usr/bin:/bin", "LCMAPS_DIR": str(root), "LCMAPS_DB_FILE": db_name,
           "LCMAPS_LOG_FILE": str(root / "lcmaps.log"), "LCMAPS_DEBUG_LEVEL": "3",
           "X509_CERT_DIR": str(root / "certificates"), "X509_VOMS_DIR": str(root / "vomsdir")}
    args = [world.harness, "pem", str(proxy)] + (["-p", policy] if policy else [])
    out = subprocess.run(args, env=env, capture_output=True, timeout=120).stdout.decode().strip()
    if not out.startswith("OK "):
        return None
    f = dict(kv.split("=", 1) for kv in out.split()[1:])
    ids = lambda s: [int(x) for x in s.split(",") if x]  # noqa: E731
    pg, sg = ids(f["pgid"]), ids(f["sgid"])
    import pwd
    return {"user": pwd.getpwuid(int(f["uid"])).pw_name, "uid": int(f["uid"]), "gid": pg[0],
            "groups": sorted(set(pg + sg))}


# --- glexec-py ---------------------------------------------------------------------------

def glexec_map(cfg, config_path, proxy):
    from glexec_py import engine
    from glexec_py.core.handoff import CallerFacts
    from glexec_py.errors import GlexecError

    class Call(engine.Call):
        def audit(self, event, **extra):      # records are not what is compared here
            self.events.append(event)

    call = Call(engine.Paths("/usr/lib/glexec-py/glexec-engine.py", config_path))
    call.events, call.cfg = [], cfg
    call.facts = CallerFacts([b"glexec"], [b"GLEXEC_CLIENT_CERT=" + str(proxy).encode()], 0, 0, 0,
                             0, 0, 0, os.getpid(), os.getppid(), 0, 0, 0o22, False, (), (), b"/")
    call.caller_names = ("root", "root", ("root",))
    try:
        verified = engine.verify_credential(call, cfg)
        engine.check_namespaces(call, cfg, verified)
        identity = engine.establish_identity(call, cfg, verified)
        engine.apply_bans(call, cfg, identity)
        t = engine.map_identity(call, cfg, identity)
    except GlexecError as e:
        return None, e.reason
    return {"user": t.name, "uid": t.uid, "gid": t.gid, "groups": sorted(set(t.groups))}, None


def _base(user):
    return None if user is None else user.rstrip("0123456789")


@pytest.mark.parametrize("site", ["osg", "emi", "multi"])
def test_imported_config_maps_like_lcmaps(world, site):
    from glexec_py.core.config import parse_config
    root = _site_root(world, site)
    texts = S.concrete(site, root)
    conf, conf_text, db, db_text, lcas, lcas_text = S.inputs(site, root)
    from glexec_tools.importer import plan
    wanted = plan.referenced_files(conf, conf_text, db, db_text, lcas, lcas_text)
    files = {p: tuple(os.listdir(p)) if kind == "ca_dir" else Path(p).read_bytes()
             for p, kind in wanted.items()}
    result = plan.translate(conf, conf_text, db, db_text, lcas, lcas_text, files,
                            state_dir=str(root / "state"), audit_file=str(root / "audit.jsonl"))
    assert result.yaml_text is not None and not result.errors, result.findings
    checked = {f.file for f in result.findings if f.file in wanted and f.status == "translated"}
    assert checked == set(wanted), (sorted(checked), sorted(wanted))   # every file checked
    config_path = root / "glexec.yaml"
    config_path.write_text(result.yaml_text)
    cfg = parse_config(result.yaml_text, str(config_path))
    from glexec_tools.importer.report import Report
    from glexec_tools.importer.sources import parse_glexec_conf
    policy = parse_glexec_conf(conf_text, conf, Report()).get("lcmaps_get_account_policy")
    oracle = _oracle_db(site, root, texts)
    rows = []
    for name, *_ in PROXIES:
        proxy = world.proxies[name]
        theirs = lcmaps_map(world, root, oracle, policy.value if policy else None, proxy)
        ours, why = glexec_map(cfg, str(config_path), proxy)
        rows.append((name, theirs, ours, why))
    table = "\n".join(f"  {n}: LCMAPS {t}  glexec-py {o or why}" for n, t, o, why in rows)
    differences = [f for f in result.findings if f.status in ("differs", "stricter")]
    for name, theirs, ours, why in rows:
        want = EXPECT[site][name]
        want_lcmaps, want_ours = want if isinstance(want, tuple) else (want, want)
        assert _base(theirs and theirs["user"]) == want_lcmaps, f"LCMAPS oracle, {site}/{name}:\n{table}"
        assert _base(ours and ours["user"]) == want_ours, f"glexec-py, {site}/{name}:\n{table}"
        if isinstance(want, tuple):       # announced in the report as stricter
            assert any(f.status == "stricter" and "ban_fqan" in f.why for f in differences), table
            continue
        if theirs is None:
            continue
        assert ours["uid"] == theirs["uid"], f"{site}/{name}: different account\n{table}"
        if (site, name) in GROUP_DIFFERENCE:
            assert any(f.status == "differs" and "primary gid" in f.why for f in differences), table
            assert theirs["gid"] == GROUPS["gxtimpvo"] and ours["gid"] == GROUPS["gxtimppool"], table
            continue
        assert (ours["gid"], ours["groups"]) == (theirs["gid"], theirs["groups"]), \
            f"{site}/{name}: different groups\n{table}"
    # the same pool entries were leased, in the same order, on both sides (but for the
    # announced differences: LCMAPS alone leased for them)
    only_lcmaps = {theirs["user"] for name, theirs, ours, _ in rows if theirs and not ours}

    def leases(d):
        out = {}
        for n in os.listdir(d):
            out.setdefault(os.stat(os.path.join(d, n)).st_ino, []).append(n)
        return sorted(tuple(sorted(v)) for v in out.values()
                      if len(v) == 2 and not set(v) & only_lcmaps)
    assert leases(root / "gridmapdir") == leases(root / "gridmapdir-lcmaps"), table
    assert len(leases(root / "gridmapdir")) == {"osg": 0, "emi": 3, "multi": 4}[site], table
