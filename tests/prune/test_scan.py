"""procscan.scan on the live /proc: exact uids of non-dumpable processes (PIDFD_GET_INFO and
the status fallback agree), zombies, kernel threads, hostile comm, vanished processes."""
import os
import subprocess
import sys

import pytest

from glexec_tools.prune import plan as P
from glexec_tools.common import procfs as procscan
from tests.support.skips import optional

UID = 47491          # test range 47400-47499, no account needed
PR_SET_NAME, PR_SET_DUMPABLE = 15, 4

CHILD = ("import ctypes, sys; libc = ctypes.CDLL(None); "
         "libc.prctl({dump_op}, {dump}, 0, 0, 0); libc.prctl(15, b'x) Z 1 (y', 0, 0, 0); "
         "print('ok', flush=True); sys.stdin.read()")


def _spawn(dumpable, **kw):
    code = CHILD.format(dump_op=PR_SET_DUMPABLE, dump=dumpable)
    p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, **kw)
    assert p.stdout.readline() == b"ok\n"
    return p


def _stop(p):
    p.stdin.close()
    p.wait()


@pytest.fixture
def status_fallback(monkeypatch):
    monkeypatch.setattr(procscan, "_pidfd_info_ok", [False])


@pytest.mark.parametrize("fallback", [False, True])
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to start a process of another uid")
def test_nondumpable_pool_process_has_its_real_uids(fallback, monkeypatch):
    if fallback:
        monkeypatch.setattr(procscan, "_pidfd_info_ok", [False])
    kids = [_spawn(0, user=UID, group=UID, extra_groups=[]),
            _spawn(1, user=UID, group=UID, extra_groups=[])]
    try:
        # the files of a non-dumpable process are root's (the directory shows the euid)
        assert os.stat(f"/proc/{kids[0].pid}/stat").st_uid == 0
        assert os.stat(f"/proc/{kids[1].pid}/stat").st_uid == UID
        snap = procscan.scan(uids=P.Scope({UID: None}), names=("slurmstepd",))
        for k in kids:
            p = snap.procs[k.pid]
            assert p.uids == (UID, UID, UID) and p.comm == b"x) Z 1 (y"
            assert p.ppid == os.getpid() and not p.full
            assert p.starttime == P.parse_stat(open(f"/proc/{k.pid}/stat", "rb").read())[5]
        # the fast path reads exact uids where it must; a full re-read agrees
        procscan.complete(snap, [k.pid for k in kids])
        assert all(snap.procs[k.pid].full and snap.procs[k.pid].cgroup for k in kids)
        assert all(snap.procs[k.pid].uids == (UID,) * 3 for k in kids)
    finally:
        for k in kids:
            _stop(k)


def test_pidfd_uids_match_status():
    if not procscan._pidfd_info_ok[0]:
        pytest.skip(optional("kernel without PIDFD_GET_INFO"))
    for pid in (1, os.getpid()):
        ids = procscan._pidfd_uids(pid)
        if ids is None:
            pytest.skip(optional("kernel without PIDFD_GET_INFO"))
        with open(f"/proc/{pid}/status", "rb") as f:
            assert ids == P.parse_status_uids(f.read())
    gone = subprocess.Popen(["/bin/true"])
    gone.wait()
    assert procscan._pidfd_uids(gone.pid) is None and procscan._pidfd_info_ok[0]


def test_scan_same_with_status_fallback(status_fallback):
    fast = procscan.scan(names=P.DEFAULT_DAEMONS)
    procscan._pidfd_info_ok[0] = True
    try:
        other = procscan.scan(names=P.DEFAULT_DAEMONS)
    finally:
        procscan._pidfd_info_ok[0] = False
    for pid in (1, os.getpid()):
        assert fast.procs[pid].uids == other.procs[pid].uids
        assert fast.procs[pid].starttime == other.procs[pid].starttime


def test_zombie_kthread_self_and_vanished():
    z = subprocess.Popen(["/bin/true"])
    while True:                              # exited but not reaped: a zombie
        with open(f"/proc/{z.pid}/stat", "rb") as f:
            if P.parse_stat(f.read())[2] == "Z":
                break
    gone = subprocess.Popen(["/bin/true"])
    gone.wait()                              # reaped: its pid is no process
    try:
        snap = procscan.scan(names=P.DEFAULT_DAEMONS)
        assert snap.procs[z.pid].state == "Z" and snap.procs[z.pid].ppid == os.getpid()
        assert gone.pid not in snap.procs or snap.procs[gone.pid].starttime != 0
        me = snap.procs[os.getpid()]
        assert me.uids == (os.getuid(), os.geteuid(), os.getresuid()[2])
        kthreadd = snap.procs.get(2)
        if kthreadd is not None:              # absent in a pid namespace
            assert kthreadd.flags & P.PF_KTHREAD and kthreadd.uids == (0, 0, 0)
        assert 0 < snap.uptime and snap.hz > 0
    finally:
        z.wait()


def test_scan_skips_unparsable_and_vanishing(tmp_path):
    """A fake procfs: a pid whose stat vanished, a garbage stat, a good one."""
    (tmp_path / "uptime").write_text("123.45 678.9\n")
    good = tmp_path / "7"
    good.mkdir()
    (good / "stat").write_bytes(b"7 (a) b) S 1 7 7 0 -1 4194560" + b" 0" * 12 + b" 99"
                                + b" 0" * 30 + b"\n")
    (tmp_path / "8").mkdir()                  # no stat: the process is gone
    bad = tmp_path / "9"
    bad.mkdir()
    (bad / "stat").write_bytes(b"9 (a S 1\n")
    (good / "status").write_bytes(b"Name:\ta) b\nUid:\t47401\t47402\t47403\t47401\n")
    (tmp_path / "self").mkdir()
    snap = procscan.scan(names=(), proc=str(tmp_path))
    assert list(snap.procs) == [7] and snap.uptime == 123.45
    p = snap.procs[7]
    assert (p.comm, p.ppid, p.starttime, p.state) == (b"a) b", 1, 99, "S")
    if os.geteuid() == 0:      # root-owned entry: exact uids from status (no pidfd: not /proc)
        assert p.uids == (47401, 47402, 47403)


def _fake_proc(root, procs):
    """procs: (pid, ppid, uid, comm); every file root's when run as root, so the scan reads
    the uids of each from its status file (no pidfd: not this namespace's /proc)."""
    (root / "uptime").write_text("5000.00 1.0\n")
    for pid, ppid, uid, comm in procs:
        d = root / str(pid)
        d.mkdir()
        (d / "stat").write_bytes(b"%d (%s) S %d 0 0 0 -1 4194560" % (pid, comm, ppid)
                                 + b" 0" * 12 + b" 100" + b" 0" * 30 + b"\n")
        (d / "status").write_bytes(b"Name:\t%s\nUid:\t%d\t%d\t%d\t%d\n"
                                   % (comm, uid, uid, uid, uid))
        (d / "cgroup").write_bytes(b"0::/user.slice\n")
        (d / "cmdline").write_bytes(comm + b"\0")


@pytest.mark.skipif(os.geteuid() != 0, reason="the fake /proc files must be root's")
def test_dry_run_report_lists_keeps_only_when_asked(tmp_path):
    from collections import namedtuple
    from glexec_tools.prune.apply import Pruner
    pw = namedtuple("pw", "pw_name pw_uid pw_gid")
    passwd = [pw("root", 0, 0), pw("nobody", 65534, 65534), pw("gxtprune01", 47401, 47400)]
    _fake_proc(tmp_path, [(1, 0, 0, b"init"), (10, 1, 0, b"slurmstepd"),
                          (11, 10, 47401, b"job"), (20, 1, 47401, b"stray")])
    cfg = P.default_config(uid_ranges=((47401, 47401),), min_age=0)
    rows = {}
    for keeps in (True, False):
        pr = Pruner(cfg, dry_run=True, proc=str(tmp_path), passwd=passwd, list_keeps=keeps)
        rep = pr.run()
        rows[keeps] = {x["pid"]: (x["action"], x["reason"]) for x in rep["plan"]}
        assert pr.exit_code == 1 and rep["would_kill"] == 1
    assert rows[True] == {11: ("keep", "job_daemon"), 20: ("kill", "orphan")}
    assert rows[False] == {20: ("kill", "orphan")}
