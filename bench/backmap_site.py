"""Site mode of bench/backmap.py: the PostgreSQL site index at scale, compared in the same
run with the per-node SQLite index holding the same occupations.

    /usr/bin/python3 bench/backmap.py --site [--records 100000000] [--hosts 1000]
                                      [--ingest-records 200000] [--sqlite-records N]

Runs as root.  Starts a private PostgreSQL 15 (tests/support/postgres.py: 127.0.0.1, a
throw-away directory, stopped by pid at the end; fsync off: the data is thrown away).

* Ingest rate: ``--ingest-records`` shipped messages (grant + end pairs of chained records
  across the hosts, as ``auditlog.ship_message`` makes them) are COPYed into the staging
  table and ``SiteIndex.ingest`` (verify, de-duplicate, rebuild each host) is timed.
* Scale: ``--records`` audit records (one occupation = a grant and an end record, so
  records / 2 occupations) across ``--hosts`` hosts are generated server-side with
  ``generate_series`` straight into the tables the queries read (occupations, identities,
  hosts), then indexed.  The raw shipped lines of those records are not generated: no
  query reads them (they are the ingest's store, measured above).
* Point queries ``--uid U --at T`` from a fresh process (the installed-style launcher,
  ``--site-db``, with its ingest of an empty staging table, as an admin runs it) and
  in-process; target <= 50 ms from a fresh process.
* The same occupations in the per-node SQLite index (``apply.Index`` tables, generated
  with a recursive CTE), queried the same way, up to ``--sqlite-records`` records.

Every generated occupation is a function of its number (``occupation(i)``), so the small
version in tests/sitelog/test_bench_site.py checks the answers, not only the timing.
"""
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [REPO, os.path.join(REPO, "tools")]

from glexec_tools.backmap.plan import format_time  # noqa: E402

START_US = 1_764_547_200 * 1_000_000            # 2025-12-01T00:00:00Z
YEAR_US = 365 * 86400 * 1_000_000
BASE_UID = 100000
POOL = 20_000                                   # site-wide pool accounts
DNS = 50_000
LAUNCHER = os.path.join(REPO, "tools", "bin", "glexec-backmap")


def layout(records, hosts):
    """(occupations, µs between two grants, occupation length µs).  The site-wide pool of
    the issue's deployment (one lease authority, shared accounts): occupation i holds
    account i mod POOL on host 7919 i mod hosts; each lasts half a round of the pool, so
    one account's occupations never overlap anywhere and a point question has one holder
    (per-node pools would make every uid busy on every host at once: then an answer names
    hundreds of holders and measures rendering, not the index)."""
    n = max(records // 2, 1)
    step = max(YEAR_US // n, 1)
    return n, step, step * min(POOL, n) // 2


def occupation(i, records, hosts):
    """Occupation number ``i`` (0-based): (host number, uid, dn number, start, end)."""
    _n, step, length = layout(records, hosts)
    start = START_US + i * step
    return i * 7919 % hosts, BASE_UID + i % POOL, i * 31 % DNS, start, start + length


_SELECT = """
    SELECT i + 1, 'audit', i * 7919 % {hosts} + 1, {base} + i % {pool},
           {account}, i * 31 % {dns} + 1, 1,
           2000, 1999, 1900, 2000, 100000 + i % 3000000, {start} + i * {step},
           {start} + i * {step} + {length}, NULL, {start} + i * {step},
           {start} + i * {step} + {length}, 100001 + i % 3000000, 0, '',
           (i * 7919 % {hosts} + 1) || ',' || (2 * i + 1) || ',' || (2 * i + 1) || ';' ||
           (i * 7919 % {hosts} + 1) || ',' || (2 * i + 2) || ',' || (2 * i + 2)"""


def _select(records, hosts, blob):
    """The SELECT list of occupation i; ``blob``: the database's text -> bytes form."""
    n, step, length = layout(records, hosts)
    account = blob.format(f"'pool' || (i % {POOL})")
    return _SELECT.format(hosts=hosts, base=BASE_UID, pool=POOL, dns=DNS, start=START_US,
                          step=step, length=length, account=account), n, START_US + n * step + length


def generate_pg(cur, records, hosts):
    select, n, last = _select(records, hosts, "convert_to({}, 'UTF8')")
    cur.execute("INSERT INTO hosts(id, name) SELECT h + 1, convert_to('wn' || lpad(h::text, 4, '0') "
                "|| '.example.org', 'UTF8') FROM generate_series(0, %s) h", (hosts - 1,))
    cur.execute("INSERT INTO identities(id, dn, issuer, fqans) SELECT d + 1, convert_to("
                "'/DC=org/DC=example/OU=People/CN=User ' || d, 'UTF8'), convert_to("
                "'/DC=org/DC=example/CN=Example CA', 'UTF8'), '' FROM generate_series(0, %s) d",
                (DNS - 1,))
    cur.execute("INSERT INTO callers(id, uid, gid, \"user\", grp, groups) VALUES "
                "(1, 1001, 1001, 'pilot', 'pilot', '1001')")
    cur.execute("INSERT INTO occupations(id, kind, host_id, uid, account, identity_id, caller_id, "
                "caller_pid, caller_ppid, caller_sid, caller_pgid, engine_pid, start, \"end\", cut, "
                "lo, hi, payload_pid, status, notes, evidence)" + select
                + f" FROM generate_series(0::bigint, {n - 1}) i")
    cur.execute("SELECT setval(pg_get_serial_sequence('occupations', 'id'), %s)", (n,))
    cur.execute("SELECT setval(pg_get_serial_sequence('hosts', 'id'), %s)", (hosts,))
    cur.execute("SELECT setval(pg_get_serial_sequence('identities', 'id'), %s)", (DNS,))
    cur.execute("INSERT INTO site_meta VALUES ('first_time', %s), ('last_time', %s)",
                (START_US, last))
    return n


def generate_sqlite(path, records, hosts):
    """The same occupations in a per-node SQLite index file (``apply.Index`` tables)."""
    from glexec_tools.backmap.apply import Index
    index = Index(path)
    db = index.db
    db.execute("BEGIN")
    for h in range(hosts):
        db.execute("INSERT INTO hosts(id, name) VALUES (?, ?)", (h + 1, f"wn{h:04d}.example.org".encode()))
    db.executemany("INSERT INTO identities(id, dn, issuer, fqans) VALUES (?, ?, ?, ?)",
                   ((d + 1, f"/DC=org/DC=example/OU=People/CN=User {d}".encode(),
                     b"/DC=org/DC=example/CN=Example CA", b"") for d in range(DNS)))
    db.execute("INSERT INTO callers VALUES (1, 1001, 1001, ?, ?, '1001')", (b"pilot", b"pilot"))
    select, n, last = _select(records, hosts, "CAST({} AS BLOB)")
    db.execute(f"WITH RECURSIVE g(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM g WHERE i < {n - 1}) "
               "INSERT INTO occupations" + select + " FROM g")
    db.execute("INSERT OR REPLACE INTO meta VALUES ('first_time', ?), ('last_time', ?), ('schema', ?)",
               (START_US, last, "3"))
    db.execute("COMMIT")
    from glexec_tools.backmap.apply import _INDEXES
    db.executescript(_INDEXES)
    index.close()
    return n


def shipped_messages(records, hosts):
    """``records`` chained audit records (grant/end pairs) of ``hosts`` hosts in their
    shipped form: the lines the audit sink would write (its own chaining, ``_chained``),
    without a file and an fsync per record (tests/sitelog ships through the real sink)."""
    import _sha256
    from glexec_py.core.audit import encode
    from glexec_py.effects import auditlog
    out = []
    per_host = max(records // 2 // hosts, 1)
    for h in range(hosts):
        host = f"wn{h:04d}.example.org"
        prev, chain = b"", None
        for k in range(2 * per_host):
            t = START_US + (k // 2) * 120_000_000 + (k % 2) * 60_000_000
            rec = {"time": format_time(t), "event": ("grant", "end")[k % 2], "host": host,
                   "boot_id": "b", "pid": 1000 + k // 2,
                   "caller": {"uid": 1001, "gid": 1001, "user": "pilot", "group": "pilot",
                              "pid": 50, "ppid": 49, "sid": 40, "pgid": 50, "groups": [1001]},
                   "log_only": False, "dn": f"/CN=User {k // 2 % 97}", "issuer": "/CN=CA",
                   "account": f"pool{k // 2 % 50}", "uid": BASE_UID + k // 2 % 50, "gid": 47000,
                   "groups": [47000]}
            line = auditlog._chained(encode(rec), k + 1, prev)
            chain = chain or _sha256.sha256(line).hexdigest()
            prev = _sha256.sha256(line[:-1]).hexdigest().encode()
            out.append(auditlog.ship_message(line, chain, host, "b"))
    return out


def median_ms(samples):
    return statistics.median(samples) * 1000


def _copy_inbox(conn, messages):
    import io
    buf = io.StringIO()
    for m in messages:
        text = m.decode("ascii").replace("\\", "\\\\")
        buf.write(f"127.0.0.1\t\t {text}\n")
    buf.seek(0)
    with conn.cursor() as cur:
        cur.copy_expert("COPY glexec_audit_inbox(fromhost, hostname, msg) FROM STDIN "
                        "(FORMAT text, NULL '')", buf)
    conn.commit()


def run_site(args, directory, report=print):
    """The whole site bench; returns a dict of the numbers (the test checks them)."""
    from tests.support import postgres as pgcluster
    from glexec_tools.backmap.site import SiteIndex, INDEXES
    result = {}
    # its own directory: postgres must reach it (the bench directory is private to root)
    server = pgcluster.start(base=tempfile.mkdtemp(prefix="bench-pg-", dir=os.path.dirname(directory)))
    try:
        # -- ingest rate, through the real path ------------------------------------------
        conninfo = server.create_db("ingest")
        t0 = time.perf_counter()
        messages = shipped_messages(args.ingest_records, min(args.hosts, 100))
        report(f"ingest: {len(messages):,} shipped records made in "
               f"{time.perf_counter() - t0:.1f} s")
        idx = SiteIndex(conninfo)
        _copy_inbox(idx.conn, messages + messages[: len(messages) // 10])   # 10% repeats
        t0 = time.perf_counter()
        stats = idx.ingest()
        ingest_s = time.perf_counter() - t0
        result["ingest_rate"] = stats["received"] / ingest_s
        result["ingest_stats"] = stats
        report(f"ingest: {stats['received']:,} staged rows ({stats['duplicates']:,} repeats) "
               f"ingested in {ingest_s:.1f} s = {result['ingest_rate']:,.0f} records/s")
        idx.close()

        # -- scale: generated server-side ------------------------------------------------
        conninfo = server.create_db("site")
        idx = SiteIndex(conninfo, create=False)
        idx.create_schema(indexes=False)
        cur = idx.conn.cursor()
        t0 = time.perf_counter()
        n = generate_pg(cur, args.records, args.hosts)
        idx.conn.commit()
        gen_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        cur.execute(INDEXES)
        cur.execute("ANALYZE")
        idx.conn.commit()
        idx.db.begin()                            # the query side's snapshot: after the load
        index_s = time.perf_counter() - t0
        cur.execute("SELECT pg_database_size(current_database())")
        size = cur.fetchone()[0]
        result.update(occupations=n, pg_generate_s=gen_s, pg_index_s=index_s, pg_bytes=size)
        report(f"site index: {2 * n:,} records ({n:,} occupations) across {args.hosts} hosts "
               f"generated in {gen_s:.0f} s, indexed in {index_s:.0f} s, {size / 1e9:.1f} GB")
        rng = random.Random(7)
        questions = []
        for _ in range(args.queries):
            i = rng.randrange(n)
            h, uid, dn, start, end = occupation(i, args.records, args.hosts)
            questions.append((uid, start + (end - start) // 2, h, dn))
        api, right = [], 0
        for uid, t, h, dn in questions:
            q0 = time.perf_counter()
            answer = idx.uid_at(uid, t)
            api.append(time.perf_counter() - q0)
            right += any(m.host == f"wn{h:04d}.example.org" and m.identity.dn.endswith(f"User {dn}")
                         for m in answer.matches) and answer.status == "known"
        idx.close()
        result.update(pg_api_ms=median_ms(api), pg_right=right, queries=len(questions))
        report(f"site index in-process uid_at: median {median_ms(api):.2f} ms, max "
               f"{max(api) * 1000:.1f} ms; {right}/{len(questions)} answers name the generated holder")
        cli, bare, right = [], [], 0
        for uid, t, _h, dn in questions[:args.cli_queries]:
            q0 = time.perf_counter()
            r = subprocess.run(["/usr/bin/python3.11", "-I", "-S", LAUNCHER, "--site-db", conninfo,
                                "--uid", str(uid), "--at", format_time(t), "--json"],
                               capture_output=True)
            cli.append(time.perf_counter() - q0)
            if r.returncode not in (0, 1):
                raise RuntimeError(r.stderr.decode(errors="replace"))
            right += f'CN=User {dn}"'.encode() in r.stdout and r.returncode == 0
            q0 = time.perf_counter()        # the interpreter alone, interleaved: same load
            subprocess.run(["/usr/bin/python3.11", "-I", "-S", "-c", "pass"], check=False)
            bare.append(time.perf_counter() - q0)
        result.update(pg_cli_ms=median_ms(cli), pg_cli_right=right, bare_ms=median_ms(bare))
        report(f"site index, fresh process (glexec-backmap --site-db ... --uid --at, with its "
               f"ingest check): median {median_ms(cli):.1f} ms, max {max(cli) * 1000:.1f} ms over "
               f"{len(cli)}, {right}/{len(cli)} name the generated holder; python3.11 -I -S -c pass "
               f"in the same rounds: {median_ms(bare):.1f} ms; target <= 50 ms "
               f"{'met' if median_ms(cli) <= 50 else 'MISSED'}")
    finally:
        pgcluster.remove(server)

    # -- the per-node SQLite index with the same occupations -----------------------------
    records = min(args.records, args.sqlite_records)
    if records < 2:
        return result
    path = os.path.join(directory, "backmap.sqlite")
    t0 = time.perf_counter()
    n = generate_sqlite(path, records, args.hosts)
    result.update(sqlite_occupations=n, sqlite_build_s=time.perf_counter() - t0,
                  sqlite_bytes=os.path.getsize(path))
    report(f"SQLite index: {2 * n:,} records generated and indexed in "
           f"{result['sqlite_build_s']:.0f} s, {os.path.getsize(path) / 1e9:.1f} GB")
    rng = random.Random(7)
    cli, right = [], 0
    for _ in range(args.cli_queries):
        h, uid, dn, start, end = occupation(rng.randrange(n), records, args.hosts)
        t = start + (end - start) // 2
        q0 = time.perf_counter()
        r = subprocess.run(["/usr/bin/python3.11", "-I", "-S", LAUNCHER, "--audit-file",
                            os.path.join(directory, "none.jsonl"), "--index", path, "--no-refresh",
                            "--uid", str(uid), "--at", format_time(t), "--json"],
                           capture_output=True)
        cli.append(time.perf_counter() - q0)
        right += f'CN=User {dn}"'.encode() in r.stdout and r.returncode == 0
    result.update(sqlite_cli_ms=median_ms(cli), sqlite_right=right)
    report(f"SQLite index, fresh process (--no-refresh): median {median_ms(cli):.1f} ms over "
           f"{len(cli)}; {right}/{len(cli)} answers name the generated holder")
    return result
