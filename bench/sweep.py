#!/usr/bin/python3.11
"""Bench: glexec-sweep against tmpreaper on identical trees, in the same run.

    sudo /usr/bin/python3.11 bench/sweep.py [--files 1000000] [--per-dir 1000] [--uid 52998]
                                            [--repeat 3] [--workers 0]

Per repeat, builds two identical trees under ``--base-dir`` (default /var/lib/glexec-py-tests)/sweep-bench-<random>/
(root 0755; both at once, one builder process each): ``files`` regular files of ``uid`` (a
pool uid; no passwd entry needed) in directories of ``per-dir`` files each, the directories
owned by that uid; every file has atime and mtime set to 2020-01-01 (ctime cannot be set:
it is "now").  Then, timed end to end as separate processes, in alternating order (odd
repeats tmpreaper first, even ones glexec-sweep first):

* tmpreaper (Debian package): ``tmpreaper --mtime --runtime=86400 1d A``  (remove files whose
  atime and mtime are both older than a day);
* glexec-sweep (``tools/bin/glexec-sweep``): config with the same root, ``age: 1d``,
  ``age_by: am``, pool = the uid, ``workers`` as given (0 = the tool's default); removals
  as the owning account (fsuid switch per directory chunk), re-lstat before every unlink.

Both leave the (young) directories in place.  Counts the files each tool removed (files
before minus files left) and fails (exit 1) unless both removed all of them.  Prints every
repeat, then the median time of each tool and the ratio of the medians sweep/tmpreaper
(target <= 1.0), with the load average and the number of processes on the machine (the
sweep reads /proc/<pid>/status of every process twice).  The trees are removed afterwards.
"""
import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCHER = os.path.join(REPO, "tools", "bin", "glexec-sweep")
sys.path.insert(0, REPO)

from bench import benchsite  # noqa: E402
OLD = 1577836800


def build(root, files, per_dir, uid):
    """Runs as: root; forks a builder that creates the files with fsuid/fsgid = uid (so no
    chown is needed), timestamps set with futimens.  Returns the builder's pid."""
    os.mkdir(root, 0o755)
    ndirs = (files + per_dir - 1) // per_dir
    pid = os.fork()
    if pid == 0:
        try:
            for d in range(ndirs):
                dp = f"{root}/d{d:05d}"
                os.mkdir(dp, 0o755)
                os.chown(dp, uid, uid)
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            n = 0
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
            times = (OLD, OLD)
            opn, utime, close = os.open, os.utime, os.close
            for d in range(ndirs):
                dfd = os.open(f"{root}/d{d:05d}", os.O_RDONLY | os.O_DIRECTORY)
                for i in range(min(per_dir, files - n)):
                    fd = opn(b"f%05d" % i, flags, 0o644, dir_fd=dfd)
                    utime(fd, times)
                    close(fd)
                n += min(per_dir, files - n)
                os.close(dfd)
            os._exit(0)
        except BaseException as e:
            sys.stderr.write(f"build failed: {e}\n")
            os._exit(1)
    return pid


class BuildFailed(Exception):
    pass


def build_both(trees, files, per_dir, uid):
    pids = [build(t, files, per_dir, uid) for t in trees]
    statuses = [os.waitpid(p, 0)[1] for p in pids]
    bad = [s for s in statuses if s]
    if bad:
        why = ", ".join(f"killed by signal {os.WTERMSIG(s)}" if os.WIFSIGNALED(s)
                        else f"exit {os.WEXITSTATUS(s)}" for s in bad)
        raise BuildFailed(f"tree build failed ({why}; another program killing processes "
                          f"of uid {uid}? choose another --uid)")


def count_files(root):
    return sum(len(files) for _, _, files in os.walk(root))


def timed(argv):
    """(wall seconds, completed process, CPU seconds user+sys of the process and its children)"""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    p = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - t
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, p, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def context():
    nproc = sum(1 for n in os.listdir("/proc") if n.isdigit())
    return f"load {' '.join(f'{x:.2f}' for x in os.getloadavg())}, {nproc} processes"


def one_round(work, rnd, a):
    ta, tb = f"{work}/A{rnd}", f"{work}/B{rnd}"
    t = time.perf_counter()
    build_both((ta, tb), a.files, a.per_dir, a.uid)
    built = time.perf_counter() - t
    state = f"{work}/state{rnd}"
    os.mkdir(state, 0o700)
    cfg = f"{work}/glexec{rnd}.yaml"       # the engine's sections + the tool's (one file)
    with open(cfg, "w") as f:
        f.write(f"credentials:\n  ca_dir: /etc/grid-security/certificates\n"
                f"mapping:\n  gridmapfile: {work}/grid-mapfile\n"
                f"audit:\n  file: {work}/audit{rnd}.jsonl\n  syslog: false\n"
                f"state_dir: {state}\n"
                f"sweep:\n  pool: [{a.uid}]\n  max_runtime: 86400\n"
                f"  max_removals: {a.files * 2 + 10}\n  sysv_ipc: false\n  workers: {a.workers}\n"
                f"  roots:\n    - path: {tb}\n      age: 1d\n      age_by: am\n")
    os.chmod(cfg, 0o644)
    subprocess.run(["sync"])
    before = context()
    runs = {"tmpreaper": ["tmpreaper", "--mtime", "--runtime=86400", "1d", ta],
            "glexec-sweep": [LAUNCHER, "--config", cfg]}
    order = list(runs) if rnd % 2 else list(runs)[::-1]
    res = {}
    for name in order:
        res[name] = timed(runs[name])
    removed = {"tmpreaper": a.files - count_files(ta), "glexec-sweep": a.files - count_files(tb)}
    for name in order:
        t_, p, cpu = res[name]
        ok = p.returncode == 0 if name == "tmpreaper" else p.returncode in (0, 1)
        print(f"  round {rnd}: {name:12}: {t_:8.2f} s  {a.files / t_:9.0f} files/s  "
              f"cpu {cpu:7.2f} s  removed {removed[name]}  exit {p.returncode}"
              + ("" if ok else "  stderr: " + p.stderr.decode(errors="replace")[-300:]))
    print(f"  round {rnd}: built 2 x {a.files} in {built:.1f} s; ran first: {order[0]}; "
          f"ratio {res['glexec-sweep'][0] / res['tmpreaper'][0]:.2f}x; {before}")
    if not a.keep:
        shutil.rmtree(ta, ignore_errors=True)
        shutil.rmtree(tb, ignore_errors=True)
    return res["tmpreaper"], res["glexec-sweep"], removed


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=1_000_000)
    ap.add_argument("--per-dir", type=int, default=1000)
    ap.add_argument("--uid", type=int, default=52998,
                    help="owner of the files (outside the 47000-47999 test range, whose "
                         "processes the prune tests may kill)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workers", type=int, default=0, help="glexec-sweep workers (0 = its default)")
    ap.add_argument("--keep", action="store_true", help="keep the work dir (debugging)")
    benchsite.add_base_dir(ap)
    a = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench/sweep.py must run as root")
    if not shutil.which("tmpreaper"):
        raise SystemExit("tmpreaper is not installed: apt-get install -y tmpreaper")
    if not 1000 <= a.uid <= 0xFFFFFFFE:
        raise SystemExit("--uid must be a non-system uid")
    if a.repeat < 1 or not 0 <= a.workers <= 64:
        raise SystemExit("--repeat must be >= 1, --workers 0..64")
    work = benchsite.scratch_dir(a, "sweep-bench")
    print(f"{a.files} files, {a.per_dir}/dir, {a.repeat} rounds, workers {a.workers or 'default'}; "
          f"{context()}")
    try:
        tr, ts, cr, cs, same = [], [], [], [], True
        for rnd in range(1, a.repeat + 1):
            for attempt in (1, 2):
                try:
                    r_r, r_s, removed = one_round(work, rnd, a)
                    break
                except BuildFailed as e:
                    print(f"  round {rnd}: {e}" + ("; retrying" if attempt == 1 else ""))
                    for t in (f"{work}/A{rnd}", f"{work}/B{rnd}", f"{work}/state{rnd}"):
                        shutil.rmtree(t, ignore_errors=True)
            else:
                return 1
            tr.append(r_r[0])
            ts.append(r_s[0])
            cr.append(r_r[2])
            cs.append(r_s[2])
            same = same and removed["tmpreaper"] == removed["glexec-sweep"] == a.files
        med = statistics.median
        mr, ms = med(tr), med(ts)
        print(f"tmpreaper   : median {mr:8.2f} s  {a.files / mr:10.0f} files/s  cpu {med(cr):.2f} s")
        print(f"glexec-sweep: median {ms:8.2f} s  {a.files / ms:10.0f} files/s  cpu {med(cs):.2f} s")
        print(f"ratio of the medians sweep/tmpreaper: {ms / mr:.2f}x  (target <= 1.0x); "
              f"median of the round ratios: {med(s_ / r for s_, r in zip(ts, tr)):.2f}x; "
              f"cpu: {med(cs) / med(cr):.2f}x")
        print("removed: both removed all files in every round" if same else
              "removed: MISMATCH (see the rounds): the comparison is void")
        return 0 if same else 1
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
