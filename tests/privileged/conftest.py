"""Fixtures for the end-to-end privileged suite.

Session-wide (one each per pytest session): an exclusive lock (other sessions on this machine
wait), the test accounts, a test PKI with proxies, one `make install` into a test prefix.
Per test: a fresh default config + gridmapfile and a ``gx`` helper with a private work dir.

Every test here runs the *installed* setuid glexec as a real unprivileged user.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import sys

import pytest

# Also when pytest is started on this dir alone from elsewhere (rootdir = this dir, so the
# top-level tests/conftest.py is not loaded): the repo root must be importable.
_REPO = str(Path(__file__).resolve().parents[2])
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)

from tests.support import accounts as acc  # noqa: E402
from tests.support import install as inst  # noqa: E402
from tests.support.pki import TestPKI  # noqa: E402
from tests.support.runas import popen_as, read_audit, run_as  # noqa: E402

# DNs of the test users; USER1 -> gxttarget1, USER2 -> gxttarget2, USER3 unmapped.
USER1_DN = "/DC=test/DC=glexec-py/CN=Test User One"
USER2_DN = "/DC=test/DC=glexec-py/CN=Test User Two"
USER3_DN = "/DC=test/DC=glexec-py/CN=Test User Unmapped"
ROGUE_CA_DN = "/DC=test/DC=rogue/CN=Rogue CA"

GLEXEC_REASON_LINE = re.compile(rb"\Aglexec: [^\n]*\n\Z")


def pytest_configure(config):
    config.addinivalue_line("markers", "privileged: needs root (real setuid install and accounts)")


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.privileged)


# --- session fixtures -------------------------------------------------------------------------

@pytest.fixture(scope="session")
def session_lock():
    if os.geteuid() != 0:
        pytest.skip("privileged tests need root")
    lock = acc.session_lock()
    lock.__enter__()
    try:
        inst.ensure_base()
        inst.cleanup_leftover_prefixes()
        yield lock
    finally:
        lock.release()


@pytest.fixture(scope="session")
def accounts(session_lock, request):
    holder = {}

    def fin():
        if "a" in holder:
            holder["a"].remove()
        else:  # creation failed half way: remove whatever exists
            acc.cleanup_leftovers()
    request.addfinalizer(fin)
    holder["a"] = acc.TestAccounts.create_standard()
    return holder["a"]


@dataclass
class PKISet:
    pki: TestPKI
    rogue: TestPKI
    user1: object
    user2: object
    user3: object
    rogue_user1: object
    proxies: dict = field(default_factory=dict)  # name -> root-owned 0600 proxy file


@pytest.fixture(scope="session")
def pkis(session_lock, request):
    root = inst.make_run_dir("pki")
    os.chmod(root, 0o700)
    request.addfinalizer(lambda: inst._safe_rmtree(root))
    pki = TestPKI(root / "ca1")
    rogue = TestPKI(root / "rogue", ca_dn=ROGUE_CA_DN)
    s = PKISet(pki=pki, rogue=rogue, user1=pki.user(USER1_DN), user2=pki.user(USER2_DN),
               user3=pki.user(USER3_DN), rogue_user1=rogue.user(USER1_DN))
    pdir = root / "proxies"
    pdir.mkdir()
    s.proxies["user1"] = pki.proxy(s.user1, pdir / "user1.pem")
    s.proxies["user2"] = pki.proxy(s.user2, pdir / "user2.pem")
    s.proxies["user3"] = pki.proxy(s.user3, pdir / "user3.pem")
    s.proxies["expired"] = pki.expired_proxy(s.user1, pdir / "expired.pem")
    s.proxies["rogue"] = rogue.proxy(s.rogue_user1, pdir / "rogue.pem")
    return s


@pytest.fixture(scope="session")
def prefix(session_lock, accounts, pkis, request):
    """The installed test prefix (one `make install` per session)."""
    p = inst.install_prefix()
    request.addfinalizer(lambda: inst.remove_prefix(p))
    inst.install_trust_dir(p, pkis.pki)
    write_default_policy(p)
    return p


def write_default_policy(prefix):
    inst.write_gridmap(prefix, [(USER1_DN, "gxttarget1"), (USER2_DN, "gxttarget2")])
    inst.write_config(prefix)


@pytest.fixture
def in_process_engine(prefix):
    """For a test that must trace the engine in the shim's own process (strace): no engine
    service for the prefix while it runs (GLEXEC_TEST_MODE=service restarts it after)."""
    inst.stop_service(prefix)
    yield
    if inst.service_mode():
        inst.start_service(prefix)


@pytest.fixture(scope="session")
def run_dir(session_lock):
    d = inst.make_run_dir("run")
    yield d
    inst._safe_rmtree(d)


# --- the per-test helper ----------------------------------------------------------------------

@dataclass
class Result:
    returncode: int
    stdout: bytes
    stderr: bytes
    pid: int
    records: list          # audit records appended during the call

    @property
    def grants(self):
        return [r for r in self.records if r.get("event") == "grant"]

    @property
    def refusals(self):
        return [r for r in self.records if r.get("event") == "refuse"]

    @property
    def ends(self):
        return [r for r in self.records if r.get("event") == "end"]

    def __repr__(self):
        return (f"Result(rc={self.returncode}, stdout={self.stdout[:300]!r}, "
                f"stderr={self.stderr[:500]!r}, records={self.records!r})")


class GX:
    """Per-test helper: a private work dir ("box"), proxies, payload scripts, glexec calls."""

    def __init__(self, prefix, accounts, pkis, box):
        self.prefix = Path(prefix)
        self.glexec = str(inst.glexec_path(prefix))
        self.accounts = accounts
        self.pkis = pkis
        self.box = box            # owned by gxtpilot, 0755: default cwd of every call
        self.out = box / "out"    # root 1777: payloads (any target) write markers here
        self.audit_file = inst.audit_path(prefix)

    # config
    def config(self, **overrides):
        if "audit" in overrides and isinstance(overrides["audit"], dict) \
                and "file" in overrides["audit"]:
            self.audit_file = Path(overrides["audit"]["file"])
        return inst.write_config(self.prefix, **overrides)

    def gridmap(self, entries):
        return inst.write_gridmap(self.prefix, entries)

    # files
    def file(self, name, data, *, owner="gxtpilot", mode=0o644, where=None):
        p = (where or self.box) / name
        p.write_bytes(data.encode() if isinstance(data, str) else data)
        a = self.accounts[owner] if owner != "root" else None
        os.chown(p, a.uid if a else 0, a.gid if a else 0)
        os.chmod(p, mode)
        return p

    def dir(self, name, *, owner="gxtpilot", mode=0o755, where=None):
        p = (where or self.box) / name
        p.mkdir()
        a = self.accounts[owner] if owner != "root" else None
        os.chown(p, a.uid if a else 0, a.gid if a else 0)
        os.chmod(p, mode)
        return p

    def script(self, name, text, *, owner="gxtpilot", mode=0o755, where=None):
        return self.file(name, text, owner=owner, mode=mode, where=where)

    def proxy(self, which="user1", *, owner="gxtpilot", mode=0o600, name=None):
        """A copy of one of the session's proxies, owned by ``owner`` with ``mode``."""
        src = self.pkis.proxies[which]
        return self.file(name or f"proxy-{which}-{owner}.pem", src.read_bytes(), owner=owner,
                         mode=mode)

    def marker(self, name):
        return self.out / name

    # calls
    def audit(self):
        return read_audit(self.audit_file) if self.audit_file.is_file() else []

    def run(self, args, *, user="gxtpilot", proxy="default", env=None, stdin=None, cwd=None,
            timeout=30, argv0=None):
        """Run ``glexec *args`` as ``user``. ``proxy``: "default" (a fresh user1 proxy owned by
        the caller), None (no GLEXEC_CLIENT_CERT) or a path."""
        e = {}
        if proxy == "default":
            proxy = self.proxy("user1", owner=user)
        if proxy is not None:
            e["GLEXEC_CLIENT_CERT"] = str(proxy)
        e.update(env or {})
        before = len(self.audit())
        argv = [argv0 or self.glexec, *args]
        r = run_as(user, argv, env=e, stdin=stdin, cwd=str(cwd or self.box), timeout=timeout,
                   executable=self.glexec)
        return Result(r.returncode, r.stdout, r.stderr, r.pid, self.audit()[before:])

    def popen(self, args, *, user="gxtpilot", proxy="default", env=None, cwd=None):
        e = {}
        if proxy == "default":
            proxy = self.proxy("user1", owner=user)
        if proxy is not None:
            e["GLEXEC_CLIENT_CERT"] = str(proxy)
        e.update(env or {})
        return popen_as(user, [self.glexec, *args], env=e, cwd=str(cwd or self.box))

    # assertions
    def assert_refused(self, r: Result, code: int, reason=None, *, audited=True):
        assert r.returncode == code, r
        assert GLEXEC_REASON_LINE.match(r.stderr), f"want exactly one 'glexec: ' line: {r!r}"
        assert r.stdout == b"", r
        assert not r.grants, r
        if audited:
            records = _without_intent(r)
            assert len(records) == 1, f"want exactly one audit record: {r!r}"
            rec = records[0]
            assert rec.get("event") == "refuse", rec
            assert rec.get("exit") == code, rec
            if reason is not None:
                assert rec.get("reason") == reason, rec
        return r

    def assert_granted(self, r: Result, status=0, *, linger=True, stderr=b""):
        assert r.returncode == status, r
        if stderr is not None:
            assert r.stderr == stderr, r
        assert len(r.grants) == 1 and not r.refusals, r
        if linger:
            assert len(r.ends) == 1, r
            assert r.ends[0].get("status") == status, r
            assert len(_without_intent(r)) == 2, r
        return r


def _without_intent(r: Result):
    """The call's records without its one ``lease_intent`` record, which a call making a new
    pool lease writes before the link (then: first, and naming the lease of the grant)."""
    intents = [x for x in r.records if x.get("event") == "lease_intent"]
    if not intents:
        return r.records
    assert len(intents) == 1 and r.records[0] is intents[0], r
    lease = (r.grants or r.refusals or [{}])[0].get("lease")
    if lease is not None:
        assert intents[0]["lease"]["name"] == lease["name"] and lease["reused"] is False, r
    return r.records[1:]


_counter = [0]


@pytest.fixture
def gx(prefix, accounts, pkis, run_dir, request):
    write_default_policy(prefix)
    _counter[0] += 1
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", request.node.name)[:60]
    box = run_dir / f"{_counter[0]:03d}-{name}"
    box.mkdir()
    os.chown(box, accounts.pilot.uid, accounts.pilot.gid)
    os.chmod(box, 0o755)
    (box / "out").mkdir()
    os.chmod(box / "out", 0o1777)
    g = GX(prefix, accounts, pkis, box)
    yield g
    write_default_policy(prefix)  # tests that use `prefix` directly see the default policy
    # P2: nothing of the test accounts may outlive a test (grace: a payload's `sleep 0.1`)
    leftovers = _processes_of(accounts.uids, grace=1.5)
    acc.kill_uid_processes(accounts.uids)
    for a in (accounts.target1, accounts.target2):
        acc._remove_default_proxy(a.uid)
    # P4 (log side): the whole audit log still parses, one JSON object per line
    if g.audit_file.is_file():
        read_audit(g.audit_file)
    assert not leftovers, f"processes of test accounts outlived the test: {leftovers}"


def _processes_of(uids, grace):
    import time
    deadline = time.monotonic() + grace
    while True:
        found = []
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                st = (d / "status").read_text()
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if "\nState:\tZ" in st:
                continue  # a zombie cannot act; orphans are reaped by whatever pid 1 is here
            for line in st.splitlines():
                if line.startswith("Uid:") and {int(x) for x in line.split()[1:]} & set(uids):
                    found.append((int(d.name), cmd.strip()))
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


@pytest.fixture(scope="session")
def cc(run_dir):
    """Compile a small C program into the run dir: cc(name, source) -> path (root 0755)."""
    def build(name, source, *, shared=False):
        d = run_dir / "bin"
        d.mkdir(exist_ok=True)
        os.chmod(d, 0o755)
        src = d / f"{name}.c"
        src.write_text(source)
        out = d / name
        cmd = ["gcc", "-O1", "-o", str(out), str(src)]
        if shared:
            cmd[1:1] = ["-shared", "-fPIC"]
        subprocess.run(cmd, check=True, capture_output=True)
        os.chmod(out, 0o755)
        return out
    return build


SH = os.path.realpath("/bin/sh")  # glideinWMS/HTCondor style: never a symlinked command
