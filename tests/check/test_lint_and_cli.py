"""glexec-check lint findings and exit codes, and the CLI's one-line errors."""
import json
import os
import subprocess
from pathlib import Path

from glexec_tools.check import cli

REPO = Path(__file__).resolve().parents[2]
TOOL = str(REPO / "tools" / "bin" / "glexec-check")


def lint(root, capsys, *extra):
    code = cli.main(["--json", "--config", str(root / "glexec.yaml"), "--passwd", str(root / "passwd"),
                     "--group", str(root / "group"), *extra])
    doc = json.loads(capsys.readouterr().out)
    assert doc["exit"] == code
    return code, [(f["severity"], f["where"].replace(str(root), "$SITE"), f["what"]) for f in doc["findings"]]


def _ca(root):
    (root / "ca" / "0123abcd.0").write_text("not parsed by lint\n")


def test_clean_site_exits_0(make_site, capsys):
    root = make_site()
    _ca(root)
    code, found = lint(root, capsys)
    assert [f for f in found if f[0] != "info"] == []
    assert code == 0


def test_findings_name_file_and_line(make_site, capsys):
    root = make_site({"gridmapfile": '"/DC=org/CN=A" alice\r\n"/DC=org/CN=B" nobody\n"/DC=org/CN=C" lowuid\n'
                                     '"/DC=org/CN=D" .nopool\n"/DC=org/CN=E" .\n',
                      "ban_files": {"dn": '"/DC=org/CN=X\n'}})
    _ca(root)
    code, found = lint(root, capsys)
    assert code == 2
    gm = "$SITE/grid-mapfile"
    assert ("error", f"{gm}:1", "mapping ends in a carriage return (CRLF file): it never maps") in found
    assert ("error", f"{gm}:2", "account nobody does not exist") in found
    assert any(f[:2] == ("error", f"{gm}:3") and "uid outside the allowed range" in f[2] for f in found)
    assert ("error", f"{gm}:4", "pool nopool has no entries in the gridmapdir") in found
    assert ("warning", f"{gm}:5", "bare '.' is no pool: the line is skipped") in found
    assert any(f[0] == "error" and f[1] == "$SITE/ban-dn" and "denies EVERYONE" in f[2] for f in found)


def test_pool_entry_below_min_uid_and_missing_ca(make_site, capsys):
    root = make_site({"gridmapfile": '"/DC=org/*" .lowp\n', "pools": {"lowp": 1}})
    code, found = lint(root, capsys)
    assert code == 2
    assert any(f[1] == "$SITE/gridmapdir/lowp001" and "uid outside" in f[2] for f in found)
    assert any(f[1] == "$SITE/ca" and "no CA certificates" in f[2] for f in found)


def test_untrusted_config_and_warnings_only(make_site, capsys):
    root = make_site({"gridmapfile": '"/DC=org/CN=A"\n'})
    _ca(root)
    code, found = lint(root, capsys)
    assert code == 1 and ("warning", "$SITE/grid-mapfile:1", "line has a subject but no mapping") in found
    os.chmod(root / "glexec.yaml", 0o666)
    code, found = lint(root, capsys)
    assert code == 2 and any(f[1] == "$SITE/glexec.yaml" and "writable by group or others" in f[2] for f in found)


def test_config_syntax_error_is_a_finding_with_its_line(make_site, capsys):
    root = make_site()
    (root / "glexec.yaml").write_text((root / "glexec.yaml").read_text().replace('"callers"', '"callerz"'))
    code, found = lint(root, capsys)
    assert code == 2 and len(found) == 1 and found[0][1].startswith("$SITE/glexec.yaml:")


def run_tool(*args):
    return subprocess.run([TOOL, *args],
                          capture_output=True, text=True, timeout=60)


def test_errors_are_one_line_never_a_traceback(tmp_path):
    cases = [["--bogus"], ["explain"], ["explain", "--dn", "/CN=x", "--proxy", "p"],
             ["explain", "--config", "/nonexistent", "--dn", "/CN=x"],
             ["--config", str(tmp_path), "--passwd", "/nonexistent", "--group", "/nonexistent"],
             ["explain", "--config", "/nonexistent", "--dn", "CN=not slash"],
             ["--passwd", "/etc/passwd"], ["explain", "--fqan", "/x", "--proxy", "/p"]]
    for argv in cases:
        r = run_tool(*argv)
        assert r.returncode == 2, (argv, r)
        assert r.stderr.count("\n") == 1 and r.stderr.startswith("glexec-check: "), (argv, r.stderr)
        assert "Traceback" not in r.stderr


def test_explain_text_output_says_nothing_was_done(make_site):
    root = make_site()
    r = run_tool("explain", "--config", str(root / "glexec.yaml"), "--passwd", str(root / "passwd"),
                 "--group", str(root / "group"), "--dn", "/DC=org/DC=example/CN=Bob")
    assert r.returncode == 0, r
    assert "would lease: gxp001" in r.stdout and "WOULD GRANT: gxp001" in r.stdout
    assert r.stdout.rstrip().endswith("(nothing was leased, audited or run)")


def test_gridmapdir_inconsistencies_are_fsck_findings(make_site, capsys):
    root = make_site({"gridmapfile": '"/DC=org/*" .gxp\n', "pools": {"gxp": 2}})
    _ca(root)
    (root / "gridmapdir" / "%2fdc%3dorg%2fcn%3dhalf").touch()           # a solitary lease
    os.link(root / "gridmapdir" / "gxp001", root / "gridmapdir" / "%2fdc%3dorg%2fcn%3da")
    os.link(root / "gridmapdir" / "gxp001", root / "gridmapdir" / "%2fdc%3dorg%2fcn%3db")   # double
    code, found = lint(root, capsys)
    kinds = {f[2].split(":")[0] for f in found if f[1].startswith("$SITE/gridmapdir:")}
    assert {"solitary_lease", "pool_entry_overlinked"} <= kinds, found
    assert code == 2
