"""The site-wide life of one pool account (issue 13, section 3), on real parts started here.

Two "nodes", wnA and wnB: two separate installations (two ``make install`` prefixes, each
with its own glexec.yaml, state directory and audit file), every command of a node run in
a UTS namespace named after it (the engine's records, its shipped messages and its lease
database node name all say which node).  One PostgreSQL 15 (tests/support/postgres.py, on
127.0.0.1 and a private socket) holds the site's lease database (made at schema 1 and
upgraded by node A's ``glexec-leases db-init``) and the site index; one rsyslog collector
(RELP on 127.0.0.1 -> ompgsql) and one rsyslog sender per node (the shipped configuration,
each with its private socket as the node's ``audit.ship_socket``); all stopped by pid.

1. A pool of ONE account (gxtslpool01).  On wnA, DN A's job 1 runs through the installed
   setuid glexec; then wnA's sender is stopped, job 2 of A runs (its records never reach
   the collector: a shipped gap), the sender starts again and job 3 of A runs.
2. On wnB, DN B is refused (the only account is A's, site-wide: 203 pool_exhausted).
3. From wnB: ``glexec-leases expire`` drains A's lease (used on wnA only).
4. On wnA: ``prune-users`` (no processes), ``glexec-sweep`` (no files),
   ``glexec-leases confirm`` (both posted to the lease database for wnA).
5. From wnB: ``glexec-leases expire`` releases the account (wnA confirmed).
6. On wnB, DN B's job 4 gets the same account.
7. Centrally: ``glexec-backmap --site-db ... --ingest`` (its lease source: the lease
   database of glexec.yaml), then questions whose right answers come from the records and
   the lease database: A on wnA inside jobs 1 and 3, B on wnB inside job 4 (and nobody on
   the other node), "unknown" inside job 2 (the gap), A's lease alone after job 3 ("lease
   only"), nobody between the release and B's lease.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import re
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.support import accounts as acc
from tests.support import install as inst
from tests.support import postgres as pgcluster
from tests.support import rsyslog
from tests.support.pki import TestPKI
from tests.support.skips import strict

ID_MIN, ID_MAX = 47860, 47869          # inside tests/lifecycle's 47800-47899
PILOT, PILOT_ID = "gxtslpilot", 47860
POOLGRP, POOLGRP_GID = "gxtslpool", 47861
POOL_ACCOUNT, POOL_UID = "gxtslpool01", 47862
DN_A = "/DC=test/DC=glexec-py/CN=Site Life User A"
DN_B = "/DC=test/DC=glexec-py/CN=Site Life User B"
SLEEP = "/usr/bin/sleep"
NODE_PATH = "PATH=/usr/sbin:/usr/bin:/sbin:/bin"


def _t(s):
    s = s.rstrip("Z")
    return _dt.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%f" if "." in s else "%Y-%m-%dT%H:%M:%S") \
        .replace(tzinfo=_dt.timezone.utc)


def _us(s):
    """An audit time -> µs since the epoch."""
    d = _t(s) - _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
    return (d.days * 86400 + d.seconds) * 1_000_000 + d.microseconds


def _iso(us):
    from glexec_tools.backmap.plan import format_time
    return format_time(us)


class Node:
    """One node: its installation, its rsyslog sender; commands run in its UTS namespace."""

    def __init__(self, name, prefix, sender, pilot_dir):
        self.name, self.prefix, self.sender, self.pilot_dir = name, Path(prefix), sender, pilot_dir
        self.glexec = inst.glexec_path(prefix)
        self.audit_file = inst.audit_path(prefix)
        self.state_dir = self.prefix / "var" / "lib" / "glexec-py"

    def _ns(self, argv, *, user=None, env=()):
        head = ["unshare", "--uts", "--", "/bin/sh", "-c", 'hostname "$1" && shift && exec "$@"',
                "sh", self.name]
        if user:
            head += ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--"]
        return head + ["env", "-i", NODE_PATH, "LC_ALL=C", *env] + [str(a) for a in argv]

    def records(self):
        if not self.audit_file.is_file():
            return []
        return [json.loads(x) for x in self.audit_file.read_bytes().splitlines()]

    def run_job(self, proxy, seconds=0.3):
        """glexec ``sleep seconds`` as the pilot with ``proxy``: (exit, stderr, new records)."""
        before = len(self.records())
        p = subprocess.run(self._ns([self.glexec, SLEEP, seconds], user=PILOT,
                                    env=[f"GLEXEC_CLIENT_CERT={proxy}"]),
                           capture_output=True, timeout=60, cwd=str(self.pilot_dir))
        return p.returncode, p.stderr, self.records()[before:]

    def tool(self, name, *args):
        p = subprocess.run(self._ns([self.prefix / "sbin" / name, *args]), capture_output=True,
                           text=True, timeout=120, cwd="/")
        p.cmd = f"[{self.name}] {name} {' '.join(map(str, args))}"
        return p


def _show(p):
    return f"{p.cmd}\nexit {p.returncode}\nstdout: {p.stdout[-3000:]}\nstderr: {p.stderr[-2000:]}"


def _remove_accounts():
    acc.kill_uid_processes(range(ID_MIN, ID_MAX + 1))
    for name in (POOL_ACCOUNT, PILOT):
        acc.remove_user(name)
    for name in (POOLGRP, PILOT):
        acc.remove_group(name)


def _node_config(prefix, name, conninfo_file, sender, scratch):
    inst.write_config(prefix, callers={"users": [PILOT], "groups": []},
                      mapping={"lease_store": "postgresql", "max_leases_per_caller": 0},
                      postgresql={"conninfo_file": str(conninfo_file), "node": name,
                                  "timeout_ms": 5000},
                      audit={"ship": True, "ship_socket": sender.socket},
                      target_proxy={"create": False})
    text = inst.config_path(prefix).read_text() + "\n".join([
        "prune:",
        f'  pool_accounts: [".{POOLGRP}"]',
        "  min_age: 0",
        "  term_grace: 1",
        "  time_limit: 20",
        "  lease_fresh: 0",
        "sweep:",
        f"  pool: [{POOL_ACCOUNT}]",
        "  sweep_draining: true",
        "  workers: 1",
        "  roots:",
        f"    - path: {json.dumps(str(scratch))}",
        "      age: 1h",
        "      types: [file, symlink, dir]",
    ]) + "\n"
    inst.write_config_text(prefix, text)


@pytest.fixture(scope="module")
def site(life_lock):
    why = pgcluster.available() or rsyslog.available()
    if why:
        if strict():
            pytest.fail(why)
        pytest.skip(why)
    import sys
    tools = str(inst.REPO_ROOT / "tools")
    if tools not in sys.path:
        sys.path.insert(0, tools)
    from glexec_tools.backmap.site import SiteIndex
    acc.cleanup_leftovers(ID_MIN, ID_MAX)
    run, prefixes, started, pg = None, [], [], None
    try:
        acc.create_group(PILOT, PILOT_ID)
        acc.create_group(POOLGRP, POOLGRP_GID)
        acc.create_user(PILOT, PILOT_ID, PILOT)
        acc.create_user(POOL_ACCOUNT, POOL_UID, POOLGRP)
        run = inst.make_run_dir("sitelife")
        os.chmod(run, 0o755)
        pki_dir = run / "pki"
        pki_dir.mkdir(mode=0o700)
        pki = TestPKI(pki_dir / "ca")
        pilot_dir = run / "pilot"
        pilot_dir.mkdir()
        os.chown(pilot_dir, PILOT_ID, PILOT_ID)
        proxies = {}
        for tag, dn in (("A", DN_A), ("B", DN_B)):
            p = pki.proxy(pki.user(dn), pilot_dir / f"proxy-{tag}.pem")
            os.chown(p, PILOT_ID, PILOT_ID)
            os.chmod(p, 0o600)
            proxies[tag] = p
        scratch = run / "scratch"
        scratch.mkdir()
        os.chmod(scratch, 0o1777)

        pg = pgcluster.start()
        lease_db = pg.conninfo(pg.fresh_db(version=1))      # node A's db-init upgrades it
        site_db = pg.create_db("site")
        SiteIndex(site_db).close()                             # the collector's staging table
        port = pgcluster.free_port()
        base = run / "rsyslog"
        started.append(rsyslog.collector(str(base / "collector"), port, pg.port, "site"))

        nodes = {}
        for name in ("wnA", "wnB"):
            prefix = inst.install_prefix()
            prefixes.append(prefix)
            inst.install_trust_dir(prefix, pki)
            inst.write_gridmap(prefix, [(DN_A, "." + POOLGRP), (DN_B, "." + POOLGRP)])
            cfile = Path(prefix) / "etc" / "glexec-py" / "leases.conninfo"
            fd = os.open(cfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, lease_db.encode() + b"\n")
            os.close(fd)
            sender = rsyslog.sender(str(base / name), name, port)
            started.append(sender)
            _node_config(prefix, name, cfile, sender, scratch)
            nodes[name] = Node(name, prefix, sender, pilot_dir)

        class Site:
            pass
        s = Site()
        s.pg, s.lease_db, s.site_db, s.nodes, s.proxies = pg, lease_db, site_db, nodes, proxies
        s.collector = started[0]
        yield s
    finally:
        try:
            rsyslog.remove(*started)
            if pg is not None:
                pgcluster.remove(pg)
            _remove_accounts()
        finally:
            for prefix in prefixes:
                inst.remove_prefix(prefix)
            if run is not None:
                inst._safe_rmtree(run)


def _listening(path, timeout=30):
    """Wait until a receiver is bound to the datagram socket ``path`` (connect succeeds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            try:
                s.connect(path)
                return True
            except OSError:
                time.sleep(0.05)
    return False


def _wait_staged(conninfo, n, timeout=90):
    deadline = time.monotonic() + timeout
    while _staged(conninfo) < n and time.monotonic() < deadline:
        time.sleep(0.2)
    return _staged(conninfo)


def _staged(conninfo):
    import psycopg2
    with psycopg2.connect(conninfo) as c, c.cursor() as cur:
        cur.execute("SELECT count(*) FROM glexec_audit_inbox")
        return cur.fetchone()[0]


def _lease_times(conninfo):
    """(A's lease history row, B's lease) as µs on the database's clock."""
    import psycopg2
    us = "(extract(epoch FROM {}) * 1000000)::bigint"
    with psycopg2.connect(conninfo) as c, c.cursor() as cur:
        cur.execute(f"SELECT account, convert_from(dn, 'UTF8'), {us.format('since')}, "
                    f"{us.format('ended')}, ended_by, nodes FROM lease_history")
        history = cur.fetchall()
        cur.execute(f"SELECT account, convert_from(dn, 'UTF8'), {us.format('since')} FROM lease")
        current = cur.fetchall()
    return history, current


def test_site_wide_life_of_a_pool_account(site):
    a, b = site.nodes["wnA"], site.nodes["wnB"]

    # ---- 0. node A installs the lease database's current schema and the pool
    p = a.tool("glexec-leases", "db-init", "--json")
    assert p.returncode == 0 and json.loads(p.stdout)["previous"] == 1, _show(p)
    p = a.tool("glexec-leases", "accounts-add", POOLGRP, POOL_ACCOUNT, "--json")
    assert p.returncode == 0 and json.loads(p.stdout)["added"] == 1, _show(p)

    # ---- 1. jobs 1-3 of A on wnA; job 2 while wnA's sender is down
    jobs = {}
    for n in (1, 2, 3):
        if n == 2:
            # everything so far has arrived; then nothing receives wnA's records for a while
            assert _wait_staged(site.site_db, len(a.records())) >= len(a.records()), site.collector.log()
            a.sender.stop()
        rc, err, recs = a.run_job(site.proxies["A"])
        if n == 2:
            rsyslog.start_again(a.sender)
            assert _listening(a.sender.socket), a.sender.log()
        assert rc == 0, (n, err, recs)
        grant = [r for r in recs if r["event"] == "grant"]
        end = [r for r in recs if r["event"] == "end"]
        assert len(grant) == 1 and len(end) == 1, recs
        assert (grant[0]["host"], grant[0]["account"], grant[0]["uid"], grant[0]["dn"]) == \
            ("wnA", POOL_ACCOUNT, POOL_UID, DN_A), grant
        jobs[n] = (_us(grant[0]["time"]), _us(end[0]["time"]))
        time.sleep(0.3)
    lost = 2            # job 2's grant and end never reached the collector

    # ---- 2. B is refused on wnB: the one account is A's, site-wide
    rc, err, recs = b.run_job(site.proxies["B"])
    assert rc == 203 and [r.get("reason") for r in recs] == ["pool_exhausted"], (rc, err, recs)

    # ---- 3. drain from wnB, 4. prune + sweep + confirm on wnA, 5. release from wnB
    expire = ("glexec-leases", "expire", "--older-than", "0", "--grace", "0", "--settle", "0",
              "--yes", "--json")
    p = b.tool(*expire)
    assert p.returncode == 0 and [d["done"] for d in json.loads(p.stdout)["done"]] == ["drained"], _show(p)
    p = b.tool(*expire)                         # wnA has not confirmed: nothing released
    [plan] = json.loads(p.stdout)["plan"]
    assert plan["action"] == "wait" and "wnA" in plan["why"], _show(p)
    time.sleep(0.05)
    p = a.tool("prune-users", "--json")
    assert p.returncode in (0, 1), _show(p)
    prune = json.loads((a.state_dir / "prune" / f"{POOL_ACCOUNT}.json").read_text())
    assert prune["result"] == "no_processes", prune
    p = a.tool("glexec-sweep", "--json")
    assert p.returncode in (0, 1), _show(p)
    sweep = json.loads((a.state_dir / "sweep" / f"{POOL_ACCOUNT}.json").read_text())
    assert sweep["state"] == "no_files", sweep
    p = b.tool("glexec-leases", "confirm", "--json")      # wnB never used it: nothing to post
    assert p.returncode == 0 and not any(c["posted"] for c in json.loads(p.stdout)["confirmations"]), _show(p)
    p = a.tool("glexec-leases", "confirm", "--json")
    assert p.returncode == 0, _show(p)
    posted = sorted((c["node"], c["kind"]) for c in json.loads(p.stdout)["confirmations"] if c["posted"])
    assert posted == [("wnA", "prune"), ("wnA", "sweep")], _show(p)
    p = b.tool(*expire)
    assert p.returncode == 0 and [(d["account"], d["done"]) for d in json.loads(p.stdout)["done"]] == \
        [(POOL_ACCOUNT, "released")], _show(p)
    time.sleep(0.3)

    # ---- 6. job 4: B gets the same account on wnB
    rc, err, recs = b.run_job(site.proxies["B"])
    assert rc == 0, (err, recs)
    [grant] = [r for r in recs if r["event"] == "grant"]
    [end] = [r for r in recs if r["event"] == "end"]
    assert (grant["host"], grant["account"], grant["uid"], grant["dn"]) == ("wnB", POOL_ACCOUNT, POOL_UID, DN_B)
    jobs[4] = (_us(grant["time"]), _us(end["time"]))
    time.sleep(0.2)

    # ---- what the lease database says
    history, current = _lease_times(site.lease_db)
    assert [(h[0], h[1], h[4], sorted(json.loads(h[5]))) for h in history] == \
        [(POOL_ACCOUNT, DN_A, "release", ["wnA"])], history
    [(_acc, dn_b, since_b)] = current
    assert dn_b == DN_B
    since_a, ended_a = history[0][2], history[0][3]
    assert since_a < jobs[1][0] and jobs[3][1] < ended_a < since_b <= jobs[4][0], (history, current, jobs)

    # ---- 7. the collector got every shipped record (every line but job 2's)
    shipped = len(a.records()) + len(b.records()) - lost
    assert _wait_staged(site.site_db, shipped) >= shipped, site.collector.log()
    time.sleep(1)
    p = a.tool("glexec-backmap", "--site-db", site.site_db, "--ingest")
    got = re.search(r"(\d+) received, (\d+) new, (\d+) duplicates, (\d+) refused", p.stdout)
    assert p.returncode == 0 and got, _show(p)
    received, new, duplicates, refused = map(int, got.groups())
    assert (new, refused, received) == (shipped, 0, shipped + duplicates), _show(p)   # at-least-once

    def ask(*args):
        q = subprocess.run([str(a.prefix / "sbin" / "glexec-backmap"), "--site-db", site.site_db,
                            "--json", *map(str, args)], capture_output=True, text=True, timeout=60,
                           cwd="/", env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"})
        assert q.returncode in (0, 1), q
        j = json.loads(q.stdout)
        assert q.returncode == (0 if j["status"] == "known" else 1), q
        return j

    def holders(j, kind=None):
        return sorted((m["host"], m["dn"]) for m in j["matches"] if kind is None or m["kind"] == kind)

    mid = {n: (s + e) // 2 for n, (s, e) in jobs.items()}
    # both holders, both nodes, inside each tenancy (from the records)
    for n, host, dn in ((1, "wnA", DN_A), (3, "wnA", DN_A), (4, "wnB", DN_B)):
        j = ask("--uid", POOL_UID, "--at", _iso(mid[n]))
        assert j["status"] == "known" and holders(j) == [(host, dn)], (n, j)
        assert [m["kind"] for m in j["matches"]] == ["audit"] and not j["why"].startswith("lease only"), j
        other = "wnB" if host == "wnA" else "wnA"
        assert ask("--uid", POOL_UID, "--at", _iso(mid[n]), "--host", other)["status"] == "none", n
        # strictly inside: job 1's end and job 3's grant are the edges of the shipped gap
        j = ask("--account", POOL_ACCOUNT, "--from", _iso(jobs[n][0] + 1), "--to", _iso(jobs[n][1] - 1))
        assert j["status"] == "known" and holders(j, "audit") == [(host, dn)], (n, j)
        assert [(m["start"], m["end"]) for m in j["matches"]] == [(_iso(jobs[n][0]), _iso(jobs[n][1]))], j
    # job 2 never reached the collector: unknown on wnA, although the lease says A
    j = ask("--uid", POOL_UID, "--at", _iso(mid[2]))
    assert j["status"] == "unknown", j
    assert any(f["kind"] == "shipping_gap" and f["host"] == "wnA" for f in j["flags"]), j
    # after job 3, before the release: A's lease alone, said so
    t = (jobs[3][1] + ended_a) // 2
    j = ask("--uid", POOL_UID, "--at", _iso(t))
    assert j["status"] == "known" and j["why"].startswith("lease only"), j
    assert [(m["kind"], m["host"], m["dn"], m["end"]) for m in j["matches"]] == \
        [("lease", "wnA", DN_A, _iso(ended_a))], j
    # between the release and B's lease: nobody, anywhere
    j = ask("--uid", POOL_UID, "--at", _iso((ended_a + since_b) // 2))
    assert j["status"] == "none" and j["matches"] == [], j
    # the account over A's whole tenancy after the gap: A on wnA only
    j = ask("--account", POOL_ACCOUNT, "--from", _iso(jobs[3][0] + 1), "--to", _iso(ended_a))
    assert j["status"] == "known" and holders(j) == [("wnA", DN_A)], j
    # and the reverse look-up: each DN on its node
    for dn, host in ((DN_A, "wnA"), (DN_B, "wnB")):
        j = ask("--dn", dn)
        assert {m["host"] for m in j["matches"]} == {host}, j
