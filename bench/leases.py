#!/usr/bin/python3.11
"""New-lease throughput: glexec-py ``GridmapDir.acquire`` vs the real LCMAPS poolaccount
plugin, same run, same pool size, same parallelism (issue 4, item 8).

    sudo /usr/bin/python3.11 bench/leases.py [--pool 10000] [--workers 8] [--requests 2000]
                                             [--lcmaps-mode loop|exec] [--keep]
                                             [--sync grant none]
    sudo /usr/bin/python3.11 bench/leases.py --backend postgresql [--requests 2000] [--workers 4]

``--backend postgresql``: the PostgreSQL lease store against the gridmapdir, in process,
interleaved in one run (a private PostgreSQL 15 with fsync on, tests/support/postgres.py):
grant latency of a new lease and of a reuse, with a connection per call (the engine's
in-process path: every glexec call opens its store) and with a warm connection (a
long-lived engine service); throughput with ``--workers`` processes; and the import cost
of the driver in the engine's isolated interpreter (``python3.11 -I -S -B``): the libpq
cffi module vs psycopg2.

Two identical gridmapdirs of ``--pool`` entries (``--pool-prefix``, default gxtbench: gxtbench00001..)
are made under ``--base-dir`` (default /var/lib/glexec-py-tests)/leases-bench-*; every request is a distinct DN (a new lease).
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
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from bench import benchsite                              # noqa: E402
from glexec_py.core.leases import lease_name            # noqa: E402
from glexec_py.effects.gridmapdir import GridmapDir     # noqa: E402

POOL = b"gxtbench"          # --pool-prefix


def make_pool(d, n):
    os.mkdir(d, 0o755)
    for i in range(1, n + 1):
        os.close(os.open(os.path.join(d, "%s%05d" % (POOL.decode(), i)), os.O_WRONLY | os.O_CREAT, 0o644))


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


# --- the PostgreSQL store against the gridmapdir --------------------------------------------

def _owner(tag, i):
    from glexec_py.core.leases import LeaseOwner
    text = b"/DC=org/DC=bench/CN=%s %d" % (tag, i)
    return text, LeaseOwner(("x509", "CN=%s %d,DC=bench,DC=org" % (tag.decode(), i)), text, True)


def _calls(open_store, warm, idents, reuse):
    """Latencies (s) of one acquire per identity; ``warm``: one store for all calls, else
    opened and closed around each (what an in-process engine call does)."""
    lat, fails = [], 0
    store = open_store() if warm else None
    for text, owner in idents:
        t0 = time.perf_counter()
        try:
            s = store or open_store()
            try:
                _acc, _lease, reused = s.acquire(text, POOL, owner=owner)
                fails += reused != reuse
            finally:
                if store is None:
                    s.close()
        except Exception:           # noqa: BLE001
            fails += 1
        lat.append(time.perf_counter() - t0)
    if store is not None:
        store.close()
    return lat, fails


def _tp_worker(open_store, idents, q):
    lat, fails = _calls(open_store, False, idents, False)
    q.put((lat, fails))


def _throughput(open_store, idents, workers):
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    parts = [idents[w::workers] for w in range(workers)]
    ps = [ctx.Process(target=_tp_worker, args=(open_store, part, q)) for part in parts]
    t0 = time.perf_counter()
    for p in ps:
        p.start()
    res = [q.get() for _ in ps]
    wall = time.perf_counter() - t0
    for p in ps:
        p.join()
    return len(idents) / wall, sum(r[1] for r in res)


def _import_ms(stmt, n=15):
    """ms to run ``stmt`` in a fresh ``python3.11 -I -S -B`` that has already loaded what the
    engine has at its mapping step (cffi backend, json, the engine, core.leases, trust)."""
    code = ("import sys, time; sys.path.insert(0, %r); sys.path.append('/usr/lib/python3/dist-packages');"
            "import _cffi_backend, json, glexec_py.engine, glexec_py.core.leases, glexec_py.effects.trust;"
            "t = time.perf_counter(); %s; print((time.perf_counter() - t) * 1e3)" % (REPO, stmt))
    xs = []
    for _ in range(n):
        out = subprocess.run(["/usr/bin/python3.11", "-I", "-S", "-B", "-c", code],
                             capture_output=True, text=True)
        if out.returncode != 0:
            return None
        xs.append(float(out.stdout))
    xs.sort()
    return xs[0], statistics.median(xs), xs[-1]


def _fmt(lat):
    lat = sorted(lat)
    return (f"median {statistics.median(lat) * 1e3:6.2f} ms  p95 {lat[int(0.95 * len(lat))] * 1e3:6.2f} ms")


def bench_backends(a):
    from glexec_py.effects.pgleases import PgLeaseStore
    from tests.support.postgres import Cluster
    cluster = Cluster(fsync=True)
    d = benchsite.scratch_dir(a, "leases-bench")
    try:
        conninfo = cluster.conninfo(cluster.fresh_db())
        n = a.requests
        with PgLeaseStore(conninfo, node="bench") as s:
            s.add_accounts(POOL.decode(), ["%s%05d" % (POOL.decode(), i) for i in range(1, 12 * n + 1)])
        gmd = os.path.join(d, "gmd")
        make_pool(gmd, 12 * n)
        stores = {"postgresql": lambda: PgLeaseStore(conninfo, node="bench"),
                  "gridmapdir": lambda: GridmapDir(gmd, sync="none")}
        if os.path.exists("/usr/sbin/pgbouncer"):
            pooled = cluster.start_pgbouncer()(conninfo.rsplit("dbname=", 1)[1])
            stores = {"postgresql": stores["postgresql"],
                      "pg+bouncer": lambda: PgLeaseStore(pooled, node="bench"),
                      "gridmapdir": stores["gridmapdir"]}
        print(f"in-process grants, {n} identities per row, pool {12 * n}, PostgreSQL 15 fsync=on, "
              f"unix socket; pg+bouncer: through a local PgBouncer (transaction pooling, warm "
              f"server connections); gridmapdir sync=none (the engine's default)")
        for warm in (False, True):
            for kind in ("new", "reuse"):
                for name, open_store in stores.items():
                    if warm and name == "pg+bouncer":
                        continue                 # a warm connection needs no pooler
                    tag = b"%s-%s-%d" % (name.encode(), b"w" if warm else b"c", 0)
                    idents = [_owner(tag, i) for i in range(n)]
                    if kind == "reuse":
                        _calls(open_store, True, idents, False)
                    lat, fails = _calls(open_store, warm, idents, kind == "reuse")
                    print(f"{name:<10} {kind:<5} {'warm connection' if warm else 'open per call':<16} "
                          f"{_fmt(lat)}  failures {fails}")

        for name, open_store in stores.items():
            tp, fails = _throughput(open_store, [_owner(b"tp-" + name.encode(), i) for i in range(n)],
                                    a.workers)
            print(f"{name:<10} new leases, {a.workers} processes, open per call: {tp:8.1f}/s  failures {fails}")
        # as installed: byte code compiled ahead (make install runs compileall)
        subprocess.run(["/usr/bin/python3.11", "-m", "compileall", "-q", os.path.join(REPO, "glexec_py")],
                       check=False)
        for what, stmt in (("libpq via cffi (glexec_py._native_pq)", "import glexec_py._native_pq"),
                           ("the PostgreSQL store (+ pgclient, _native_pq)",
                            "import glexec_py.effects.pgleases, glexec_py._native_pq"),
                           ("the gridmapdir store", "import glexec_py.effects.gridmapdir"),
                           ("psycopg2", "import psycopg2")):
            got = _import_ms(stmt)
            print(f"import {what:<40} " + ("not installed" if got is None else
                                          "min %.1f  median %.1f  max %.1f ms" % got))
    finally:
        cluster.destroy()
        shutil.rmtree(d, ignore_errors=True)


def main():
    global POOL
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backend", choices=("gridmapdir", "postgresql"), default="gridmapdir",
                    help="gridmapdir: glexec-py vs LCMAPS; postgresql: the PostgreSQL store vs "
                         "the gridmapdir (in process)")
    ap.add_argument("--pool", type=int, default=10000)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--requests", type=int, default=2000, help="total new leases per side")
    ap.add_argument("--lcmaps-mode", choices=("loop", "exec"), default="loop")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--sync", nargs="+", choices=("grant", "none"), default=["grant", "none"],
                    help="glexec-py metadata durability modes to run (GridmapDir sync=)")
    benchsite.add_base_dir(ap)
    benchsite.add_pool_prefix(ap, POOL.decode())
    a = ap.parse_args()
    POOL = a.pool_prefix.encode()
    if os.geteuid() != 0:
        sys.exit("bench/leases.py: run as root (root-owned gridmapdir)")
    if a.backend == "postgresql":
        return bench_backends(a)
    m = a.requests // a.workers
    d = benchsite.scratch_dir(a, "leases-bench")
    try:
        gx, lc = os.path.join(d, "gmd-glexec"), os.path.join(d, "gmd-lcmaps")
        make_pool(lc, a.pool)
        harness = os.path.join(d, "harness")
        subprocess.run(["gcc", "-O2", "-o", harness,
                        os.path.join(REPO, "tests/leases/lcmaps_harness.c"), "-llcmaps"],
                       check=True)
        with open(os.path.join(d, "grid-mapfile"), "w") as f:
            f.write('"*" .%s\n' % POOL.decode())
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
