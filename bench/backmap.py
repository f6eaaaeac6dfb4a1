"""Benchmark of glexec-backmap: index build and `--uid U --at T` queries over synthetic
audit logs, compared with grep/zgrep over the same logs in the same run.

    /usr/bin/python3 bench/backmap.py [--records 10000000] [--uids 2000] [--files 10]
    /usr/bin/python3 bench/backmap.py --site --records 100000000 --hosts 1000 --queries 200 \
        --cli-queries 50        # site mode: PostgreSQL vs SQLite (bench/backmap_site.py)

Runs as root (the index and the logs must be root-owned).  Records: grant + end pairs
spread over one year, rotated into --files files (active, .1, then .2.gz ...), realistic
record size (~600 bytes).  Prints build time, median query times (in-process API and the
CLI launcher) and the ratio against grep.  Target: <= 20 ms per query.
"""
import argparse
import gzip
import heapq
import os
import random
import shutil
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [REPO, os.path.join(REPO, "tools")]

from bench import benchsite  # noqa: E402

from glexec_tools.backmap.plan import format_time  # noqa: E402
from glexec_tools.backmap.apply import Index  # noqa: E402

YEAR_US = 365 * 86400 * 1_000_000
START_US = 1_764_547_200 * 1_000_000            # 2025-12-01T00:00:00Z
BASE_UID = 47000
_CALLER = ('"caller":{"uid":1001,"gid":1001,"user":"pilot","group":"pilot","pid":%d,'
           '"ppid":%d,"sid":%d,"pgid":%d,"groups":[1001,1002]}')
_GRANT = ('{"time":"%s","event":"grant","host":"wn042.example.org","pid":%d,' + _CALLER +
          ',"log_only":false,"dn":"/DC=org/DC=example/OU=People/CN=User %d","issuer":'
          '"/DC=org/DC=example/CN=Example CA","proxy_fingerprint":"%064x","eec_fingerprint":'
          '"%064x","proxy_kinds":["rfc3820"],"account":"pool%04d","uid":%d,"gid":47000,'
          '"groups":[47000],"command":"/bin/job","resolved":"/usr/bin/job","args":["--run","%d"],'
          '"cwd":"/scratch/pilot/%d","classic":"real_user(pilot),real_group(pilot)->'
          'mapped_user(pool%04d),mapped_group(pool) cwd: \\"/scratch\\" cmd: \\"/bin/job\\""}\n')
_END = ('{"time":"%s","event":"end","host":"wn042.example.org","pid":%d,' + _CALLER +
        ',"log_only":false,"dn":"/DC=org/DC=example/OU=People/CN=User %d","issuer":'
        '"/DC=org/DC=example/CN=Example CA","account":"pool%04d","uid":%d,"gid":47000,'
        '"groups":[47000],"payload_pid":%d,"status":0,"signal":null,"cpu_user":12.5,'
        '"cpu_system":0.75}\n')


def generate(directory, records, uids, files, seed=1):
    """Write the logs; returns the active file's path.  Occupations of one uid never
    overlap (a free uid is chosen for each grant), like a pool with leases."""
    rng = random.Random(seed)
    grants = records // 2
    step = YEAR_US // grants
    free = list(range(uids))
    ends = []                                   # heap of (time, uid, engine pid, dn, payload pid)
    per_file = -(-records // files)
    path = os.path.join(directory, "audit.jsonl")
    written, number, out = 0, files - 1, None
    t = START_US
    pid = 1000

    def emit(line):
        nonlocal written, number, out
        if out is None or written >= per_file * (files - number):
            if out is not None:
                out.close()
                number -= 1
            name = path if number == 0 else f"{path}.{number}" + (".gz" if number >= 2 else "")
            out = gzip.open(name, "wb", compresslevel=1) if number >= 2 else open(name, "wb")
        out.write(line)
        written += 1

    for g in range(grants):
        t += rng.randrange(1, 2 * step)
        while ends and (ends[0][0] <= t or not free):
            e_t, u, e_pid, dn, p_pid = heapq.heappop(ends)
            emit((_END % (format_time(e_t), e_pid, 2000 + u, 1999 + u, 1900, 2000 + u, dn, u,
                          BASE_UID + u, p_pid)).encode())
            free.append(u)
            t = max(t, e_t)
        u = free.pop(rng.randrange(len(free)))
        pid = pid + 1 if pid < 4_000_000 else 1000
        dn = rng.randrange(50_000)
        emit((_GRANT % (format_time(t), pid, 2000 + u, 1999 + u, 1900, 2000 + u, dn, g, g, u,
                        BASE_UID + u, g, g, u)).encode())
        duration = rng.randrange(60, 2 * uids * step // 1)
        heapq.heappush(ends, (t + duration, u, pid, dn, pid + 1))
    while ends:
        e_t, u, e_pid, dn, p_pid = heapq.heappop(ends)
        emit((_END % (format_time(e_t), e_pid, 2000 + u, 1999 + u, 1900, 2000 + u, dn, u,
                      BASE_UID + u, p_pid)).encode())
    out.close()
    for name in os.listdir(directory):
        os.chmod(os.path.join(directory, name), 0o600)
    return path, t


def median_ms(samples):
    return statistics.median(samples) * 1000


def main():
    global BASE_UID
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=10_000_000)
    ap.add_argument("--uids", type=int, default=2000)
    ap.add_argument("--files", type=int, default=10)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--cli-queries", type=int, default=200)
    ap.add_argument("--grep-runs", type=int, default=3)
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    ap.add_argument("--site", action="store_true",
                    help="site mode: the PostgreSQL site index (bench/backmap_site.py)")
    ap.add_argument("--hosts", type=int, default=1000, help="site mode: hosts")
    ap.add_argument("--ingest-records", type=int, default=200_000,
                    help="site mode: shipped records for the ingest rate")
    ap.add_argument("--sqlite-records", type=int, default=None,
                    help="site mode: records in the SQLite comparison (default: --records)")
    ap.add_argument("--first-uid", type=int, default=BASE_UID,
                    help="the synthetic records' uids are FIRST_UID..FIRST_UID+--uids-1 (no accounts needed)")
    benchsite.add_base_dir(ap)
    args = ap.parse_args()
    if args.sqlite_records is None:
        args.sqlite_records = args.records
    if os.geteuid() != 0:
        sys.exit("bench/backmap.py: run as root (root-owned logs and index)")
    BASE_UID = args.first_uid
    directory = benchsite.scratch_dir(args, "bench-backmap")
    try:
        if args.site:
            from bench.backmap_site import run_site
            run_site(args, directory)
        else:
            run(args, directory)
    finally:
        if not args.keep:
            shutil.rmtree(directory)


def run(args, directory):
    t0 = time.perf_counter()
    active, last = generate(directory, args.records, args.uids, args.files)
    gen_s = time.perf_counter() - t0
    size = sum(os.path.getsize(os.path.join(directory, n)) for n in os.listdir(directory))
    print(f"generated {args.records:,} records over {args.uids} uids in {args.files} files "
          f"({size / 1e9:.2f} GB on disk) in {gen_s:.1f} s")

    index_path = os.path.join(directory, "backmap.sqlite")
    t0 = time.perf_counter()
    index = Index(index_path)
    index.refresh([active])
    build_s = time.perf_counter() - t0
    print(f"index built in {build_s:.1f} s ({args.records / build_s:,.0f} records/s, "
          f"{os.path.getsize(index_path) / 1e9:.2f} GB)")
    t0 = time.perf_counter()
    index.refresh([active])
    print(f"incremental refresh with nothing new: {(time.perf_counter() - t0) * 1000:.1f} ms")

    rng = random.Random(7)
    questions = [(BASE_UID + rng.randrange(args.uids), START_US + rng.randrange(last - START_US))
                 for _ in range(args.queries)]
    api, statuses = [], {}
    for uid, t in questions:
        q0 = time.perf_counter()
        answer = index.uid_at(uid, t)
        api.append(time.perf_counter() - q0)
        statuses[answer.status] = statuses.get(answer.status, 0) + 1
    index.close()
    print(f"in-process uid_at: median {median_ms(api):.3f} ms, max {max(api) * 1000:.3f} ms "
          f"over {len(api)} queries; answers {statuses}")

    launcher = os.path.join(REPO, "tools", "bin", "glexec-backmap")
    cli, bare, floor = [], [], []
    for uid, t in questions[:args.cli_queries]:
        cmd = ["/usr/bin/python3.11", "-I", "-S", launcher, "--audit-file", active, "--index",
               index_path, "--uid", str(uid), "--at", format_time(t), "--json"]
        q0 = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, check=False)
        cli.append(time.perf_counter() - q0)
        q0 = time.perf_counter()        # the interpreter alone, interleaved: same load
        subprocess.run(["/usr/bin/python3.11", "-I", "-S", "-c", "pass"], check=False)
        bare.append(time.perf_counter() - q0)
        q0 = time.perf_counter()        # ... plus SQLite's C module: the floor of any query
        subprocess.run(["/usr/bin/python3.11", "-I", "-S", "-c", "import _sqlite3"], check=False)
        floor.append(time.perf_counter() - q0)
    print(f"CLI (new process, incl. refresh check): median {median_ms(cli):.1f} ms over {len(cli)}; "
          f"python3.11 -I -S -c pass in the same rounds: {median_ms(bare):.1f} ms "
          f"(the tool's own share: {median_ms(cli) - median_ms(bare):.1f} ms); the floor, "
          f"interpreter + import _sqlite3: {median_ms(floor):.1f} ms")

    files = sorted(os.path.join(directory, n) for n in os.listdir(directory) if n.startswith("audit.jsonl"))
    greps = []
    for uid, _t in questions[:args.grep_runs]:
        q0 = time.perf_counter()
        subprocess.run(["zgrep", "-h", "-F", f'"uid":{uid},"gid"', *files],
                       stdout=subprocess.DEVNULL, check=False)
        greps.append(time.perf_counter() - q0)
    g = median_ms(greps)
    print(f"zgrep for the same uid over the same logs: median {g:.0f} ms over {len(greps)} runs")
    print(f"ratio grep / in-process: {g / median_ms(api):,.0f}x; grep / CLI: {g / median_ms(cli):,.1f}x")
    print(f"target <= 20 ms per query: in-process {'met' if median_ms(api) <= 20 else 'MISSED'}, "
          f"CLI {'met' if median_ms(cli) <= 20 else 'MISSED'}")


if __name__ == "__main__":
    main()
