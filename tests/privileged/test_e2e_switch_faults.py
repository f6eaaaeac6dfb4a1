"""The installed glexec when the kernel's answer to the identity switch is a lie.

A seccomp filter (tests/support/seccomp.py), installed by the root harness before it drops
to the pilot and execs the setuid binary, makes ``setresuid(<target uid>, ...)`` return 0
without changing anything. Only the executor's verification after the switch stands between
that and a payload running as root: the payload must never start, the caller gets one line,
and the end record names the failed check.
"""
import os
import pwd
import subprocess

import pytest

from tests.privileged.conftest import SH, Result
from tests.support.runas import build_env
from tests.support.seccomp import install_fake_success


def _run_with_lying_syscalls(gx, argv, calls, user="gxtpilot"):
    pw = pwd.getpwnam(user)
    groups = sorted(set(os.getgrouplist(user, pw.pw_gid)))
    proxy = gx.proxy("user1", owner=user)

    def become_caller():                 # in the forked child, as root, before exec
        install_fake_success(calls)
        os.setgroups(groups)
        os.setresgid(pw.pw_gid, pw.pw_gid, pw.pw_gid)
        os.setresuid(pw.pw_uid, pw.pw_uid, pw.pw_uid)

    env = build_env({"GLEXEC_CLIENT_CERT": str(proxy), "GLEXEC_TARGET_PROXY": "/dev/null"})
    before = len(gx.audit())
    p = subprocess.run([gx.glexec, *argv], env=env, cwd=str(gx.box), stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=30, preexec_fn=become_caller,
                       start_new_session=True)
    return Result(p.returncode, p.stdout, p.stderr, None, gx.audit()[before:])


@pytest.mark.parametrize("linger", [True, False])
def test_lying_setresuid_never_runs_the_payload(gx, linger):
    target = gx.accounts.target1
    marker = gx.marker("ran")
    gx.config(payload={"linger": linger})
    argv = [SH, "-c", f'id -u > "{marker}"']
    r = _run_with_lying_syscalls(gx, argv, [("setresuid", target.uid)])
    assert not marker.exists(), f"payload ran as uid {marker.read_text().strip()}: {r!r}"
    assert r.returncode == 126, r
    assert r.stdout == b"" and r.stderr.count(b"\n") == 1, r
    assert b"identity:getresuid" in r.stderr, r
    if linger:                           # grant, then the end record says why nothing ran
        assert [x["event"] for x in r.records] == ["grant", "end"], r
        assert r.records[1]["reason"] == "exec_failed" and r.records[1]["step"] == "identity:getresuid"
    else:                                # exec in place: the refusal is the record
        assert [x["event"] for x in r.records][-1] == "refuse", r
        assert r.records[-1]["detail"]["step"] == "identity:getresuid", r


def test_same_harness_without_the_lie_runs_as_the_target(gx):
    """The harness itself (seccomp filter on another uid, drop, setuid exec) is sound."""
    target = gx.accounts.target1
    marker = gx.marker("ran")
    r = _run_with_lying_syscalls(gx, [SH, "-c", f'id -u > "{marker}"'], [("setresuid", 1)])
    assert r.returncode == 0, r
    assert marker.read_text().strip() == str(target.uid)
