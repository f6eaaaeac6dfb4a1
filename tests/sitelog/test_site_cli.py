"""glexec-backmap's site options: the 'backmap:' section's site/answer_from, --site,
--site-db, --ingest, and one-line errors."""
import json
import os
import subprocess

import pytest

from glexec_py.errors import ConfigError
from glexec_tools.backmap import plan
from tests.sitelog.shipping import S, T0, format_time, record, ship_all, stage
from tests.support import postgres as pgcluster
from tests.support.glexec_yaml import with_section

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAUNCHER = os.path.join(REPO, "tools", "bin", "glexec-backmap")


def run(*args):
    return subprocess.run(["/usr/bin/python3.11", "-I", "-S", LAUNCHER, *args],
                          capture_output=True, timeout=60, cwd="/")


def test_section_site_keys():
    c = plan.parse_section(with_section("backmap", "site: host=db dbname=site\nanswer_from: site\n"), "g.yaml")
    assert (c.site, c.answer_from) == ("host=db dbname=site", "site")
    c = plan.parse_section(with_section("backmap", ""), "g.yaml")
    assert (c.site, c.answer_from) == ("", "local")


@pytest.mark.parametrize("body,what", [
    ("answer_from: site\n", "'backmap.answer_from: site' needs 'backmap.site'"),
    ("site: x\nanswer_from: central\n", "'backmap.answer_from' must be local or site"),
    ("site: [a]\n", "'backmap.site' must be a libpq connection string"),
])
def test_section_site_errors(body, what):
    with pytest.raises(ConfigError) as e:
        plan.parse_section(with_section("backmap", body), "g.yaml")
    assert what in str(e.value.message) and "g.yaml:" in str(e.value.message)


def _config(private_dir, body):
    path = os.path.join(private_dir, "glexec.yaml")
    with open(path, "w") as f:
        f.write(with_section("backmap", body, state_dir=private_dir,
                             audit_file=os.path.join(private_dir, "audit.jsonl")))
    os.chmod(path, 0o644)
    return path


def test_one_line_errors(private_dir):
    conf = _config(private_dir, "")
    for args, what in (
            (["--config", conf, "--site", "--uid", "1", "--at", "now"], b"no site index configured"),
            (["--config", conf, "--ingest"], b"no site index configured"),
            (["--audit-file", "/x", "--index", os.path.join(private_dir, "i"), "--ingest"],
             b"--ingest feeds the site index"),
            (["--site-db", f"host=127.0.0.1 port={pgcluster.free_port()} dbname=x user=postgres",
              "--uid", "1", "--at", "now"], b"cannot reach the site index")):
        r = run(*args)
        assert r.returncode == 2 and r.stdout == b"", r
        assert r.stderr.count(b"\n") == 1 and what in r.stderr, r


def test_answer_from_site_by_configuration(private_dir, site_db):
    lines = ship_all(os.path.join(private_dir, "wnA.jsonl"), "wnA",
                     [record("grant", T0, host="wnA"), record("end", T0 + 10 * S, host="wnA")])
    from glexec_tools.backmap.site import SiteIndex
    idx = SiteIndex(site_db)
    stage(idx.conn, lines + lines[:1])
    idx.close()
    r = run("--site-db", site_db, "--ingest")
    assert r.returncode == 0 and r.stdout == b"ingested: 3 received, 2 new, 1 duplicates, 0 refused\n", r
    conf = _config(private_dir, f"site: {site_db}\nanswer_from: site\n")
    r = run("--config", conf, "--uid", "47011", "--at", format_time(T0 + 5 * S), "--json")
    assert r.returncode == 0, r
    d = json.loads(r.stdout)
    assert d["status"] == "known" and d["matches"][0]["host"] == "wnA"
    assert d["matches"][0]["records"][0]["file"] == "site:wnA"
    r = run("--config", conf, "--uid", "47011", "--at", format_time(T0 + 5 * S))
    assert r.returncode == 0 and r.stdout.startswith(b"KNOWN: 1 occupation(s) recorded\n"), r
