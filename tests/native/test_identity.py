"""switch_identity / set_fs_identity / set_no_new_privs against the real kernel (root only).

Every privileged call runs in a forked child (native_helpers.run_in_child) so the pytest
process keeps its identity even if a check fails.
"""
import errno
import os
import shutil
import subprocess
import tempfile

import pytest

from glexec_py.effects import native
from tests.native.native_helpers import proc_status, run_in_child

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

NAME, ID = "gxtnat", 47180          # outside the 47000-47179 range the e2e suite sweeps
EXTRA = [47181, 47182]              # extra gids: need not exist in /etc/group
NOBODY = 65534


def _remove_account():
    subprocess.run(["userdel", NAME], stderr=subprocess.DEVNULL)
    subprocess.run(["groupdel", NAME], stderr=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def account():
    _remove_account()               # leftovers of a crashed run
    try:
        subprocess.run(["groupadd", "-g", str(ID), NAME], check=True)
        subprocess.run(["useradd", "-M", "-N", "-u", str(ID), "-g", NAME,
                        "-s", "/usr/sbin/nologin", NAME], check=True)
        yield ID, ID
    finally:
        _remove_account()


def _switch_and_report(uid, gid, groups):
    native.switch_identity(uid, gid, groups)
    st = proc_status()
    try:
        os.setuid(0)
        regained = True
    except PermissionError:
        regained = False
    return {
        "resuid": os.getresuid(), "resgid": os.getresgid(), "groups": sorted(os.getgroups()),
        "caps": {k: int(st[k][0], 16) for k in ("CapPrm", "CapEff", "CapInh", "CapAmb")},
        "regained": regained,
    }


def _try_switch(uid, gid, groups):  # -> (step, errno, resuid, resgid) or None
    try:
        native.switch_identity(uid, gid, groups)
    except native.IdentityError as e:
        return e.step, e.errno, os.getresuid(), os.getresgid()
    return None


@pytest.mark.parametrize("groups", [EXTRA, EXTRA + EXTRA[:1], []])
def test_switch_to_test_user(account, groups):
    uid, gid = account
    rep = run_in_child(_switch_and_report, uid, gid, [gid] + groups)
    assert rep["resuid"] == (uid,) * 3
    assert rep["resgid"] == (gid,) * 3
    assert rep["groups"] == sorted(set([gid] + groups))
    assert rep["caps"] == {"CapPrm": 0, "CapEff": 0, "CapInh": 0, "CapAmb": 0}
    assert rep["regained"] is False


def test_switch_to_nobody_without_groups():
    rep = run_in_child(_switch_and_report, NOBODY, NOBODY, [])
    assert rep["resuid"] == (NOBODY,) * 3 and rep["resgid"] == (NOBODY,) * 3
    assert rep["groups"] == [] and not any(rep["caps"].values()) and not rep["regained"]


def test_switch_to_root_fails_closed_on_capabilities():
    """uid 0 skips the setuid(0) probe, but root keeps its capabilities: always refused."""
    res = run_in_child(_try_switch, 0, 0, [])
    assert res[:2] == ("capget", errno.EPERM)


def _raise_inheritable_and_ambient(cap):
    """As root: put ``cap`` into this process's inheritable and ambient sets (as a caller's
    can be: they survive the setuid exec of the shim)."""
    import ctypes
    import struct
    libc = ctypes.CDLL(None, use_errno=True)
    hdr = ctypes.create_string_buffer(struct.pack("=Ii", 0x20080522, 0), 8)   # _LINUX_CAPABILITY_VERSION_3
    data = ctypes.create_string_buffer(24)
    assert libc.capget(hdr, data) == 0
    words = list(struct.unpack("=6I", data.raw))     # (effective, permitted, inheritable) x 2
    words[2] |= 1 << cap
    data = ctypes.create_string_buffer(struct.pack("=6I", *words), 24)
    assert libc.capset(hdr, data) == 0, os.strerror(ctypes.get_errno())
    assert libc.prctl(47, 2, cap, 0, 0) == 0, os.strerror(ctypes.get_errno())   # PR_CAP_AMBIENT_RAISE


def test_callers_inheritable_and_ambient_caps_are_cleared(account):
    """They used to survive the switch, which then (rightly) refused the target: every call
    of such a caller failed. Cleared with the switch, the target starts with none."""
    uid, gid = account

    def child():
        _raise_inheritable_and_ambient(13)          # CAP_NET_RAW
        st = proc_status()
        held = (int(st["CapInh"][0], 16), int(st["CapAmb"][0], 16))
        return held, _switch_and_report(uid, gid, [gid])
    held, rep = run_in_child(child)
    assert held == (1 << 13, 1 << 13)               # the caller really held them
    assert rep["resuid"] == (uid,) * 3
    assert rep["caps"] == {"CapPrm": 0, "CapEff": 0, "CapInh": 0, "CapAmb": 0}


def test_too_many_groups_fails_at_setgroups(account):
    uid, gid = account
    res = run_in_child(_try_switch, uid, gid, list(range(40000, 40000 + 65537)))
    assert res is not None
    step, err, resuid, resgid = res
    assert (step, err) == ("setgroups", errno.EINVAL)
    assert resuid == (0, 0, 0) and resgid == (0, 0, 0)     # nothing else happened


@pytest.mark.parametrize("uid,gid,groups", [(-1, 1, []), (1, 2**32 - 1, []), (1, 1, [-5]),
                                            (True, 1, []), (1, 1, ["7"])])
def test_invalid_ids_rejected_before_any_syscall(uid, gid, groups):
    res = run_in_child(_try_switch, uid, gid, groups)
    assert res == ("args", errno.EINVAL, (0, 0, 0), (0, 0, 0))


def test_identity_error_pickles():
    e = native.IdentityError("setresuid", errno.EAGAIN)
    assert (e.step, e.errno) == ("setresuid", errno.EAGAIN) and "setresuid" in str(e)


def test_no_new_privs():
    def child():
        before = proc_status()["NoNewPrivs"][0]
        native.set_no_new_privs()
        return before, proc_status()["NoNewPrivs"][0]
    assert run_in_child(child) == ("0", "1")


@pytest.fixture
def files(account):
    uid, gid = account
    d = tempfile.mkdtemp(prefix="gxtnat-")
    try:
        os.chmod(d, 0o755)          # traversable by the test user
        rootf, userf = os.path.join(d, "root-only"), os.path.join(d, "user-owned")
        for path, owner in ((rootf, 0), (userf, uid)):
            with open(path, "w") as f:
                f.write("x")
            os.chown(path, owner, owner)
            os.chmod(path, 0o600)
        yield rootf, userf
    finally:
        shutil.rmtree(d)


def _can_open(path):
    try:
        os.close(os.open(path, os.O_RDONLY))
        return 0
    except OSError as e:
        return e.errno


def test_fs_identity_and_restore(account, files):
    uid, gid = account
    rootf, userf = files

    def child():
        out = {}
        native.set_fs_identity(uid, gid, [gid] + EXTRA)
        st = proc_status()
        out["as_user"] = (_can_open(rootf), _can_open(userf), st["Uid"], st["Gid"],
                          sorted(os.getgroups()), os.getresuid())
        native.restore_fs_identity()
        st = proc_status()
        out["restored"] = (_can_open(rootf), _can_open(userf), st["Uid"], st["Gid"],
                           os.getgroups())
        return out

    out = run_in_child(child)
    root_err, user_err, uids, gids, groups, resuid = out["as_user"]
    assert root_err == errno.EACCES and user_err == 0
    assert uids == ["0", "0", "0", str(uid)] and gids == ["0", "0", "0", str(gid)]
    assert groups == sorted([gid] + EXTRA) and resuid == (0, 0, 0)
    root_err, user_err, uids, gids, groups = out["restored"]
    assert (root_err, user_err) == (0, 0)
    assert uids == ["0"] * 4 and gids == ["0"] * 4 and groups == []


def test_fs_identity_too_many_groups(account):
    def child():
        try:
            native.set_fs_identity(ID, ID, list(range(40000, 40000 + 65537)))
        except native.IdentityError as e:
            return e.step, e.errno, proc_status()["Uid"]
    assert run_in_child(child) == ("setgroups", errno.EINVAL, ["0"] * 4)


# --- the switch is verified, not trusted: system calls that lie (seccomp fault injection) ---

def _switch_with_lying(calls, uid, gid, groups):
    from tests.support.seccomp import install_fake_success
    install_fake_success(calls)          # in the forked child only: filters are for life
    return _try_switch(uid, gid, groups)


@pytest.mark.parametrize("lie,refused_at", [
    ("setresuid", "getresuid"),          # uid unchanged although setresuid "succeeded"
    ("setresgid", "getresgid"),
    ("setgroups", "getgroups"),          # the caller's (root's) supplementary groups stay
    ("setuid0", "setuid0"),              # setuid(0) "succeeds" afterwards: a way back to root
    ("setgid0", "setgid0"),
    ("capget", "capget"),                # capget that fills nothing must not read as "no caps"
])
def test_switch_refuses_when_a_system_call_lies(account, lie, refused_at):
    uid, gid = account
    calls = {"setresuid": [("setresuid", uid)], "setresgid": [("setresgid", gid)],
             "setgroups": [("setgroups", None)], "setuid0": [("setuid", 0)],
             "setgid0": [("setgid", 0)], "capget": [("capget", None)]}[lie]
    res = run_in_child(_switch_with_lying, calls, uid, gid, [gid] + EXTRA)
    assert res is not None, f"switch reported success although {lie} lied"
    assert res[0] == refused_at, res


def test_lying_setresuid_filter_really_lies(account):
    """The fault injection itself: without the check, the ids would still be root's."""
    uid, _ = account

    def child():
        from tests.support.seccomp import install_fake_success
        install_fake_success([("setresuid", uid)])
        os.setresuid(uid, uid, uid)      # returns without an error...
        return os.getresuid()
    assert run_in_child(child) == (0, 0, 0)   # ...and changed nothing
