"""glexec-sweep never records "no_files" for objects it did not look at (issue 9 §4).

POSIX message queues exist whether or not /dev/mqueue is mounted: the sweep mounts a private
mqueue instance (private mount namespace) when the configured one is not an mqueue mount,
and a class it cannot inspect at all (mqueue, /dev/shm, SysV IPC) makes the record say so
("files_remain", "cannot inspect ..."). Real queues, created by a real test account; the
sweep runs in a private mount namespace of the test (unshare -m) where /dev/mqueue is not
mounted, or is mounted.
"""
import ctypes
import json
import os
import subprocess

from tests.sweep.conftest import LAUNCHER
from tests.sweep.test_sweep_real import A, MQ_CREATE, config, tree
from tests.support.runas import run_as

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mq_open.restype = ctypes.c_int


def queue_exists(name):
    """As root: does the POSIX message queue ``name`` exist in our IPC namespace?"""
    fd = _libc.mq_open(name.encode(), os.O_RDONLY)
    if fd >= 0:
        os.close(fd)
        return True
    assert ctypes.get_errno() == 2, os.strerror(ctypes.get_errno())
    return False


def make_queue(user, name):
    r = run_as(user, ["/usr/bin/python3.11", "-c", MQ_CREATE, name])
    assert r.returncode == 0, r
    assert queue_exists(name)


def drop_queue(name):
    _libc.mq_unlink(name.encode())


def sweep_in_ns(cfg, *args, setup="", wrap=()):
    """glexec-sweep in a private mount namespace of the test, after ``setup`` (sh) ran there;
    /dev/mqueue is never mounted there unless ``setup`` mounts it."""
    script = ("set -e; umount -l /dev/mqueue 2>/dev/null || true; "
              f"{setup}\n"
              'test "$(stat -f -c %T /dev/mqueue 2>/dev/null)" != mqueue; '
              'exec "$@"')
    return subprocess.run(["unshare", "-m", "--propagation", "private", *wrap, "/bin/sh", "-c", script, "sh",
                           LAUNCHER, "--config", cfg, "--json", *args],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)


def summary(r):
    return json.loads(r.stdout.decode().splitlines()[-1])


def state_record(workdir):
    with open(f"{workdir}/state/sweep/{A}.json") as f:
        return json.load(f)


def test_queue_removed_without_dev_mqueue(sweep_accounts, workdir):
    q = f"/gxtsweep-unmounted-{os.getpid()}"
    make_queue(A, q)
    try:
        cfg = config(workdir, [tree(workdir)], pool=[A])    # mqueue_dir: default /dev/mqueue
        r = sweep_in_ns(cfg)
        assert r.returncode == 0, r.stderr
        [acc] = summary(r)["swept"]
        assert acc["state"] == "no_files" and acc["removed"] == 1, acc
        assert not queue_exists(q)
        assert state_record(workdir)["state"] == "no_files"
        # the private mount stayed private: nothing mounted at the state dir out here
        assert os.path.ismount(f"{workdir}/state/sweep/.mqueue") is False
    finally:
        drop_queue(q)


def test_queue_removed_when_mqueue_dir_is_an_empty_plain_directory(sweep_accounts, workdir):
    """/dev/mqueue may exist without a mount: walking that empty directory sees nothing."""
    q = f"/gxtsweep-plain-{os.getpid()}"
    make_queue(A, q)
    plain = f"{workdir}/plain-mqueue"
    os.mkdir(plain, 0o755)
    try:
        cfg = config(workdir, [tree(workdir)], pool=[A], extra=f"mqueue_dir: {plain}\n")
        r = sweep_in_ns(cfg)
        assert r.returncode == 0, r.stderr
        [acc] = summary(r)["swept"]
        assert acc["state"] == "no_files" and acc["removed"] == 1, acc
        assert not queue_exists(q)
    finally:
        drop_queue(q)


def test_queue_removed_through_the_mounted_mqueue_dir(sweep_accounts, workdir):
    q = f"/gxtsweep-mounted-{os.getpid()}"
    make_queue(A, q)
    mq = f"{workdir}/mq"
    os.mkdir(mq, 0o755)
    try:
        cfg = config(workdir, [tree(workdir)], pool=[A], extra=f"mqueue_dir: {mq}\n")
        r = sweep_in_ns(cfg, setup=f"mount -t mqueue none {mq}")
        assert r.returncode == 0, r.stderr
        [acc] = summary(r)["swept"]
        assert acc["state"] == "no_files" and acc["removed"] == 1, acc
        assert not queue_exists(q)
        recs = [json.loads(x) for x in open(f"{workdir}/audit.jsonl")]
        assert mq in recs[-1]["roots"]                   # the configured mount was used
    finally:
        drop_queue(q)


def test_mqueue_not_inspectable_is_recorded_not_clean(sweep_accounts, workdir):
    """No mqueue mount and no way to make one (CAP_SYS_ADMIN dropped: no unshare, no
    mount): the record says so, and the queue is still there."""
    q = f"/gxtsweep-blind-{os.getpid()}"
    make_queue(A, q)
    try:
        cfg = config(workdir, [tree(workdir)], pool=[A])
        r = sweep_in_ns(cfg, wrap=("setpriv", "--bounding-set=-sys_admin", "--inh-caps=-all"))
        assert r.returncode == 1, r.stderr
        s = summary(r)
        [acc] = s["swept"]
        assert acc["state"] == "files_remain" and acc["why"] == "cannot inspect mqueue", acc
        assert "mqueue" in s["unchecked"]
        rec = state_record(workdir)
        assert rec["state"] == "files_remain" and "mqueue" in rec["unchecked"], rec
        assert queue_exists(q)
    finally:
        drop_queue(q)


def test_sysv_not_inspectable_is_recorded_not_clean(sweep_accounts, workdir):
    """/proc/sysvipc hidden (an empty tmpfs over it): SysV objects cannot be listed."""
    cfg = config(workdir, [tree(workdir)], pool=[A])
    r = sweep_in_ns(cfg, setup="mount -t tmpfs -o size=4k none /proc/sysvipc")
    assert r.returncode == 1, r.stderr
    [acc] = summary(r)["swept"]
    assert acc["state"] == "files_remain" and "sysv" in acc["unchecked"], acc
    assert state_record(workdir)["state"] == "files_remain"


def test_devshm_dir_missing_is_recorded_not_clean(sweep_accounts, workdir):
    cfg = config(workdir, [tree(workdir)], pool=[A], extra=f"devshm_dir: {workdir}/no-such-shm\n")
    r = sweep_in_ns(cfg)
    assert r.returncode == 1, r.stderr
    [acc] = summary(r)["swept"]
    assert acc["state"] == "files_remain" and "devshm" in acc["unchecked"], acc


def test_opt_outs_are_named_in_the_records(sweep_accounts, workdir):
    cfg = config(workdir, [tree(workdir)], pool=[A],
                 extra='mqueue_dir: ""\ndevshm_dir: ""\nsysv_ipc: false\n')
    r = sweep_in_ns(cfg)
    assert r.returncode == 0, r.stderr
    [acc] = summary(r)["swept"]
    assert acc["state"] == "no_files" and sorted(acc["not_swept"]) == ["devshm", "mqueue", "sysv"]
    assert sorted(state_record(workdir)["not_swept"]) == ["devshm", "mqueue", "sysv"]


def test_sysvipc_table_that_does_not_parse_is_an_error():
    """Pure: a header without the id/uid/cuid columns or a row that does not parse is not
    "no objects" (it used to be skipped silently)."""
    import pytest
    from glexec_tools.sweep import plan as core
    with pytest.raises(ValueError):
        core.parse_sysvipc("shm", "key shmid perms\n0 5 600\n")
    head = "       key      msqid perms      cbytes       qnum lspid lrpid   uid   gid  cuid  cgid\n"
    assert core.parse_sysvipc("msg", head + "0 3 600 0 0 0 0 47501 47501 47501 47501\n") == [(3, 47501, 47501)]
    with pytest.raises(ValueError):
        core.parse_sysvipc("msg", head + "0 3 600 0 0 0 0 47501\n")
    assert core.parse_sysvipc("msg", head) == []


def test_directory_that_cannot_be_entered_is_recorded_not_clean(sweep_accounts, workdir):
    """A root-owned directory the walk cannot enter (here: out of file descriptors, 30
    levels deep under RLIMIT_NOFILE 24) may hide the account's files: they are not
    "no_files" (the error used to be counted only for the directory's owner, root)."""
    from tests.sweep.test_sweep_real import mk
    a = sweep_accounts[A].uid
    t = tree(workdir)
    d = t
    for i in range(30):
        d = f"{d}/d{i}"
        os.mkdir(d, 0o755)
    mk(f"{d}/deep", a)
    cfg = config(workdir, [t], pool=[A], extra='workers: 1\n')
    r = sweep_in_ns(cfg, wrap=("prlimit", "--nofile=24:24", "--"))
    assert r.returncode == 1, r.stderr
    [acc] = summary(r)["swept"]
    assert acc["state"] == "files_remain" and "files" in acc["unchecked"], acc
    assert os.path.exists(f"{d}/deep")
    assert state_record(workdir)["state"] == "files_remain"
