"""The site mode of bench/backmap.py at a small scale (the 10^8-record run is in the README):
the same code path, with its answers checked against the generated occupations."""
import os
import sys
import types

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "bench"))

import backmap_site  # noqa: E402


def test_site_bench_small(private_dir, pg):          # pg: PostgreSQL must be able to run
    args = types.SimpleNamespace(records=40_000, hosts=10, ingest_records=2_000, queries=30,
                                 cli_queries=5, sqlite_records=40_000)
    lines = []
    r = backmap_site.run_site(args, private_dir, report=lines.append)
    assert r["ingest_stats"] == {"received": 2_200, "stored": 2_000, "duplicates": 200, "rejected": 0}
    assert r["occupations"] == 20_000 and r["sqlite_occupations"] == 20_000
    assert r["pg_right"] == 30 and r["pg_cli_right"] == 5 and r["sqlite_right"] == 5
    assert all(r[k] > 0 for k in ("ingest_rate", "pg_api_ms", "pg_cli_ms", "sqlite_cli_ms"))
    assert len(lines) == 7


def test_generated_occupations_of_one_account_never_overlap():
    records, hosts = 1_000_000, 10
    n, _step, _length = backmap_site.layout(records, hosts)
    spans = {}
    for i in range(n):
        h, uid, _dn, start, end = backmap_site.occupation(i, records, hosts)
        spans.setdefault(uid, []).append((start, end))
    for s in spans.values():
        s.sort()
        assert all(a[1] < b[0] for a, b in zip(s, s[1:]))
