"""Fixtures for the shim tests: a throwaway root-owned prefix with the shim built for it and a
stub engine, an unprivileged test user, a blob parser. Must run as root."""
import grp
import json
import os
import pwd
import secrets
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
TEST_ROOT = Path("/var/lib/glexec-py-tests")  # not /tmp: the shim refuses writable ancestors
USER, UID = "gxtshim", 47190
XGROUP, XGID = "gxtshimx", 47191
RLIM_NLIMITS = 16
MAGIC = b"GLEXEC-HANDOFF-1\n"
I_FIELDS = ("ruid", "euid", "suid", "rgid", "egid", "sgid", "pid", "ppid", "sid", "pgid",
            "umask", "privileged")

if os.geteuid() != 0:
    pytest.skip("shim tests must run as root", allow_module_level=True)


def parse_blob(b):
    """Strict parser of the hand-off blob (docs/internals.md); asserts on any deviation."""
    assert b.startswith(MAGIC), b[:32]
    off, recs = len(MAGIC), []
    while True:
        assert off + 5 <= len(b), "truncated record header"
        tag, n = b[off:off + 1], int.from_bytes(b[off + 1:off + 5], "little")
        off += 5
        assert off + n <= len(b), "record overruns blob"
        recs.append((tag, b[off:off + n]))
        off += n
        if tag == b"Z":
            assert n == 0
            break
    assert off == len(b), "trailing bytes after Z"
    tags = [t for t, _ in recs]
    for t in tags:
        assert t in (b"A", b"E", b"I", b"G", b"R", b"C", b"Z"), t
    for t in (b"I", b"G", b"C", b"Z"):
        assert tags.count(t) == 1, t
    assert tags.count(b"A") >= 1
    out = {"argv": [p for t, p in recs if t == b"A"], "env": [p for t, p in recs if t == b"E"]}
    (ipay,) = [p for t, p in recs if t == b"I"]
    assert len(ipay) == 96
    out.update(zip(I_FIELDS, struct.unpack("<12q", ipay)))
    (gpay,) = [p for t, p in recs if t == b"G"]
    assert len(gpay) % 8 == 0
    out["groups"] = list(struct.unpack("<%dq" % (len(gpay) // 8), gpay))
    rl = {}
    for t, p in recs:
        if t == b"R":
            assert len(p) == 24
            res, soft, hard = struct.unpack("<3q", p)
            assert res not in rl
            rl[res] = (soft, hard)
    assert sorted(rl) == list(range(RLIM_NLIMITS))
    out["rlimits"] = rl
    (out["cwd"],) = [p for t, p in recs if t == b"C"]
    out["tags"] = tags
    return out


def _run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, **kw)


@pytest.fixture(scope="session")
def test_user():
    """Unprivileged caller gxtshim (uid 47190) with an extra group; removed afterwards."""
    def remove():
        subprocess.run(["userdel", USER], capture_output=True)
        for g in (USER, XGROUP):
            subprocess.run(["groupdel", g], capture_output=True)
    remove()
    try:
        _run(["groupadd", "-g", str(UID), USER])
        _run(["groupadd", "-g", str(XGID), XGROUP])
        _run(["useradd", "-M", "-N", "-u", str(UID), "-g", str(UID), "-G", XGROUP,
              "-s", "/usr/sbin/nologin", "-d", "/nonexistent", USER])
        assert pwd.getpwnam(USER).pw_uid == UID and grp.getgrnam(XGROUP).gr_gid == XGID
        yield UID
    finally:
        remove()


class Prefix:
    def __init__(self, root):
        self.root = root
        self.shim = root / "sbin" / "glexec"
        self.nosuid = root / "sbin" / "glexec-nosuid"
        self.libdir = root / "lib" / "glexec-py"
        self.engine = self.libdir / "glexec-engine.py"
        self.config = root / "etc" / "glexec-py" / "glexec.yaml"
        self.markers = root / "var" / "markers"
        self.work = root / "work"  # the caller's cwd, owned by the test user
        self.execer = root / "testbin" / "execer"

    def marker_count(self):
        return len(os.listdir(self.markers))


@pytest.fixture(scope="session")
def prefix(test_user):
    """Prefix laid out like `make install` for the shim, with the stub engine."""
    TEST_ROOT.mkdir(mode=0o755, exist_ok=True)
    os.chown(TEST_ROOT, 0, 0)
    os.chmod(TEST_ROOT, 0o755)
    root = TEST_ROOT / ("shim-" + secrets.token_hex(4))
    root.mkdir(mode=0o755)
    try:
        p = Prefix(root)
        built = REPO / "build" / ("prefix" + str(root).replace("/", "_")) / "glexec"
        _run(["make", "-s", "-C", str(REPO), str(built.relative_to(REPO)), "PREFIX=" + str(root)])
        for d in (p.shim.parent, p.libdir, p.config.parent, p.execer.parent, p.markers.parent):
            d.mkdir(mode=0o755, parents=True, exist_ok=True)
        for d in (root / "lib", root / "etc", root / "var"):
            os.chmod(d, 0o755)
        p.markers.mkdir(mode=0o1777)
        os.chmod(p.markers, 0o1777)  # stub writes here also in log-only mode (as the caller)
        p.work.mkdir(mode=0o700)
        os.chown(p.work, UID, UID)
        shutil.copyfile(built, p.shim)
        os.chmod(p.shim, 0o4755)
        shutil.copyfile(built, p.nosuid)
        os.chmod(p.nosuid, 0o755)
        shutil.copyfile(HERE / "stub_engine.py", p.engine)
        os.chmod(p.engine, 0o644)
        p.config.write_text("# not read by the stub\n")
        _run(["gcc", "-O2", "-Wall", "-Werror", "-o", str(p.execer), str(HERE / "execer.c")])
        os.chmod(p.execer, 0o755)
        yield p
    finally:
        shutil.rmtree(root)
        shutil.rmtree(REPO / "build" / ("prefix" + str(root).replace("/", "_")), ignore_errors=True)


class Result:
    def __init__(self, cp, prefix, before):
        self.rc, self.stdout, self.stderr = cp.returncode, cp.stdout, cp.stderr
        self.ran = prefix.marker_count() > before
        self.out = json.loads(cp.stdout) if self.ran and cp.stdout else None
        self.blob = parse_blob(bytes.fromhex(self.out["fd3"])) if self.out and "fd3" in self.out else None

    def env(self):
        return {bytes.fromhex(k): bytes.fromhex(v) for k, v in self.out["environ"].items()}


@pytest.fixture
def run(prefix, test_user):
    """run(args, ...) -> Result: run the installed shim as the test user."""
    def go(args=(), *, binary=None, env=None, wrapper=(), raw=None, user=True, **kw):
        binary = str(binary or prefix.shim)
        if raw is not None:  # raw=(argv list, env list) through the execer helper
            argv, envl = raw
            cmd = [str(prefix.execer), binary, str(len(argv)), *argv, *envl]
        else:
            cmd = [*wrapper, binary, *args]
        if user:
            kw.update(user=UID, group=UID, extra_groups=[XGID])
        before = prefix.marker_count()
        cp = subprocess.run(cmd, capture_output=True, cwd=str(prefix.work), timeout=60,
                            env={"PATH": "/usr/bin:/bin"} if env is None else env, **kw)
        return Result(cp, prefix, before)
    return go
