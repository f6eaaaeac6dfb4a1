"""Tests of the setuid shim (csrc/shim*.c) against a stub engine, run as an unprivileged caller.
See docs/internals.md for the contract and shared/reference/security.md 4.A for the attacks."""
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.shim.conftest import REPO, UID, XGID, parse_blob
from tests.support.skips import optional

INTERP = "/usr/bin/python3.11"
NOT_PRIV = b"glexec: setuid bit ignored (ptrace, no_new_privs or nosuid); not running with privilege\n"
TOO_LARGE = b"glexec: argument list or environment too large\n"
ALL_SEALS = 1 | 2 | 4 | 8  # F_SEAL_SEAL | SHRINK | GROW | WRITE
RLIMIT_CORE, RLIMIT_NOFILE, RLIMIT_STACK = 4, 7, 3
INF = -1


def refused(r, rc, msg=None):
    assert r.rc == rc, (r.rc, r.stderr)
    assert not r.ran and r.stdout == b""
    if msg is not None:
        assert r.stderr == msg
    assert r.stderr.startswith(b"glexec: ") and r.stderr.count(b"\n") == 1


def ok(r):
    assert r.rc == 0 and r.ran, (r.rc, r.stderr)
    return r.out, r.blob


# --- 4.A.1 empty argv -------------------------------------------------------------------

@pytest.mark.parametrize("argv", [[], [""]], ids=["argv-NULL", "argv-empty-string"])
def test_empty_argv_refused(run, argv):
    bait = ["GCONV_PATH=.", "CHARSET=PWNKIT", "SHELL=/not/there", "PATH=GCONV_PATH=."]
    refused(run(raw=(argv, bait)), 201, b"glexec: empty argument vector\n")


# --- hand-off blob ----------------------------------------------------------------------

def test_blob_argv_and_env_verbatim(run, prefix):
    argv = [b"glexec", b"--", b"-c", b"a\nb", b"\xff\xfe\x80", b"", b" spaced arg ", b"--"]
    env = [b"FOO=bar", b"NOEQUALS", b"BIN=\xff\x01", b"EMPTY=", b"=leading", b"DUP=1", b"DUP=2",
           b"X509_USER_PROXY=/tmp/x509up_u47190"]
    out, blob = ok(run(raw=(argv, env)))
    assert blob["argv"] == argv
    assert blob["env"] == env
    # order fixed by the shim: A..., E..., I, G, R x 16, C, Z
    assert blob["tags"] == [b"A"] * len(argv) + [b"E"] * len(env) + [b"I", b"G"] + [b"R"] * 16 + [b"C", b"Z"]
    assert blob["cwd"] == str(prefix.work).encode()
    assert out["fd3_seals"] == ALL_SEALS
    assert out["fd3_accmode"] == os.O_RDONLY and out["fd3_offset"] == 0
    assert out["fd3_link"].startswith("/memfd:glexec-handoff")


def test_blob_caller_facts(run):
    out, blob = ok(run(["-v"]))
    assert blob["argv"][1:] == [b"-v"]
    assert (blob["ruid"], blob["euid"], blob["suid"]) == (UID, 0, 0)
    assert (blob["rgid"], blob["egid"], blob["sgid"]) == (UID, UID, UID)
    assert blob["privileged"] == 1
    assert sorted(blob["groups"]) == [XGID]  # subprocess extra_groups
    pid, ppid, sid, pgid = out["ids"]
    assert (blob["pid"], blob["ppid"], blob["sid"], blob["pgid"]) == (pid, ppid, sid, pgid)


def test_argv_element_limit(run):
    assert ok(run(raw=(["glexec"] + [""] * 65535, [])))[1]["argv"][0] == b"glexec"
    refused(run(raw=(["glexec"] + [""] * 65536, [])), 201, TOO_LARGE)


def test_env_entry_limit(run):
    assert len(ok(run(raw=(["glexec"], ["a="] * 65536)))[1]["env"]) == 65536
    refused(run(raw=(["glexec"], ["a="] * 65537)), 201, TOO_LARGE)


def test_unreachable_cwd_recorded_empty(prefix, test_user):
    script = 'mkdir gone && cd gone && rmdir ../gone && exec "$0"'
    cp = subprocess.run(["/bin/sh", "-c", script, str(prefix.shim)], cwd=str(prefix.work),
                        capture_output=True, user=UID, group=UID, env={"PATH": "/usr/bin:/bin"})
    assert cp.returncode == 0, cp.stderr
    assert parse_blob(bytes.fromhex(json.loads(cp.stdout)["fd3"]))["cwd"] == b""


# --- engine start: 4.A.4 relocation, 4.A.6 interpreter hijack, 2.7 environment ------------

def test_engine_env_is_constant(run, prefix):
    evil = prefix.work / "evil"
    evil.mkdir(exist_ok=True)
    (evil / "sitecustomize.py").write_text("open('%s/pwned', 'w')\n" % evil)
    (evil / "python3").write_text("#!/bin/sh\ntouch %s/pwned\n" % evil)
    os.chmod(evil / "python3", 0o755)
    os.chown(evil, UID, UID)
    caller_env = {"PATH": str(evil) + ":/usr/bin:/bin", "PYTHONPATH": str(evil),
                  "PYTHONSTARTUP": str(evil / "sitecustomize.py"), "PYTHONINSPECT": "1",
                  "PYTHONHOME": str(evil), "LD_PRELOAD": "/nonexistent.so", "TZ": "/etc/passwd",
                  "LD_LIBRARY_PATH": str(evil)}
    out, blob = ok(run(env=caller_env))
    assert out is not None  # PYTHONHOME would have broken the interpreter
    assert r_env(out) == {b"PATH": b"/usr/sbin:/usr/bin:/sbin:/bin", b"LC_ALL": b"C"}
    assert b"PYTHONPATH=" + str(evil).encode() in blob["env"]  # handed over as data only
    assert not (evil / "pwned").exists()
    assert not any(p.startswith(str(prefix.work)) for p in out["argv"])


def r_env(out):
    return {bytes.fromhex(k): bytes.fromhex(v) for k, v in out["environ"].items()}


@pytest.mark.parametrize("argv0", ["glexec", "fake", "/usr/bin/python3.11", "../evil/glexec-engine.py"])
def test_engine_command_line_is_fixed(run, prefix, argv0):
    out, blob = ok(run(raw=([argv0, "x"], ["PATH=/evil"])))
    cmd = [bytes.fromhex(a).decode() for a in out["cmdline"]]
    assert cmd == [INTERP, "-I", "-S", "-B", str(prefix.engine), str(prefix.config)]
    assert out["argv"] == [str(prefix.engine), str(prefix.config)]
    assert out["flags"] == {"isolated": 1, "no_site": 1, "dont_write_bytecode": 1}
    assert blob["argv"][0] == argv0.encode()


def test_called_through_symlink(run, prefix):
    link = prefix.work / "glexec-link"
    if not link.is_symlink():
        link.symlink_to(prefix.shim)
    out, blob = ok(run(binary=link))
    assert out["argv"] == [str(prefix.engine), str(prefix.config)]
    assert blob["privileged"] == 1


def test_engine_runs_as_full_root(run):
    out, _ = ok(run())
    assert out["resuid"] == [0, 0, 0] and out["resgid"] == [0, 0, 0]
    assert out["groups"] == []


# --- 4.A.7 fd games ----------------------------------------------------------------------

def test_only_fds_0_to_3_reach_engine(run):
    def caller():  # in the child: a secret-ish file, a dir fd and a socket on fds 3..20
        import socket
        s = socket.socket()
        for fd in range(3, 21):
            src = s.fileno() if fd == 20 else os.open("/etc" if fd == 7 else "/etc/hostname", os.O_RDONLY)
            os.dup2(src, fd, inheritable=True)
    out, _ = ok(run(preexec_fn=caller, close_fds=False))
    assert out["fds"] == [0, 1, 2, 3]
    assert out["fd3_link"].startswith("/memfd:glexec-handoff")  # the caller's fd 3 was replaced


@pytest.mark.parametrize("fd", [0, 2])
def test_closed_std_fd_is_reopened(run, prefix, fd):
    # log-only binary: glibc does not refill closed fds outside AT_SECURE mode, the shim must
    out, _ = ok(run(binary=prefix.nosuid, preexec_fn=lambda: os.close(fd)))
    assert out["std"][fd] == ["/dev/null", os.O_RDWR]
    assert out["fds"] == [0, 1, 2, 3]


def test_closed_stdin_setuid(run):
    out, _ = ok(run(preexec_fn=lambda: os.close(0)))
    # in AT_SECURE mode glibc already refilled fd 0 (with /dev/full, write-only) before main()
    assert out["std"][0][0] in ("/dev/null", "/dev/full")
    assert out["fds"] == [0, 1, 2, 3]


# --- 4.A.5 untrusted installation ----------------------------------------------------------

def _untrusted(run, prefix, shown):
    refused(run(), 202, b"glexec: untrusted installation: " + str(shown).encode() + b"\n")


@pytest.mark.parametrize("rel,mode", [("lib", 0o775), ("lib", 0o757), ("", 0o775),
                                      ("lib/glexec-py", 0o1777)])
def test_writable_ancestor_refused(run, prefix, rel, mode):
    d = prefix.root / rel if rel else prefix.root
    os.chmod(d, mode)
    try:
        _untrusted(run, prefix, d)
    finally:
        os.chmod(d, 0o755)
    ok(run())


def test_engine_owned_by_caller_refused(run, prefix):
    os.chown(prefix.engine, UID, 0)
    try:
        _untrusted(run, prefix, prefix.engine)
    finally:
        os.chown(prefix.engine, 0, 0)


def test_engine_group_writable_refused(run, prefix):
    os.chmod(prefix.engine, 0o664)
    try:
        _untrusted(run, prefix, prefix.engine)
    finally:
        os.chmod(prefix.engine, 0o644)


def test_libdir_owned_by_caller_refused(run, prefix):
    os.chown(prefix.libdir, UID, UID)
    try:
        _untrusted(run, prefix, prefix.libdir)
    finally:
        os.chown(prefix.libdir, 0, 0)


def test_symlinked_libdir_refused(run, prefix):
    real = prefix.root / "lib" / "real"
    os.rename(prefix.libdir, real)
    os.symlink("real", prefix.libdir)
    try:
        _untrusted(run, prefix, prefix.libdir)
    finally:
        os.unlink(prefix.libdir)
        os.rename(real, prefix.libdir)
    ok(run())


def test_missing_engine_refused(run, prefix):
    os.rename(prefix.engine, str(prefix.engine) + ".away")
    try:
        _untrusted(run, prefix, prefix.engine)
    finally:
        os.rename(str(prefix.engine) + ".away", prefix.engine)


# --- 4.A.2 setuid silently ignored, user namespaces -----------------------------------------

def test_no_new_privs_refused(run):
    refused(run(wrapper=["setpriv", "--no-new-privs"]), 202, NOT_PRIV)


def test_ptrace_refused(run):
    r = run(wrapper=["strace", "-f", "-o", "/dev/null"])
    refused(r, 202, NOT_PRIV)


def test_user_namespace_refused(run):
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "true"], user=UID, group=UID,
                           capture_output=True)
    if probe.returncode != 0:
        pytest.skip(optional("unprivileged user namespaces unavailable: %r" % probe.stderr))
    refused(run(wrapper=["unshare", "--user", "--map-root-user"]), 202,
            b"glexec: refusing to run inside a user namespace\n")


def test_log_only_mode(run, prefix):
    out, blob = ok(run(binary=prefix.nosuid))
    assert blob["privileged"] == 0
    assert (blob["ruid"], blob["euid"], blob["suid"]) == (UID, UID, UID)
    assert out["resuid"] == [UID] * 3 and out["resgid"] == [UID] * 3
    assert sorted(out["groups"]) == [XGID]  # subprocess extra_groups
    assert r_env(out) == {b"PATH": b"/usr/sbin:/usr/bin:/sbin:/bin", b"LC_ALL": b"C"}
    assert out["flags"] == {"isolated": 1, "no_site": 1, "dont_write_bytecode": 1}


# --- process state: umask, rlimits, signals ---------------------------------------------

@pytest.mark.parametrize("which", ["shim", "nosuid"])
def test_umask_recorded_and_engine_077(run, prefix, which):
    out, blob = ok(run(binary=getattr(prefix, which), umask=0o027))
    assert blob["umask"] == 0o027
    assert out["umask"] == 0o077


def has_cap_sys_resource():
    with open("/proc/self/status") as f:
        bnd = next(int(line.split()[1], 16) for line in f if line.startswith("CapBnd:"))
    return bool(bnd & (1 << 24))


def test_rlimits_recorded_and_raised(run):
    out, blob = ok(run(wrapper=["prlimit", "--nofile=64:64", "--core=1000:2000",
                                "--stack=1048576:2097152", "--cpu=100:200"]))
    rl = blob["rlimits"]
    assert rl[RLIMIT_NOFILE] == (64, 64)
    assert rl[RLIMIT_CORE] == (1000, 2000)
    assert rl[RLIMIT_STACK] == (1048576, 2097152)
    assert rl[0] == (100, 200)
    e = {int(k): v for k, v in out["rlimits"].items()}
    assert e[RLIMIT_CORE] == [0, 0]
    if has_cap_sys_resource():
        assert e[RLIMIT_NOFILE] == [1024, 1024]
        assert e[RLIMIT_STACK] == [8 << 20, 8 << 20]
        assert e[0] == [INF, INF]
    else:  # root without CAP_SYS_RESOURCE (container): soft raised up to the hard limit only
        assert e[RLIMIT_NOFILE] == [64, 64]
        assert e[RLIMIT_STACK] == [2097152, 2097152]
        assert e[0] == [200, 200]
    for res, (soft, hard) in rl.items():
        if res in (1, 2, 9):  # FSIZE, DATA, AS (caller left them unlimited)
            assert e[res] == [INF, INF], res
        elif res not in (0, 3, 4, 7):  # everything else as the caller had it
            assert e[res] == [soft, hard], res


def test_rlimits_log_only_stay_within_hard(run, prefix):
    out, blob = ok(run(binary=prefix.nosuid,
                       wrapper=["prlimit", "--nofile=64:2048", "--core=1000:2000", "--cpu=100:200"]))
    assert blob["rlimits"][RLIMIT_NOFILE] == (64, 2048)
    e = {int(k): v for k, v in out["rlimits"].items()}
    assert e[RLIMIT_NOFILE] == [1024, 2048]
    assert e[RLIMIT_CORE] == [0, 2000]
    assert e[0] == [200, 200]


def test_rlimit_above_int64_max_recorded(run):
    """A finite limit >= 2**63 is recorded as INT64_MAX: it was written as a negative number,
    and the engine refused the whole hand-off as malformed (202)."""
    from glexec_py.core import handoff
    out, blob = ok(run(wrapper=["prlimit", "--core=9223372036854775808:unlimited",
                                "--rss=18446744073709551614:18446744073709551614"]))
    assert blob["rlimits"][RLIMIT_CORE] == (2**63 - 1, INF)
    assert blob["rlimits"][5] == (2**63 - 1, 2**63 - 1)
    assert handoff.parse(bytes.fromhex(out["fd3"])).rlimits[RLIMIT_CORE] == (2**63 - 1, INF)


def test_fsize_limit_below_blob_refused(run):
    """The caller's RLIMIT_FSIZE applies to the memfd: 201 and one line, not death by SIGXFSZ."""
    refused(run(wrapper=["prlimit", "--fsize=100"]), 201,
            b"glexec: file size limit too small for the hand-off\n")


def test_signals_reset(run):
    def caller():
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGTERM, signal.SIGINT})
    out, _ = ok(run(preexec_fn=caller, restore_signals=False))
    ign, blk = int(out["status"]["SigIgn"], 16), int(out["status"]["SigBlk"], 16)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        assert not ign & (1 << (sig - 1)), sig
    assert blk == 0


# --- build ---------------------------------------------------------------------------------

def test_hardening(prefix):
    cp = subprocess.run(["make", "-s", "-C", str(REPO), "check-hardening", "PREFIX=" + str(prefix.root)],
                        capture_output=True)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert cp.stdout.count(b"ok   ") == 2  # the build output and the installed sbin/glexec


def test_install_refuses_world_writable_ancestor():
    cp = subprocess.run(["make", "-s", "-C", str(REPO), "install", "PREFIX=/tmp/gxt-shim-never"],
                        capture_output=True)
    assert cp.returncode != 0
    assert b"group/other-writable" in cp.stderr
    assert not Path("/tmp/gxt-shim-never").exists()


def test_make_install_layout(run, prefix, test_user):
    """`make install` into a fresh prefix (native build skipped): modes, owners, pycs, config
    kept on reinstall; the installed tree passes the shim's trust walk."""
    root = prefix.root.parent / (prefix.root.name + "-inst")
    built = REPO / "build" / ("prefix" + str(root).replace("/", "_"))
    make = ["make", "-s", "-C", str(REPO), "PREFIX=" + str(root), "NATIVE_BUILD=true"]
    try:
        cp = subprocess.run(make + ["install"], capture_output=True)
        assert cp.returncode == 0, cp.stderr
        st = lambda p: os.lstat(root / p)  # noqa: E731
        assert (st("sbin/glexec").st_mode & 0o7777, st("sbin/glexec").st_uid) == (0o4755, 0)
        for d, mode in [("", 0o755), ("lib/glexec-py", 0o755), ("etc/glexec-py", 0o755),
                        ("var/log/glexec-py", 0o700), ("var/lib/glexec-py", 0o700)]:
            assert (st(d).st_mode & 0o7777, st(d).st_uid, st(d).st_gid) == (mode, 0, 0), d
        lib = root / "lib/glexec-py"
        assert (lib / "glexec-engine.py").read_bytes() == (REPO / "packaging/glexec-engine.py").read_bytes()
        for dirpath, dirs, files in os.walk(lib):
            assert "tests" not in dirs
            for name in dirs + files:
                s = os.lstat(os.path.join(dirpath, name))
                assert s.st_uid == 0 and not s.st_mode & 0o022, os.path.join(dirpath, name)
                if name.endswith(".pyc"):  # unchecked-hash pycs: flags field == 0b01
                    with open(os.path.join(dirpath, name), "rb") as f:
                        assert int.from_bytes(f.read(8)[4:8], "little") == 1, name
        cfg = root / "etc/glexec-py/glexec.yaml"
        template = (REPO / "policy/glexec.yaml.in").read_text()
        assert cfg.read_text() == (template.replace("@CONFDIR@", f"{root}/etc/glexec-py")
                                   .replace("@LOGDIR@", f"{root}/var/log/glexec-py")
                                   .replace("@STATEDIR@", f"{root}/var/lib/glexec-py"))
        assert "@" not in cfg.read_text()
        cfg.write_text("# site edited\n")
        cp = subprocess.run(make + ["install"], capture_output=True)
        assert cp.returncode == 0, cp.stderr
        assert cfg.read_text() == "# site edited\n"  # never overwritten
        # the installed tree passes the trust walk: run it with the stub engine
        os.makedirs(root / "var/markers", mode=0o1777)
        os.chmod(root / "var/markers", 0o1777)
        (lib / "glexec-engine.py").write_bytes((Path(__file__).parent / "stub_engine.py").read_bytes())
        cp = subprocess.run([str(root / "sbin/glexec"), "-V"], capture_output=True, cwd="/",
                            user=UID, group=UID, env={})
        assert cp.returncode == 0, cp.stderr
        assert json.loads(cp.stdout)["resuid"] == [0, 0, 0]
        cp = subprocess.run(make + ["uninstall"], capture_output=True)
        assert cp.returncode == 0, cp.stderr
        assert not (root / "sbin/glexec").exists() and not lib.exists()
    finally:
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(built, ignore_errors=True)
