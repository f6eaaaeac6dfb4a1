"""glexec-import's command line: exit codes (0 clean, 1 warnings or not translated, 2 usage
or unreadable input), one-line errors, atomic --output that never overwrites without
--force, --json, --dry-run, and lcmaps.db/lcas.db found through glexec.conf."""
import json
import os
import subprocess
from pathlib import Path

import pytest

from glexec_tools.importer.cli import main
from tests.importer import sites as S

LAUNCHER = Path(__file__).resolve().parents[2] / "tools" / "bin" / "glexec-import"


@pytest.fixture
def site(tmp_path):
    def make(name):
        root = tmp_path / name
        root.mkdir()
        for fname, text in S.concrete(name, root).items():
            (root / fname).write_text(text)
        return root
    return make


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_translates_with_lcmaps_db_from_glexec_conf(site, capsys, tmp_path):
    root = site("emi")
    out_file = tmp_path / "glexec.yaml"
    code, out, err = run(capsys, "--glexec-conf", str(root / "glexec.conf"), "--output", str(out_file))
    assert code == 1                              # EMI has announced differences
    text = out_file.read_text()
    assert f'"{root}/etc/ban_users.db"' in text    # lcas.db found via lcas_db_file
    assert 'order: ["voms_pool", "voms_local", "local", "pool"]' in text
    assert oct(out_file.stat().st_mode & 0o777) == "0o644"
    assert "translated with warnings" in out and err == ""
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".glexec.yaml")]


def test_refuses_to_overwrite_without_force(site, capsys, tmp_path):
    root = site("osg")
    out_file = tmp_path / "glexec.yaml"
    out_file.write_text("keep me\n")
    code, out, err = run(capsys, "--glexec-conf", str(root / "glexec.conf"), "--output", str(out_file))
    assert code == 2 and err == f"glexec-import: {out_file} exists; use --force to replace it\n"
    assert out_file.read_text() == "keep me\n"
    code, _, _ = run(capsys, "--glexec-conf", str(root / "glexec.conf"), "--output", str(out_file), "--force")
    assert code == 1 and out_file.read_text().startswith("# glexec.yaml written by glexec-import")


def test_dry_run_writes_nothing_and_prints_the_yaml(site, capsys, tmp_path):
    root = site("multi")
    out_file = tmp_path / "glexec.yaml"
    code, out, err = run(capsys, "--glexec-conf", str(root / "glexec.conf"), "--output", str(out_file),
                         "--dry-run")
    assert code == 1 and not out_file.exists()
    assert "state_dir:" in out and "glexec.conf:12: epilogue:" in out


def test_not_translated_writes_nothing_exit_1(site, capsys, tmp_path):
    root = site("refused")
    out_file = tmp_path / "glexec.yaml"
    code, out, err = run(capsys, "--glexec-conf", str(root / "glexec.conf"), "--lcmaps-db",
                         str(root / "lcmaps.db"), "--lcas-db", str(root / "lcas.db"), "--output", str(out_file))
    assert code == 1 and not out_file.exists()
    assert err == "glexec-import: not translated: 3 errors (see the report)\n"
    assert f"{root}/lcas.db:1: lcas_userallow.mod: [refused]" in out


def test_json_report(site, capsys):
    root = site("osg")
    code, out, err = run(capsys, "--glexec-conf", str(root / "glexec.conf"), "--json")
    doc = json.loads(out)
    assert code == doc["exit"] == 1 and doc["translated"] and doc["errors"] == 0
    assert doc["yaml"].startswith("# glexec.yaml")
    f = next(x for x in doc["findings"] if x["item"] == "preserve_env_variables")
    assert (f["file"], f["line"], f["status"]) == (f"{root}/glexec.conf", 11, "translated")
    assert doc["policies"]["glexec"][-1].endswith("['local']")


def test_clean_translation_exits_0(tmp_path, capsys):
    (tmp_path / "g").write_text("x y\n")
    conf = tmp_path / "glexec.conf"
    conf.write_text(f"[glexec]\nlinger = yes\nuse_lcas = no\nlcmaps_get_account_policy = p\n"
                    f"lcmaps_db_file = {tmp_path}/lcmaps.db\n")
    (tmp_path / "lcmaps.db").write_text(
        f'v = "lcmaps_verify_proxy.mod -certdir {tmp_path}"\n'
        f'l = "lcmaps_localaccount.mod -gridmapfile {tmp_path}/g"\np:\nv -> l\n')
    code, out, err = run(capsys, "--glexec-conf", str(conf), "--json")
    assert json.loads(out)["warnings"] == 0 and code == 0


@pytest.mark.parametrize("argv,msg", [
    (["--glexec-conf", "/proc/self/no-such-dir/glexec.conf"],
     "glexec-import: cannot read the glexec.conf /proc/self/no-such-dir/glexec.conf: "
     "No such file or directory\n"),
    (["--bogus"], "glexec-import: unrecognized arguments: --bogus (see --help)\n"),
    (["--force"], "glexec-import: --force needs --output\n"),
    (["--state-dir", "rel"], "glexec-import: --state-dir must be an absolute path\n"),
])
def test_usage_errors_are_one_line_exit_2(capsys, argv, msg):
    code, out, err = run(capsys, *argv)
    assert (code, out, err) == (2, "", msg)


def test_unreadable_lcmaps_db_exit_2(tmp_path, capsys):
    conf = tmp_path / "glexec.conf"
    conf.write_text(f"[glexec]\nlcmaps_db_file = {tmp_path}/missing.db\n")
    code, out, err = run(capsys, "--glexec-conf", str(conf))
    assert code == 2 and err.count("\n") == 1 and "missing.db" in err


def test_binary_input_exit_2(tmp_path, capsys):
    conf = tmp_path / "glexec.conf"
    conf.write_bytes(b"[glexec]\x00\n")
    code, out, err = run(capsys, "--glexec-conf", str(conf), "--lcmaps-db", str(conf))
    assert code == 2 and "not a text file" in err


def test_launcher_runs_the_tool(site):
    root = site("osg")
    p = subprocess.run([str(LAUNCHER), "--glexec-conf", str(root / "glexec.conf"), "--json"],
                       capture_output=True, timeout=60)
    assert p.returncode == 1, p.stderr
    assert json.loads(p.stdout)["translated"] is True
    p = subprocess.run([str(LAUNCHER), "--lcmaps-db"], capture_output=True, timeout=60)
    assert p.returncode == 2 and p.stderr.count(b"\n") == 1 and b"Traceback" not in p.stderr
