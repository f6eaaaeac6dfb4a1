#!/usr/bin/python3.11
"""prune-users bench: scan + plan against the target of 0.3 s for 10,000 processes.

Two measurements (run as root):

1. real: N processes (default 10,000) really running - one root process named
   ``slurmstepd`` (the job daemon) with N-1 children of pool uid P (forked by a tiny C
   program, so they cost little memory), plus a few strays of the same uid; then
   ``procscan.scan`` + ``prune.plan.plan_prune`` (+ the completion of the kill decisions)
   on the whole machine, best and median of R runs; then the scan and the plan alone and
   the floor (open+fstat+read+close of every stat file, nothing parsed).  For comparison
   the same scan with psutil (uids/ppid/create_time/name per process).
2. synthetic: the planner alone on a generated 10,000-process snapshot (deep trees, 10 %
   strays), best and median.

The children call prctl(PR_SET_DUMPABLE, 1), the state of a payload after its exec (a
process that only forked after setresuid is non-dumpable: ``--nondumpable`` measures that
worst case: every /proc/PID/stat is root's, so the scan reads the exact uids of every
process, through PIDFD_GET_INFO on a pidfd, or the status file on kernels before 6.13).

Usage: bench/prune.py [--procs 10000] [--runs 5] [--uid 47490] [--nondumpable]
The uid must be unused (default 47490, in the test range 47400-47499); no account needed.
"""
import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [REPO, os.path.join(REPO, "tools")]

from glexec_tools.prune import plan as core            # noqa: E402
from glexec_tools.common import procfs as procscan               # noqa: E402

FORKER = r"""
#define _GNU_SOURCE
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <unistd.h>
int main(int c, char **v) {
    int n = atoi(v[1]); uid_t uid = atoi(v[2]); int dumpable = atoi(v[3]);
    prctl(PR_SET_NAME, "slurmstepd", 0, 0, 0);
    for (int i = 0; i < n; i++) {
        pid_t p = fork();
        if (p == 0) {
            if (setgroups(0, NULL) || setresgid(uid, uid, uid) || setresuid(uid, uid, uid)) _exit(1);
            prctl(PR_SET_NAME, "gxprunebench", 0, 0, 0);
            prctl(PR_SET_DUMPABLE, dumpable, 0, 0, 0);   /* 1 = as after exec of the payload */
            for (;;) pause();
        }
        if (p < 0) { perror("fork"); break; }
    }
    printf("ready\n"); fflush(stdout);
    for (;;) pause();
}
"""


def timed(fn, runs):
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t)
    return min(ts), statistics.median(ts), out


def scan_plan(cfg, scope):
    snap = procscan.scan(uids=scope, names=cfg.daemons)
    plan = core.plan_prune(snap, cfg, scope)
    todo = [d.proc.pid for d in plan.unconfirmed]
    if todo:
        procscan.complete(snap, todo)
        plan = core.plan_prune(snap, cfg, scope)
    return snap, plan


def floor_reads():
    """The bare kernel + interpreter cost the scan cannot go below: open, fstat, read and
    close /proc/PID/stat of every process, nothing parsed or kept."""
    opn, rd, cls, fst = os.open, os.read, os.close, os.fstat
    n = 0
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                fd = opn("/proc/" + name + "/stat", os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                fst(fd)
                rd(fd, 2048)
                n += 1
            except OSError:
                pass
            finally:
                cls(fd)
    return n


def leftovers(uid):
    """Processes of ``uid`` (the /proc/PID directory shows the euid) still exiting from an
    earlier run: they would be counted as already running and shrink this run."""
    n = 0
    for name in os.listdir("/proc"):
        try:
            n += name.isdigit() and os.stat("/proc/" + name).st_uid == uid
        except OSError:
            pass
    return n


def psutil_scan():
    import psutil
    out = 0
    for p in psutil.process_iter(["pid", "ppid", "uids", "create_time", "name"]):
        out += 1
    return out


def synthetic(n, uid):
    procs = {1: core.Proc(1, 0, 0, 0, 0, 1, b"init")}
    pid = 100
    for j in range(n // 100):
        d = core.Proc(pid, 1, 0, 0, 0, 50, b"slurmstepd")
        procs[pid] = d
        pid += 1
        parent = d.pid
        for k in range(99):
            stray = (k % 10 == 0)
            p = core.Proc(pid, 1 if stray else parent, uid, uid, uid, 100 + k, b"gxprunebench",
                          cgroup=("0::/user.slice",))
            procs[pid] = p
            if not stray and k % 3 == 0:
                parent = pid                     # deeper chains
            pid += 1
    return core.Snapshot(procs, 10000.0, 100)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--procs", type=int, default=10000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--uid", type=int, default=47490)
    ap.add_argument("--no-real", action="store_true")
    ap.add_argument("--nondumpable", action="store_true",
                    help="pool children stay non-dumpable (setresuid without exec): every "
                         "/proc/PID/stat is root's, exact uids read for all (worst case)")
    a = ap.parse_args()
    cfg = core.default_config(uid_ranges=((a.uid, a.uid),), min_age=0)
    scope = core.Scope({}, ranges=((a.uid, a.uid),), min_uid=1000)
    with open("/proc/loadavg") as f:
        print(f"load average before: {f.read().split()[:3]}, cpus {os.cpu_count()}")

    snap = synthetic(a.procs, a.uid)
    best, med, plan = timed(lambda: core.plan_prune(snap, cfg, scope), a.runs)
    print(f"synthetic plan, {len(snap.procs)} processes ({len(plan.kills)} strays): "
          f"best {best*1000:.1f} ms, median {med*1000:.1f} ms")

    if a.no_real or os.geteuid() != 0:
        return 0
    tmp = tempfile.mkdtemp()
    src, exe = os.path.join(tmp, "f.c"), os.path.join(tmp, "forker")
    with open(src, "w") as f:
        f.write(FORKER)
    subprocess.run(["cc", "-O2", "-o", exe, src], check=True)
    for _ in range(100):
        if not leftovers(a.uid):
            break
        time.sleep(0.2)
    have = len([n for n in os.listdir("/proc") if n.isdigit()])
    n = max(1, a.procs - have - 10)
    forker = subprocess.Popen([exe, str(n), str(a.uid), "0" if a.nondumpable else "1"], stdout=subprocess.PIPE,
                              start_new_session=True)
    strays = []
    try:
        assert forker.stdout.readline().strip() == b"ready"
        for _ in range(10):
            strays.append(subprocess.Popen(["/bin/sleep", "600"], user=a.uid, group=a.uid,
                                           extra_groups=[], start_new_session=True))
        time.sleep(0.5)
        total = len([x for x in os.listdir("/proc") if x.isdigit()])
        r0 = os.times()
        best, med, (snap, plan) = timed(lambda: scan_plan(cfg, scope), a.runs)
        r1 = os.times()
        cpu = (r1.user - r0.user + r1.system - r0.system) / a.runs
        kills = plan.kills
        print(f"real scan+plan, {len(snap.procs)} processes ({total} in /proc, "
              f"{len(kills)} strays): best {best*1000:.1f} ms, median {med*1000:.1f} ms, "
              f"cpu {cpu*1000:.0f} ms/run   target <= 300 ms: "
              f"{'OK' if best <= 0.3 else 'MISSED'} (ratio {best/0.3:.2f})")
        assert {d.proc.pid for d in kills} == {s.pid for s in strays}, "plan is wrong"
        sb, sm, snap = timed(lambda: procscan.scan(uids=scope, names=cfg.daemons), a.runs)
        pb, pm, _ = timed(lambda: core.plan_prune(snap, cfg, scope), a.runs)
        fb, fm, _ = timed(floor_reads, a.runs)
        print(f"  scan alone: best {sb*1000:.1f} ms, median {sm*1000:.1f} ms; plan alone: "
              f"best {pb*1000:.1f} ms, median {pm*1000:.1f} ms")
        print(f"  floor (open+fstat+read+close of every stat file, no parsing): best "
              f"{fb*1000:.1f} ms, median {fm*1000:.1f} ms")
        rb, rm, _ = timed(lambda: procscan.scan(uids=scope, full=True), max(1, a.runs // 2))
        print(f"  full scan (stat+status+cgroup of every process): best {rb*1000:.1f} ms")
        try:
            pb, pm, cnt = timed(psutil_scan, max(1, a.runs // 2))
            print(f"  psutil.process_iter(pid,ppid,uids,create_time,name): best "
                  f"{pb*1000:.1f} ms for {cnt} processes")
        except ImportError:
            print("  psutil not importable")
    finally:
        for s in strays:
            s.kill()
            s.wait()
        os.killpg(forker.pid, signal.SIGKILL)
        forker.wait()
        for f in (src, exe):
            os.unlink(f)
        os.rmdir(tmp)
    with open("/proc/loadavg") as f:
        print(f"load average after: {f.read().split()[:3]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
