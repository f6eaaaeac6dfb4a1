"""The mutation list against the source (fast; the mutation run itself is `make mutants`,
reached from `make test`): every edit's text is found exactly once, every kill test file
exists, ids are unique."""
from tests.mutants import run


def test_every_edit_matches_the_source_exactly_once():
    assert run.problems(run.load()) == []


def test_a_moved_check_is_reported(tmp_path):
    (tmp_path / "glexec_py").mkdir()
    (tmp_path / "glexec_py" / "x.py").write_text("if a:\n    pass\nif a:\n    pass\n")
    (tmp_path / "t.py").write_text("")
    entries = [dict(id="twice", check="c", edits=[("glexec_py/x.py", "if a:", "if False:")], kill=["t.py"]),
               dict(id="gone", check="c", edits=[("glexec_py/x.py", "if b:", "if False:")], kill=["t.py"]),
               dict(id="nokill", check="c", edits=[("glexec_py/x.py", "pass\nif", "x\nif")], kill=["u.py"])]
    out = run.problems(entries, root=tmp_path)
    assert any("twice" in p and "2 times" in p for p in out)
    assert any("gone" in p and "0 times" in p for p in out)
    assert any("nokill" in p and "not found" in p for p in out)
