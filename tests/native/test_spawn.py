"""The payload plan's executor (csrc/plan_*.c) through native.start_payload/become_payload,
as root: every field of a core.plan.Plan as the payload sees it."""
import os
import signal
import tempfile

import pytest

from glexec_py.core.plan import Plan, encode
from glexec_py.effects import native

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

LIMITS = {}  # keep the test process's limits


def _plan(path, argv, env=(), **kw):
    fields = dict(path=path, argv=argv, env=list(env), uid=65534, gid=65534, groups=[], rlimits=LIMITS,
                  umask=0o022, cwd=b"/", switch_identity=False, no_new_privs=False, tty_guard=False,
                  linger=False, pdeathsig=0, forward_signals=(), caller_ruid=0)
    fields.update(kw)
    return Plan(**fields)


def _start(path, argv, env=(), **kw):
    """native.start_payload of the plan; the signal mask a lingering plan blocks is restored."""
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    try:
        return native.start_payload(encode(_plan(path, argv, env, **kw))).pid
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _run(path, argv, env=(), **kw):
    """Spawn with stdout redirected to a file; returns (exit status, stdout bytes)."""
    with tempfile.TemporaryFile() as out:
        saved = os.dup(1)
        os.dup2(out.fileno(), 1)
        try:
            pid = _start(path, argv, env, **kw)
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        _, status = os.waitpid(pid, 0)
        out.seek(0)
        return os.waitstatus_to_exitcode(status), out.read()


def test_argv_and_env_arrive_intact_every_time():
    # Regression: the argv/envp pointer arrays were freed before the exec, so their first
    # entries could be overwritten by the allocator (wrong argv[0], or EFAULT).
    script = b"cat /proc/$$/cmdline; printf '|'; cat /proc/$$/environ"
    for nargs in (0, 1, 2, 3, 5, 40, 200):
        args = [b"arg-%d-" % i + b"x" * (i % 50) for i in range(nargs)]
        argv = [b"/bin/sh", b"-c", script, b"sh"] + args
        env = [b"GX_A=alpha"] + [b"GX_%d=%d" % (i, i) for i in range(nargs)]
        want = b"\0".join(argv) + b"\0|" + b"\0".join(env) + b"\0"
        for _ in range(20):
            code, out = _run(b"/bin/sh", argv, env)
            assert (code, out) == (0, want)


def test_switches_identity_in_the_child():
    code, out = _run(b"/bin/sh", [b"sh", b"-c", b"id -u; id -g; id -G"], switch_identity=True, groups=[65534])
    assert code == 0
    assert out.split() == [b"65534", b"65534", b"65534"]
    assert os.getuid() == 0  # the parent is untouched


def test_restores_rlimits_and_umask():
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    code, out = _run(b"/bin/sh", [b"sh", b"-c", b"ulimit -n; umask"],
                     rlimits={resource.RLIMIT_NOFILE: (64, hard)}, umask=0o027)
    assert (code, out.split()) == (0, [b"64", b"0027"])


def test_exec_failure_is_reported_and_nothing_runs():
    with pytest.raises(native.SpawnError) as e:
        _start(b"/nonexistent/payload", [b"x"])
    assert e.value.step == "exec" and e.value.errno == 2


def test_chdir_failure_is_reported():
    with pytest.raises(native.SpawnError) as e:
        _start(b"/bin/true", [b"true"], cwd=b"/nonexistent-dir", switch_identity=True)
    assert e.value.step == "chdir"


def test_identity_failure_stops_before_exec():
    # uid 0 as a target fails the capability check: the payload never runs
    with pytest.raises(native.SpawnError) as e:
        _start(b"/bin/true", [b"true"], uid=0, gid=0, switch_identity=True)
    assert e.value.step.startswith("identity:")


def test_lying_setresuid_stops_before_exec():
    """setresuid that returns 0 without switching (seccomp): the executor's verification
    refuses, and the payload never runs (it would run as root)."""
    from tests.native.native_helpers import run_in_child
    from tests.support.seccomp import install_fake_success
    marker = tempfile.mktemp(prefix="gxt-spawn-")

    def child():
        install_fake_success([("setresuid", 65534)])
        try:
            pid = _start(b"/bin/sh", [b"sh", b"-c", b"id -u > " + marker.encode()], switch_identity=True)
        except native.SpawnError as e:
            return e.step
        os.waitpid(pid, 0)
        return "ran"
    try:
        assert run_in_child(child) == "identity:getresuid"
        assert not os.path.exists(marker)
    finally:
        if os.path.exists(marker):
            os.unlink(marker)


# --- the payload guards (guards.c, plan_run.c): tty guard, death signal ---------------------

# The payload's side: become session leader with the pty slave argv[1] as controlling
# terminal (/dev/tty), then exec argv[2:].
ON_TTY = "import os, sys; os.setsid(); os.open(sys.argv[1], os.O_RDWR); os.execv(sys.argv[2], sys.argv[2:])"


def _on_pty(argv, *, tty_guard):
    """Spawn argv as root (no switch) on a fresh pty, with or without the tty guard;
    returns (exit code, what reached the terminal's input queue)."""
    import tty
    master, slave = os.openpty()
    try:
        tty.setraw(slave)               # every pushed byte readable, no line editing
        code, _ = _run(b"/usr/bin/python3", [b"python3", b"-c", ON_TTY.encode(), os.ttyname(slave).encode()]
                       + [os.fsencode(a) for a in argv], tty_guard=tty_guard)
        os.set_blocking(slave, False)
        queued = b""
        while True:
            try:
                chunk = os.read(slave, 4096)
            except BlockingIOError:
                break
            if not chunk:
                break
            queued += chunk
    finally:
        os.close(master)
        os.close(slave)
    return code, queued


def test_tty_guard_refuses_tiocsti_and_tioclinux(tmp_path):
    """root on its own terminal may push input (TIOCSTI): the filter makes it EPERM, for
    TIOCLINUX too and whatever the high 32 bits of the command word; without the guard
    the same payload's input arrives (the test can fail)."""
    import json
    from tests.support.ttyattack import INJECT, TTY_ATTACK
    attack, out = tmp_path / "attack.py", tmp_path / "res.json"
    attack.write_text(TTY_ATTACK)
    attack.chmod(0o755)
    code, queued = _on_pty([attack, out], tty_guard=True)
    assert code == 0
    assert json.loads(out.read_text()) == {"tiocsti": 1, "tioclinux": 1, "tiocsti_high": 1}
    assert queued == b""
    code, queued = _on_pty([attack, out], tty_guard=False)
    res = json.loads(out.read_text())
    assert code == 0 and res["tiocsti"] == 0 and res["tiocsti_high"] == 0, res
    assert res["tioclinux"] not in (0, 1), res        # a pty is no virtual console: ENOTTY/EINVAL
    assert queued == INJECT + b"x"


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the i386/x32 ABIs exist on x86-64 only")
def test_tty_guard_covers_the_i386_and_x32_abis(tmp_path):
    import json
    import subprocess
    from tests.support.ttyattack import ABI_ATTACK
    src, exe, out = tmp_path / "abi.c", tmp_path / "abi", tmp_path / "res.json"
    src.write_text(ABI_ATTACK)
    subprocess.run(["gcc", "-O1", "-o", str(exe), str(src)], check=True, capture_output=True)
    code, queued = _on_pty([exe, out], tty_guard=True)
    res = json.loads(out.read_text())
    assert code == 0 and res["i386"] == -1 and res["x32"] == -1, res   # EPERM from the filter
    assert res["x32_tcgets"] in (0, -38), res                          # other ioctls pass
    assert queued == b""
    code, queued = _on_pty([exe, out], tty_guard=False)
    res = json.loads(out.read_text())
    assert res["i386"] in (0, -38), res                                # -38: no IA32 emulation
    assert res["i386"] == -38 or queued.startswith(b"i386\n"), (res, queued)


PDEATHSIG = b"import ctypes; s = ctypes.c_int(-1); assert ctypes.CDLL(None).prctl(2, ctypes.byref(s)) == 0; print(s.value)"


@pytest.mark.parametrize("switch", [True, False])
def test_death_signal_is_set_after_the_switch(switch):
    """A credential change clears the parent-death signal: it is set after the switch."""
    code, out = _run(b"/usr/bin/python3", [b"python3", b"-c", PDEATHSIG], switch_identity=switch,
                     linger=True, pdeathsig=signal.SIGKILL)
    assert (code, out) == (0, b"%d\n" % signal.SIGKILL)
    assert _run(b"/usr/bin/python3", [b"python3", b"-c", PDEATHSIG], switch_identity=switch) == (0, b"0\n")


def test_parent_dead_before_the_death_signal_was_set_nothing_runs(tmp_path):
    """The lingering parent dies after the clone, before PR_SET_PDEATHSIG takes effect: then
    nobody would ever signal the payload, so it must not start. A seccomp user
    notification holds the child's prctl while the test kills its parent."""
    from tests.native.native_helpers import run_in_child
    from tests.support import seccomp
    marker = tmp_path / "ran"

    def supervisor():
        import ctypes
        ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)            # PR_SET_CHILD_SUBREAPER: the orphan is ours
        listener = seccomp.install_hold([("prctl", 1)])   # prctl(PR_SET_PDEATHSIG, ...)
        parent = os.fork()
        if parent == 0:
            os.close(listener)
            try:
                _start(b"/bin/sh", [b"sh", b"-c", b"echo ran > " + bytes(marker)], linger=True,
                       pdeathsig=signal.SIGKILL)
            finally:
                os._exit(0)
        ident, child = seccomp.held(listener)
        os.kill(parent, signal.SIGKILL)
        os.waitpid(parent, 0)
        seccomp.release(listener, ident)                  # the prctl now runs, too late
        _, status = os.waitpid(child, 0)
        return os.waitstatus_to_exitcode(status)

    assert run_in_child(supervisor) == 127
    assert not marker.exists()


# --- the plan as bytes: a refused plan runs nothing; the lingering parent -------------------

def test_malformed_plan_runs_nothing(tmp_path):
    """Any plan the decoder refuses (truncated, a count or length that does not fit, a
    missing NUL) stops before anything of it is applied: no child, no exec, in place or not."""
    from tests.native.native_helpers import run_in_child
    marker = tmp_path / "ran"
    good = encode(_plan(b"/bin/sh", [b"sh", b"-c", b"echo ran > " + bytes(marker)]))
    bad = [good[:-1], good + b"\0", good[:56], good.replace(b"echo ran", b"echo\0ran"),
           good[:48] + b"\xff\xff\xff\xff" + good[52:], good[:-1] + b"x"]
    for data in bad:
        with pytest.raises(native.SpawnError) as e:
            native.start_payload(data)
        assert (e.value.step, e.value.errno) == ("plan", 22)

        def in_place():
            try:
                native.become_payload(data)
            except native.SpawnError as e:
                return e.step, os.getresuid()
        assert run_in_child(in_place) == ("plan", (0, 0, 0))
    assert not marker.exists()
    code, _ = _run(b"/bin/sh", [b"sh", b"-c", b"echo ran > " + bytes(marker)])
    assert code == 0 and marker.exists()   # the same plan, well formed, does run


LINGERED = (b"trap 'exit 7' USR1; python3 -c 'import time; t = time.process_time(); "
            b"exec(\"while time.process_time() - t < 0.3: pass\")'; kill -USR1 $PPID; "
            b"i=0; while [ $i -lt 1000 ]; do sleep 0.01; i=$((i+1)); done; exit 3")  # not forwarded: 3, not a hang


def test_lingering_parent_forwards_reports_and_takes_the_callers_ruid():
    """The payload signals its lingering parent (SI_USER): forwarded back to it, so the trap
    exits 7; the parent reports that status and the ~0.3 s of CPU the payload burned, and
    waited with the plan's caller_ruid as its real uid (euid still 0)."""
    from tests.native.native_helpers import run_in_child

    def lingering():
        started = native.start_payload(encode(_plan(b"/bin/sh", [b"sh", b"-c", LINGERED], env=[b"PATH=/usr/bin:/bin"],
                                                    linger=True, pdeathsig=signal.SIGKILL,
                                                    forward_signals=[signal.SIGUSR1, signal.SIGTERM],
                                                    caller_ruid=65534)))
        status, cpu_user, cpu_system = started.wait()
        return os.waitstatus_to_exitcode(status), cpu_user + cpu_system, os.getresuid()

    code, cpu, ids = run_in_child(lingering)
    assert code == 7
    assert 0.25 < cpu < 5
    assert ids == (65534, 0, 0)


def test_linger_of_a_plan_without_linger_is_refused():
    from tests.native.native_helpers import run_in_child

    def waiting():
        started = native.start_payload(encode(_plan(b"/bin/true", [b"true"])))
        try:
            started.wait()
        except native.SpawnError as e:
            os.waitpid(started.pid, 0)
            return e.step, e.errno
    assert run_in_child(waiting) == ("linger", 22)


@pytest.mark.parametrize("no_new_privs", [True, False])
def test_no_new_privs_as_the_plan_says(no_new_privs):
    code, out = _run(b"/bin/grep", [b"grep", b"NoNewPrivs", b"/proc/self/status"], no_new_privs=no_new_privs,
                     switch_identity=True)
    assert (code, out.split()) == (0, [b"NoNewPrivs:", b"1" if no_new_privs else b"0"])
