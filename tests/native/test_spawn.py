"""spawn_payload: the clone(CLONE_VM|CLONE_VFORK) start of the payload (as root)."""
import os
import tempfile

import pytest

from glexec_py.effects import native

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

LIMITS = {}  # keep the test process's limits


def _run(path, argv, env=(), **kw):
    """Spawn with stdout redirected to a file; returns (exit status, stdout bytes)."""
    args = dict(uid=65534, gid=65534, groups=[], rlimits=LIMITS, umask=0o022, cwd=b"/", switch=False)
    args.update(kw)
    with tempfile.TemporaryFile() as out:
        saved = os.dup(1)
        os.dup2(out.fileno(), 1)
        try:
            pid = native.spawn_payload(path, argv, list(env), **args)
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
    code, out = _run(b"/bin/sh", [b"sh", b"-c", b"id -u; id -g; id -G"], switch=True, groups=[65534])
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
        native.spawn_payload(b"/nonexistent/payload", [b"x"], [], uid=65534, gid=65534, groups=[],
                             rlimits={}, umask=0o022, cwd=b"/", switch=False)
    assert e.value.step == "exec" and e.value.errno == 2


def test_chdir_failure_is_reported():
    with pytest.raises(native.SpawnError) as e:
        native.spawn_payload(b"/bin/true", [b"true"], [], uid=65534, gid=65534, groups=[],
                             rlimits={}, umask=0o022, cwd=b"/nonexistent-dir", switch=True)
    assert e.value.step == "chdir"


def test_identity_failure_stops_before_exec():
    # uid 0 as a target fails the capability check: the payload never runs
    with pytest.raises(native.SpawnError) as e:
        native.spawn_payload(b"/bin/true", [b"true"], [], uid=0, gid=0, groups=[],
                             rlimits={}, umask=0o022, cwd=b"/", switch=True)
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
            pid = native.spawn_payload(b"/bin/sh", [b"sh", b"-c", b"id -u > " + marker.encode()], [],
                                       uid=65534, gid=65534, groups=[], rlimits={}, umask=0o022,
                                       cwd=b"/", switch=True)
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
