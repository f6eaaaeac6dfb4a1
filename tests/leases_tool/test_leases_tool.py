"""glexec-leases (tools/bin/glexec-leases) on a temporary gridmapdir.

Runs the launcher from the source tree as a subprocess (as root; one test as uid 65534).
The gridmapdir lives in /var/lib/glexec-py-tests/leasestool-* (root 0755, removed after
each test).  No real accounts are needed: pool entries without a passwd entry have no
processes, so the tool's process check passes for them.
"""
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from glexec_py.core.leases import lease_name
from glexec_py.effects.gridmapdir import GridmapDir

REPO = Path(__file__).resolve().parents[2]
TOOL = REPO / "tools" / "bin" / "glexec-leases"
BASE = Path("/var/lib/glexec-py-tests")
POOL = "gxlpool"
DNS = [f"/DC=test/DC=leases-tool/CN=User {c}" for c in "ABCD"]

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="glexec-leases is root only")


@pytest.fixture
def site():
    BASE.mkdir(mode=0o755, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="leasestool-", dir=BASE))
    os.chmod(root, 0o755)
    gmd = root / "gridmapdir"
    gmd.mkdir(mode=0o755)
    for i in range(1, 5):
        (gmd / f"{POOL}{i:02d}").touch(mode=0o644)
    state = root / "state"
    state.mkdir(mode=0o755)
    s = Site(root, gmd, state, root / "audit.jsonl")
    yield s
    shutil.rmtree(root)


class Site:
    def __init__(self, root, gmd, state, audit):
        self.root, self.gmd, self.state, self.audit_file = root, gmd, state, audit

    def run(self, *args, json_out=False, user=None):
        argv = [str(TOOL), *args, "--gridmapdir", str(self.gmd), "--audit-file",
                str(self.audit_file), "--state-dir", str(self.state)]
        if json_out:
            argv.append("--json")
        kw = {}
        if user is not None:
            kw = {"user": user, "group": user, "extra_groups": []}
        r = subprocess.run(argv, capture_output=True, text=True, timeout=60, **kw)
        if json_out and r.stdout:
            r.data = json.loads(r.stdout)
        return r

    def lease(self, i):
        with GridmapDir(str(self.gmd)) as gd:
            return gd.acquire(DNS[i].encode(), POOL)

    def snapshot(self):
        """Everything the tool could change: names, inodes, link counts, mtimes, the
        sidecar records and the audit file."""
        out = {}
        for p in sorted(self.root.rglob("*")):
            st = p.lstat()
            out[str(p.relative_to(self.root))] = (
                st.st_ino, st.st_nlink, st.st_mtime_ns, st.st_size,
                p.read_bytes() if p.is_file() and p.parent.name == ".glexec-py"
                and not p.name.startswith(".") else None)
        return out

    def audit(self):
        if not self.audit_file.exists():
            return []
        return [json.loads(x) for x in self.audit_file.read_text().splitlines()]

    def age(self, i, seconds):
        """Make the lease of DNS[i] look last used ``seconds`` ago."""
        p = self.gmd / lease_name(DNS[i].encode()).decode()
        t = time.time() - seconds
        os.utime(p, (t, t), follow_symlinks=False)

    def confirm(self, account, *, prune_time, sweep_time, result="no_processes",
                state="no_files", boot=None):
        with open("/proc/sys/kernel/random/boot_id") as f:
            cur = f.read().strip()
        for sub, rec in (("prune", {"v": 1, "account": account, "uid": 1, "time": prune_time,
                                    "boot_id": boot or cur, "result": result}),
                         ("sweep", {"v": 1, "account": account, "uid": 1, "state": state,
                                    "swept_at_unix": int(sweep_time)})):
            d = self.state / sub
            d.mkdir(mode=0o700, exist_ok=True)
            (d / f"{account}.json").write_text(json.dumps(rec))


def test_list_show_json(site):
    a1, l1, _ = site.lease(0)
    a2, l2, _ = site.lease(1)
    r = site.run("list", json_out=True)
    assert r.returncode == 0, r.stderr
    rows = {x["account"]: x for x in r.data["leases"]}
    assert set(rows) == {a1.decode(), a2.decode()}
    assert rows[a1.decode()]["dn"] == DNS[0] and rows[a1.decode()]["lease"] == l1.decode()
    assert rows[a1.decode()]["state"] == "leased"
    assert rows[a1.decode()]["last_use"] == pytest.approx(
        (site.gmd / l1.decode()).stat().st_mtime)
    assert r.data["counts"] == {"leases": 2, "free": 2, "draining": 0}
    text = site.run("list")
    assert text.returncode == 0 and DNS[0] in text.stdout and "2 free pool entries" in text.stdout

    r = site.run("show", a2.decode(), json_out=True)
    assert r.returncode == 0 and r.data["leases"][0]["dn"] == DNS[1]
    r = site.run("show", "--dn", DNS[0], json_out=True)
    assert r.returncode == 0 and r.data["leases"][0]["account"] == a1.decode()
    r = site.run("show", "--dn", DNS[3], json_out=True)
    assert r.returncode == 1 and r.data["found"] is False
    r = site.run("show", f"{POOL}04", json_out=True)
    assert r.returncode == 1 and r.data["free"] is True


def test_fsck_and_repair(site):
    site.lease(0)
    assert site.run("fsck").returncode == 0
    # a half-made lease (solitary link) and a metadata orphan
    (site.gmd / "%2fdc%3dtest%2fcn%3dhalf").touch(mode=0o644)
    (site.gmd / ".glexec-py" / f"{POOL}04").write_text(
        json.dumps({"v": 1, "account": f"{POOL}04", "lease": "%2fx", "state": "leased"}))
    r = site.run("fsck", json_out=True)
    assert r.returncode == 1
    kinds = {f["kind"] for f in r.data["findings"]}
    assert {"solitary_lease", "meta_orphan"} <= kinds
    assert all(f["why"] for f in r.data["findings"])

    before = site.snapshot()
    r = site.run("repair", "--dry-run", json_out=True)
    assert r.returncode == 1 and {f["kind"] for f in r.data["plan"]} >= {"solitary_lease",
                                                                          "meta_orphan"}
    assert r.data["done"] == []
    assert site.snapshot() == before, "repair --dry-run changed something"

    r = site.run("repair", json_out=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.data["remaining"] == []
    assert site.run("fsck").returncode == 0
    recs = site.audit()
    assert {x["finding"]["kind"] for x in recs if x["action"] == "repair"} >= {
        "solitary_lease", "meta_orphan"}


def test_release_and_drain(site):
    a1, l1, _ = site.lease(0)
    a2, l2, _ = site.lease(1)
    before = site.snapshot()
    for cmd in (("release", l1.decode()), ("release", "--account", a2.decode()),
                ("drain", "--dn", DNS[0]), ("drain", "--account", a1.decode())):
        r = site.run(*cmd, "--dry-run", json_out=True)
        assert r.returncode == 0, (cmd, r.stderr)
        assert r.data["plan"] and r.data["done"] == []
    assert site.snapshot() == before, "--dry-run changed something"
    assert site.audit() == []

    r = site.run("drain", "--account", a1.decode(), json_out=True)
    assert r.returncode == 0 and r.data["done"][0]["account"] == a1.decode()
    with GridmapDir(str(site.gmd)) as gd:
        assert gd.leases()[l1][1]["state"] == "draining"
    r = site.run("drain", "--account", a1.decode(), json_out=True)
    assert r.returncode == 1 and r.data["skipped"][0]["why"] == "already draining"

    r = site.run("release", l2.decode(), json_out=True)
    assert r.returncode == 0 and r.data["done"][0]["account"] == a2.decode()
    assert not (site.gmd / l2.decode()).exists()
    assert (site.gmd / a2.decode()).stat().st_nlink == 1
    r = site.run("release", "%2fno%20such", json_out=True)
    assert r.returncode == 1
    assert site.run("release", "--account", a1.decode(), "--dn", DNS[0]).returncode == 2

    recs = site.audit()
    assert [(x["event"], x["action"], x["account"]) for x in recs] == [
        ("lease_admin", "drain", a1.decode()), ("lease_admin", "release", a2.decode())]
    assert recs[1]["lease"] == l2.decode() and recs[1]["dn"] == DNS[1]
    assert site.run("fsck").returncode == 0


def test_changes_need_an_audit_file(site):
    _a, l1, _ = site.lease(0)
    r = subprocess.run([str(TOOL), "release", l1.decode(), "--gridmapdir", str(site.gmd)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "audit" in r.stderr
    assert (site.gmd / l1.decode()).exists()


def test_expire_lifecycle(site):
    a1, l1, _ = site.lease(0)     # idle for two days
    a2, l2, _ = site.lease(1)     # fresh
    site.age(0, 2 * 86400)
    before = site.snapshot()
    for extra in ((), ("--dry-run",), ("--dry-run", "--yes")):
        r = site.run("expire", "--older-than", "1d", *extra, json_out=True)
        assert r.returncode == 0, r.stderr
        assert [(p["account"], p["action"]) for p in r.data["plan"]] == [(a1.decode(), "drain")]
        assert r.data["done"] == []
    assert site.snapshot() == before, "expire without --yes changed something"

    # phase 1: drain the idle one
    r = site.run("expire", "--older-than", "1d", "--yes", json_out=True)
    assert r.returncode == 0, r.stderr
    assert [(d["account"], d["done"]) for d in r.data["done"]] == [(a1.decode(), "drained")]
    # phase 2 without confirmations: waits
    r = site.run("expire", "--older-than", "1d", "--yes", json_out=True)
    assert r.data["plan"][0]["action"] == "wait" and "prune-users" in r.data["plan"][0]["why"]
    assert (site.gmd / l1.decode()).exists()
    # confirmations made before drain + grace do not count
    drained = (site.gmd / ".glexec-py" / a1.decode()).stat().st_mtime
    site.confirm(a1.decode(), prune_time=drained - 10, sweep_time=drained - 10)
    r = site.run("expire", "--older-than", "1d", "--yes", "--grace", "0", json_out=True)
    assert r.data["plan"][0]["action"] == "wait"
    site.confirm(a1.decode(), prune_time=drained + 1, sweep_time=drained + 2,
                 result="processes")
    r = site.run("expire", "--older-than", "1d", "--yes", "--grace", "0", json_out=True)
    assert r.data["plan"][0]["action"] == "wait" and "no_processes" in r.data["plan"][0]["why"]
    site.confirm(a1.decode(), prune_time=drained + 1, sweep_time=drained + 2,
                 boot="00000000-0000-0000-0000-000000000000")
    r = site.run("expire", "--older-than", "1d", "--yes", "--grace", "0", json_out=True)
    assert r.data["plan"][0]["action"] == "wait" and "boot" in r.data["plan"][0]["why"]
    # valid confirmations, but not after the default 60 s grace
    site.confirm(a1.decode(), prune_time=drained + 1, sweep_time=drained + 2)
    r = site.run("expire", "--older-than", "1d", "--yes", json_out=True)
    assert r.data["plan"][0]["action"] == "wait"
    r = site.run("show", a1.decode(), "--json")
    assert json.loads(r.stdout)["leases"][0]["confirmation"]["ok"] is False
    # phase 2: released
    r = site.run("expire", "--older-than", "1d", "--yes", "--grace", "0", json_out=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert [(d["account"], d["done"]) for d in r.data["done"]] == [(a1.decode(), "released")]
    assert not (site.gmd / l1.decode()).exists() and (site.gmd / l2.decode()).exists()
    assert [x["action"] for x in site.audit()] == ["expire_drain", "expire_release"]
    assert site.run("fsck").returncode == 0


def test_expire_force(site):
    a1, l1, _ = site.lease(0)
    site.age(0, 3600)
    r = site.run("expire", "--older-than", "30m", "--force", "--settle", "0", json_out=True)
    assert r.returncode == 0 and r.data["plan"][0]["action"] == "release"
    assert (site.gmd / l1.decode()).exists()
    r = site.run("expire", "--older-than", "30m", "--force", "--yes", "--settle", "0",
                 json_out=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert [(d["account"], d["done"]) for d in r.data["done"]] == [(a1.decode(), "released")]
    assert [x["action"] for x in site.audit()] == ["expire_drain", "expire_release"]
    assert all(x["forced"] for x in site.audit())
    assert site.run("fsck").returncode == 0


def test_expire_skips_accounts_with_processes(site, monkeypatch):
    """An idle lease whose account runs a process is neither drained nor released."""
    import sys
    sys.path.insert(0, str(REPO / "tools"))
    from glexec_tools.leases import cli as tool
    site.lease(0)
    site.age(0, 7200)
    import pwd
    monkeypatch.setattr(pwd, "getpwnam", lambda n: type("pw", (), {"pw_uid": 4242})())
    monkeypatch.setattr(tool, "uids_with_processes", lambda: {4242})
    rc = tool.main(["expire", "--older-than", "1h", "--yes", "--force", "--settle", "0",
                    "--gridmapdir", str(site.gmd), "--audit-file", str(site.audit_file),
                    "--json"])
    assert rc == 0
    assert site.audit() == []
    with GridmapDir(str(site.gmd)) as gd:
        assert [r[1]["state"] for r in gd.leases().values()] == ["leased"]


def test_non_root_is_refused(site):
    site.lease(0)
    before = site.snapshot()
    for args in (("list",), ("fsck",), ("release", "--account", f"{POOL}01")):
        r = site.run(*args, user=65534)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert "root" in r.stderr
    assert site.snapshot() == before


def test_usage_errors(site):
    r = site.run("expire")                   # --older-than: leases.expire_after (7 days)
    assert r.returncode == 0 and "no lease idle for 7d or more" in r.stdout, r.stdout + r.stderr
    assert site.run("expire", "--older-than", "soon").returncode == 2
    assert site.run("bogus").returncode == 2
    r = subprocess.run([str(TOOL), "list", "--gridmapdir", "relative/dir"], capture_output=True)
    assert r.returncode == 2


def test_duration_parser():
    import sys
    sys.path.insert(0, str(REPO / "tools"))
    from glexec_tools.leases.plan import parse_duration
    assert parse_duration("90") == 90
    assert parse_duration("15m") == 900
    assert parse_duration("1d12h") == 86400 + 43200
    assert parse_duration("2w") == 14 * 86400
    for bad in ("", "1x", "h", "12h3"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_owner_shown_selected_and_checked(site):
    """Leases the engine makes record their owner (canonical identity): list/show print it,
    --dn never selects a case variant's lease by the lower-cased name, and fsck reports a
    record whose owner does not fit the lease."""
    from glexec_py.core import dn as D
    from glexec_py.core.identity import Identity
    from glexec_py.core.mapping import lease_owner as _lease_owner

    def owner(text):
        ident = Identity("x509", "/CN=CA", text, (), (), 0, 0, "", {},
                         canonical=D.canonical(D.parse_slash(text)))
        return _lease_owner(ident, ident.mapping_name)

    upper, lower = DNS[0], DNS[0].replace("CN=User A", "CN=user a")
    with GridmapDir(str(site.gmd)) as gd:
        a1, l1, _ = gd.acquire(upper.encode(), POOL, owner=owner(upper))
        a2, l2, _ = gd.acquire(lower.encode(), POOL, owner=owner(lower))
    assert a1 != a2 and l1 == lease_name(upper.encode()) and b"~" in l2
    rows = {x["account"]: x for x in site.run("list", json_out=True).data["leases"]}
    assert rows[a1.decode()]["owner"] == ["x509", upper]
    assert rows[a2.decode()]["owner"] == ["x509", lower]
    assert upper in site.run("list").stdout
    r = site.run("show", "--dn", lower, json_out=True)
    assert [x["account"] for x in r.data["leases"]] == [a2.decode()]
    assert f"owner:     {upper}" in site.run("show", a1.decode()).stdout
    assert site.run("fsck").returncode == 0
    meta = site.gmd / ".glexec-py" / a2.decode()
    rec = json.loads(meta.read_text())
    rec["owner"] = ["x509", "/DC=test/CN=Mallory"]
    meta.write_text(json.dumps(rec))
    r = site.run("fsck", json_out=True)
    assert r.returncode != 0
    assert "meta_owner_mismatch" in json.dumps(r.data)


def test_fsck_reports_untrusted_pool_entries(site):
    os.chown(site.gmd / f"{POOL}02", 65534, 65534)
    os.chmod(site.gmd / f"{POOL}03", 0o666)
    r = site.run("fsck", json_out=True)
    assert r.returncode != 0, r
    unsafe = sorted(f["names"][0] for f in r.data["findings"] if f["kind"] == "pool_entry_unsafe")
    assert unsafe == [f"{POOL}02", f"{POOL}03"], r.data


def _leases_section(body, **main):
    import sys
    sys.path.insert(0, str(REPO / "tools"))
    from glexec_tools.leases import plan
    from tests.support.glexec_yaml import with_section
    return plan.parse_section(with_section("leases", body, **main), "glexec.yaml")


def test_leases_section_defaults_and_values():
    c = _leases_section(None, gridmapdir="/gmd", state_dir="/st", audit_file="/a.jsonl")
    assert (c.gridmapdir, c.state_dir, c.audit_file) == ("/gmd", "/st", "/a.jsonl")
    assert (c.expire_after, c.grace, c.settle, c.pools) == (7 * 86400, 60, 2.0, None)
    c = _leases_section("expire_after: 1d12h\ngrace: 5\nsettle: 0\npools: [gxtpool]\n")
    assert (c.expire_after, c.grace, c.settle, c.pools) == (129600, 5, 0, ("gxtpool",))
    assert _leases_section("expire_after: 3600\n").expire_after == 3600


@pytest.mark.parametrize("body,what", [
    ("expire_after: soon\n", "duration"),
    ("expire_after: 0\n", "between"),
    ("grace: -1\n", "between"),
    ("pools: []\n", "non-empty"),
    ("pools: ['a b']\n", "pool name"),
    ("gridmapdir: /x\n", "'mapping.gridmapdir'"),
    ("expire: 1d\n", "unknown key 'expire' in 'leases'"),
])
def test_leases_section_refused(body, what):
    from glexec_py.errors import ConfigError
    with pytest.raises(ConfigError) as e:
        _leases_section(body)
    assert what in e.value.message and e.value.line == 11     # the key's own line
