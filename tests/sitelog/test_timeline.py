"""glexec-backmap --timeline: a self-contained SVG, checked by parsing it."""
import os
import subprocess
import xml.etree.ElementTree as ET

from tests.backmap.backmap_helpers import S, T0, record, write, format_time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAUNCHER = os.path.join(REPO, "tools", "bin", "glexec-backmap")
SVG = "{http://www.w3.org/2000/svg}"
EVIL = "/CN=Eve <script>alert(1)</script> & \x1b[31m"


def run(*args):
    return subprocess.run(["/usr/bin/python3.11", "-I", "-S", LAUNCHER, *args],
                          capture_output=True, timeout=60, cwd="/")


def _logs(private_dir):
    audit = os.path.join(private_dir, "audit.jsonl")
    write(audit, [record("grant", T0, pid=1, dn="/CN=Alice"),
                  record("end", T0 + 100 * S, pid=1, dn="/CN=Alice"),
                  record("grant", T0 + 200 * S, pid=2, dn=EVIL),
                  record("end", T0 + 300 * S, pid=2, dn=EVIL),
                  record("grant", T0 + 400 * S, pid=3, dn="/CN=Alice"),     # end not recorded
                  record("refuse", T0 + 600 * S)])
    return ["--audit-file", audit, "--index", os.path.join(private_dir, "i.sqlite")]


def _occupations(svg_bytes):
    root = ET.fromstring(svg_bytes)                  # well-formed XML, or this raises
    assert root.tag == SVG + "svg"
    assert not list(root.iter(SVG + "script"))
    for el in root.iter():
        for attr in ("href", "{http://www.w3.org/1999/xlink}href"):
            assert not el.get(attr, "url(#").split("url(#")[0], "no external assets"
    return root, [r.attrib for r in root.iter(SVG + "rect") if r.get("class") == "occupation"]


def test_account_timeline_names_every_holder_and_interval(private_dir):
    out = os.path.join(private_dir, "t.svg")
    r = run(*_logs(private_dir), "--account", "pool47011", "--from", format_time(T0 - 50 * S),
            "--to", format_time(T0 + 500 * S), "--timeline", out)
    assert r.returncode == 1, r.stderr                # the open grant: unknown at the end
    with open(out, "rb") as f:
        root, occ = _occupations(f.read())
    got = sorted((o["data-dn"], o["data-start"], o["data-end"], o["data-certain"]) for o in occ)
    evil_shown = "/CN=Eve <script>alert(1)</script> & \\x1b[31m"    # as cli.escape shows it
    assert got == sorted([
        ("/CN=Alice", format_time(T0), format_time(T0 + 100 * S), "true"),
        (evil_shown, format_time(T0 + 200 * S), format_time(T0 + 300 * S), "true"),
        ("/CN=Alice", format_time(T0 + 400 * S), "unknown", "false")])
    holders = {t.text for t in root.iter(SVG + "text") if t.get("class") == "holder"}
    assert holders == {"/CN=Alice", evil_shown}
    assert not list(root.iter(SVG + "script")) and b"\x1b" not in open(out, "rb").read()
    # bars are placed in time order on one row
    xs = [float(o["x"]) for o in sorted(occ, key=lambda o: o["data-start"])]
    assert xs == sorted(xs) and len({o["y"] for o in occ}) == 1


def test_dn_timeline_to_stdout(private_dir):
    r = run(*_logs(private_dir), "--dn", "/CN=Alice", "--timeline", "-")
    assert r.returncode == 0, r.stderr
    _root, occ = _occupations(r.stdout)
    assert [o["data-start"] for o in sorted(occ, key=lambda o: o["data-start"])] == [
        format_time(T0), format_time(T0 + 400 * S)]
    assert {o["data-dn"] for o in occ} == {"/CN=Alice"}


def test_timeline_refuses_to_overwrite(private_dir):
    out = os.path.join(private_dir, "t.svg")
    open(out, "w").close()
    r = run(*_logs(private_dir), "--dn", "/CN=Alice", "--timeline", out)
    assert r.returncode == 2 and r.stderr.count(b"\n") == 1 and os.path.getsize(out) == 0
