#!/usr/bin/python3.11
"""New-lease throughput: glexec-py ``GridmapDir.acquire`` vs the real LCMAPS poolaccount
plugin, same run, same pool size, same parallelism (issue 4, item 8).

    sudo /usr/bin/python3.11 bench/leases.py [--pool 10000] [--workers 8] [--requests 2000]
                                             [--lcmaps-mode loop|exec] [--keep]
                                             [--sync grant none]

Two identical gridmapdirs of ``--pool`` entries (gxtbench00001..) are made under
/var/lib/glexec-py-tests/leases-bench-*; every request is a distinct DN (a new lease).
glexec-py: ``--workers`` forked processes, each calling ``acquire`` in a loop (fcntl lock).
LCMAPS: ``--workers`` harness processes (tests/leases/lcmaps_harness.c); ``loop`` = one
process per worker doing lcmaps init+run+term per request (what one gLExec call costs,
minus exec), ``exec`` = fork+exec of the harness per request.
The pool entries have no passwd accounts (10,000 of them cannot be created in the test
uid range), so the plugin reports FAIL *after* it made the lease (it calls getpwnam after
link): a request counts as granted when its lease exists afterwards with link count 2, as a
spurious failure when it does not (LCMAPS backed off after losing a race).
"""
import argparse
import multiprocessing as mp
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from glexec_py.core.leases import lease_name            # noqa: E402
from glexec_py.effects.gridmapdir import GridmapDir     # noqa: E402

BASE = "/var/lib/glexec-py-tests"
POOL = b"gxtbench"


def make_pool(d, n):
    os.mkdir(d, 0o755)
    for i in range(1, n + 1):
        os.close(os.open(os.path.join(d, "gxtbench%05d" % i), os.O_WRONLY | os.O_CREAT, 0o644))


def dns(tag, w, m):
    return [b"/C=NL/O=Example Grid/OU=Bench/CN=%s worker %d request %d" % (tag, w, i)
            for i in range(m)]


def _gx_worker(gmd, w, m, q, sync="grant", tag=b"gx"):
    g = GridmapDir(gmd, sync=sync)
    lat, fails = [], []
    for dn in dns(tag, w, m):
        t0 = time.perf_counter()
        try:
            g.acquire(dn, POOL)
        except Exception as e:      # noqa: BLE001
            fails.append(repr(e))
        lat.append(time.perf_counter() - t0)
    q.put((lat, fails))


def run_glexec(gmd, workers, m, sync="grant", tag=b"gx"):
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    ps = [ctx.Process(target=_gx_worker, args=(gmd, w, m, q, sync, tag))
          for w in range(workers)]
    t0 = time.perf_counter()
    for p in ps:
        p.start()
    res = [q.get() for _ in ps]
    wall = time.perf_counter() - t0
    for p in ps:
        p.join()
    lat = [x for r in res for x in r[0]]
    fails = [x for r in res for x in r[1]]
    return wall, lat, fails


def run_lcmaps(harness, env, gmd, workers, m, mode):
    t0 = time.perf_counter()
    lat = []
    if mode == "loop":
        ps = []
        for w in range(workers):
            data = b"".join(b"0\t" + dn + b"\n" for dn in dns(b"lc", w, m))
            p = subprocess.Popen([harness, "stdin"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
            ps.append((p, data))
        outs = [p.communicate(data)[0] for p, data in ps]
        wall = time.perf_counter() - t0
        for out in outs:
            for line in out.decode("latin-1").splitlines():
                us = [f for f in line.split() if f.startswith("us=")]
                if us:
                    lat.append(int(us[0][3:]) / 1e6)
    else:
        def one(w):
            for dn in dns(b"lc", w, m):
                s = time.perf_counter()
                subprocess.run([harness, "fqan", dn], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
                lat.append(time.perf_counter() - s)
        import threading
        ts = [threading.Thread(target=one, args=(w,)) for w in range(workers)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        wall = time.perf_counter() - t0
    granted = spurious = 0
    for w in range(workers):
        for dn in dns(b"lc", w, m):
            try:
                st = os.lstat(os.path.join(gmd, os.fsdecode(lease_name(dn))))
                granted += st.st_nlink == 2
            except FileNotFoundError:
                spurious += 1
    return wall, lat, granted, spurious


def max_nlink(gmd):
    return max(os.lstat(os.path.join(gmd, n)).st_nlink for n in os.listdir(gmd)
               if not n.startswith("."))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pool", type=int, default=10000)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--requests", type=int, default=2000, help="total new leases per side")
    ap.add_argument("--lcmaps-mode", choices=("loop", "exec"), default="loop")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--sync", nargs="+", choices=("grant", "none"), default=["grant", "none"],
                    help="glexec-py metadata durability modes to run (GridmapDir sync=)")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/leases.py: run as root (root-owned gridmapdir)")
    m = a.requests // a.workers
    os.makedirs(BASE, 0o755, exist_ok=True)
    d = tempfile.mkdtemp(prefix="leases-bench-", dir=BASE)
    os.chmod(d, 0o755)
    try:
        gx, lc = os.path.join(d, "gmd-glexec"), os.path.join(d, "gmd-lcmaps")
        make_pool(lc, a.pool)
        harness = os.path.join(d, "harness")
        subprocess.run(["gcc", "-O2", "-o", harness,
                        os.path.join(REPO, "tests/leases/lcmaps_harness.c"), "-llcmaps"],
                       check=True)
        with open(os.path.join(d, "grid-mapfile"), "w") as f:
            f.write('"*" .gxtbench\n')
        with open(os.path.join(d, "lcmaps.db"), "w") as f:
            f.write(f'path = /usr/lib/lcmaps\npoolaccount = "lcmaps_poolaccount.mod '
                    f'-gridmapfile {d}/grid-mapfile -gridmapdir {lc}"\n'
                    'good = "lcmaps_dummy_good.mod"\nstandard:\npoolaccount -> good\n')
        env = {"PATH": "/usr/bin:/bin", "LCMAPS_DIR": d, "LCMAPS_DB_FILE": "lcmaps.db",
               "LCMAPS_DEBUG_LEVEL": "0", "LCMAPS_LOG_FILE": os.path.join(d, "lcmaps.log")}

        print(f"pool {a.pool} entries, {a.workers} workers, {m * a.workers} new leases each side")
        n = m * a.workers
        results = []
        # glexec-py in both metadata-durability modes, LCMAPS in between (same run)
        for sync in a.sync:
            gxs = gx + "-" + sync
            make_pool(gxs, a.pool)
            gw, glat, gfails = run_glexec(gxs, a.workers, m, sync, b"gx" + sync.encode())
            results.append((sync, gxs, gw, glat, gfails))
            if len(results) == 1:
                lw, llat, lgranted, lspur = run_lcmaps(harness, env, lc, a.workers, m,
                                                       a.lcmaps_mode)
        ltp = lgranted / lw
        for sync, gxs, gw, glat, gfails in results:
            gtp = (n - len(gfails)) / gw
            with GridmapDir(gxs) as g:
                fs = g.fsck([POOL])
            print(f"glexec-py : sync={sync:5s} wall {gw:7.2f}s  throughput {gtp:8.1f}/s  median "
                  f"{statistics.median(glat)*1e3:7.2f} ms  p95 "
                  f"{sorted(glat)[int(0.95*len(glat))]*1e3:7.2f} ms  failures {len(gfails)}  "
                  f"max nlink {max_nlink(gxs)}  fsck findings {len(fs)}  "
                  f"ratio {gtp / ltp:.1f}x")
            if gfails:
                print("  failures:", gfails[:3])
        print(f"LCMAPS    : wall {lw:7.2f}s  throughput {ltp:8.1f}/s  median {statistics.median(llat)*1e3:7.2f} ms"
              f"  p95 {sorted(llat)[int(0.95*len(llat))]*1e3:7.2f} ms  spurious failures {lspur}"
              f"  ({a.lcmaps_mode} mode)  max nlink {max_nlink(lc)}")
    finally:
        if a.keep:
            print("kept", d)
        else:
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
