"""End-to-end, site-wide: the installed setuid glexec on two "nodes" -- UTS namespaces
with their own host names, each node with its own audit file and its own rsyslog sender
(the shipped configuration) -- ships its records through a real RELP collector into the
site index on a real PostgreSQL; the installed glexec-backmap --site answers who held the
account on which node, and draws it."""
import json
import os
import shutil
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET

import pytest

from tests.privileged.conftest import USER1_DN, USER2_DN
from tests.support import postgres as pgcluster, rsyslog
from tests.support.skips import strict

BASE = "/var/lib/glexec-py-tests"


@pytest.fixture(scope="module")
def site(session_lock):
    """(PostgreSQL, its site database's conninfo, the collector, a sender factory)."""
    why = pgcluster.available() or rsyslog.available()
    if why:
        if strict():
            pytest.fail(why)
        pytest.skip(why)
    import sys
    tools = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "tools")
    if tools not in sys.path:
        sys.path.insert(0, tools)
    from glexec_tools.backmap.site import SiteIndex
    pg = pgcluster.start()
    base = tempfile.mkdtemp(prefix="gxt-site-")
    started = []
    try:
        conninfo = pg.create_db("site")
        SiteIndex(conninfo).close()
        port = pgcluster.free_port()
        started.append(rsyslog.collector(os.path.join(base, "collector"), port, pg.port, "site"))

        def sender(host):
            s = rsyslog.sender(os.path.join(base, host), host, port)
            started.append(s)
            return s
        yield pg, conninfo, sender
    finally:
        rsyslog.remove(*started)
        pgcluster.remove(pg)
        shutil.rmtree(base, ignore_errors=True)


def _node_dir(name):
    os.makedirs(BASE, mode=0o755, exist_ok=True)
    d = tempfile.mkdtemp(prefix=f"site-{name}-", dir=BASE)
    os.chmod(d, 0o700)
    return d


def run_on_node(gx, host, proxy):
    """glexec /usr/bin/id as gxtpilot inside a new UTS namespace named ``host``."""
    script = ('hostname "$1" && shift && exec setpriv --reuid=gxtpilot --regid=gxtpilot '
              '--init-groups -- env -i PATH=/usr/bin:/bin GLEXEC_CLIENT_CERT="$1" "$2" /usr/bin/id -un')
    return subprocess.run(["unshare", "--uts", "--", "/bin/sh", "-c", script, "sh", host,
                           str(proxy), gx.glexec], capture_output=True, timeout=60,
                          cwd=str(gx.box))


@pytest.fixture
def nodes():
    made = {}
    yield made
    for d in made.values():
        shutil.rmtree(d, ignore_errors=True)


def test_two_nodes_one_account_answered_from_the_site_index(gx, site, prefix, nodes):
    pg, conninfo, sender = site
    for host, dn, proxy in (("wnA", USER1_DN, "user1"), ("wnB", USER2_DN, "user2")):
        d = _node_dir(host)
        nodes[host] = d
        snd = sender(host)
        gx.gridmap([(dn, "gxttarget1")])              # both nodes map to the same account
        gx.config(audit={"file": os.path.join(d, "audit.jsonl"), "ship": True,
                         "ship_socket": snd.socket})
        r = run_on_node(gx, host, gx.proxy(proxy))
        assert r.returncode == 0 and r.stdout == b"gxttarget1\n", r
        time.sleep(1.1)                               # distinct times on the two nodes
    records = {h: [json.loads(x) for x in open(os.path.join(d, "audit.jsonl"), "rb")]
               for h, d in nodes.items()}
    assert {h: [r["host"] for r in recs] for h, recs in records.items()} == {
        "wnA": ["wnA"] * len(records["wnA"]), "wnB": ["wnB"] * len(records["wnB"])}
    import psycopg2
    deadline, want = time.monotonic() + 60, sum(map(len, records.values()))
    while time.monotonic() < deadline:
        with psycopg2.connect(conninfo) as c, c.cursor() as cur:
            cur.execute("SELECT count(*) FROM glexec_audit_inbox")
            if cur.fetchone()[0] >= want:
                break
        time.sleep(0.2)
    grants = {h: next(r for r in recs if r["event"] == "grant") for h, recs in records.items()}
    t_from = min(g["time"] for g in grants.values())
    t_to = max(r["time"] for recs in records.values() for r in recs)
    tool = str(prefix / "sbin" / "glexec-backmap")
    r = subprocess.run([tool, "--site-db", conninfo, "--account", "gxttarget1", "--from", t_from,
                        "--to", t_to, "--json"], capture_output=True, timeout=60)
    assert r.returncode == 0, r
    answer = json.loads(r.stdout)
    assert answer["status"] == "known"
    got = sorted((m["host"], m["dn"], m["start"], m["end_known"]) for m in answer["matches"])
    assert got == [("wnA", USER1_DN, grants["wnA"]["time"], True),
                   ("wnB", USER2_DN, grants["wnB"]["time"], True)]
    # each node's instant: only that node's holder
    for host, dn in (("wnA", USER1_DN), ("wnB", USER2_DN)):
        r = subprocess.run([tool, "--site-db", conninfo, "--uid", "47011", "--at",
                            grants[host]["time"], "--json"], capture_output=True, timeout=60)
        assert r.returncode == 0, r
        assert [(m["host"], m["dn"]) for m in json.loads(r.stdout)["matches"]] == [(host, dn)]
    # and drawn
    r = subprocess.run([tool, "--site-db", conninfo, "--account", "gxttarget1", "--from", t_from,
                        "--to", t_to, "--timeline", "-"], capture_output=True, timeout=60)
    assert r.returncode == 0, r
    svg = ET.fromstring(r.stdout)
    bars = sorted((b.get("data-host"), b.get("data-dn")) for b in svg.iter("{http://www.w3.org/2000/svg}rect")
                  if b.get("class") == "occupation")
    assert bars == [("wnA", USER1_DN), ("wnB", USER2_DN)]
