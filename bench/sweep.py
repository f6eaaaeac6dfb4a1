#!/usr/bin/python3.11
"""Bench: glexec-sweep against tmpreaper on identical trees, in the same run.

    sudo /usr/bin/python3.11 bench/sweep.py [--files 1000000] [--per-dir 1000] [--uid 47598]

Builds two identical trees under /var/lib/glexec-py-tests/sweep-bench-<random>/ (root 0755):
``files`` regular files of ``uid`` (a pool uid; no passwd entry needed) in directories of
``per-dir`` files each, the directories owned by that uid; every file has atime and mtime
set to 2020-01-01 (ctime cannot be set: it is "now").  Then, timed end to end as separate
processes:

* tmpreaper (Debian package): ``tmpreaper --mtime --runtime=86400 1d A``  (remove files whose
  atime and mtime are both older than a day);
* glexec-sweep (``tools/bin/glexec-sweep``): config with the same root, ``age: 1d``,
  ``age_by: am``, pool = the uid; removals as the owning account (fsuid switch per
  directory), re-lstat before every unlink.

Both leave the (young) directories in place.  Prints times, files/s and the ratio
sweep/tmpreaper (target <= 1.0).  The trees are removed afterwards.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCHER = os.path.join(REPO, "tools", "bin", "glexec-sweep")
BASE = "/var/lib/glexec-py-tests"
OLD = 1577836800


def build(root, files, per_dir, uid):
    """Runs as: root; the files are created by a child that has fsuid/fsgid = uid (so no
    chown is needed), timestamps set with futimens."""
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
            for d in range(ndirs):
                dfd = os.open(f"{root}/d{d:05d}", os.O_RDONLY | os.O_DIRECTORY)
                for i in range(min(per_dir, files - n)):
                    fd = os.open(f"f{i:05d}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=dfd)
                    os.utime(fd, (OLD, OLD))
                    os.close(fd)
                n += min(per_dir, files - n)
                os.close(dfd)
            os._exit(0)
        except BaseException as e:
            sys.stderr.write(f"build failed: {e}\n")
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    if status:
        raise SystemExit("tree build failed")


def count_files(root):
    return sum(len(files) for _, _, files in os.walk(root))


def timed(argv):
    t = time.perf_counter()
    p = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - t, p


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=1_000_000)
    ap.add_argument("--per-dir", type=int, default=1000)
    ap.add_argument("--uid", type=int, default=47598)
    ap.add_argument("--keep", action="store_true", help="keep the work dir (debugging)")
    a = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench/sweep.py must run as root")
    if not shutil.which("tmpreaper"):
        raise SystemExit("tmpreaper is not installed: apt-get install -y tmpreaper")
    if not 1000 <= a.uid <= 0xFFFFFFFE:
        raise SystemExit("--uid must be a non-system uid")
    os.makedirs(BASE, mode=0o755, exist_ok=True)
    work = tempfile.mkdtemp(prefix="sweep-bench-", dir=BASE)
    os.chmod(work, 0o755)
    try:
        ta, tb = f"{work}/A", f"{work}/B"
        t = time.perf_counter()
        build(ta, a.files, a.per_dir, a.uid)
        build(tb, a.files, a.per_dir, a.uid)
        print(f"built 2 x {a.files} files ({a.per_dir}/dir) in {time.perf_counter() - t:.1f} s")
        os.mkdir(f"{work}/state", 0o700)
        cfg = f"{work}/sweep.yaml"
        with open(cfg, "w") as f:
            f.write(f"state_dir: {work}/state\npool: [{a.uid}]\nmax_runtime: 86400\n"
                    f"max_removals: {a.files * 2 + 10}\nsysv_ipc: false\n"
                    f"roots:\n  - path: {tb}\n    age: 1d\n    age_by: am\n")
        os.chmod(cfg, 0o644)
        subprocess.run(["sync"])
        t_reaper, p1 = timed(["tmpreaper", "--mtime", "--runtime=86400", "1d", ta])
        t_sweep, p2 = timed([LAUNCHER, "--config", cfg])
        left_a, left_b = count_files(ta), count_files(tb)
        print(f"tmpreaper   : {t_reaper:8.2f} s  {a.files / t_reaper:10.0f} files/s  "
              f"exit {p1.returncode}  files left {left_a}")
        print(f"glexec-sweep: {t_sweep:8.2f} s  {a.files / t_sweep:10.0f} files/s  "
              f"exit {p2.returncode}  files left {left_b}")
        if p1.returncode or p2.returncode not in (0, 1):
            print(p1.stderr.decode()[-500:], p2.stderr.decode()[-500:])
        print(f"ratio sweep/tmpreaper: {t_sweep / t_reaper:.2f}x  (target <= 1.0x)")
        return 0 if left_a == left_b == 0 else 1
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
