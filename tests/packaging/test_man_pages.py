"""The man pages (docs/man, roff, the single source): each one formats without a warning,
and every glexec binary and site tool has its page (section 8), glexec.yaml its (5)."""
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGES = sorted((REPO / "docs" / "man").glob("*.[0-9]"))


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_page_formats_without_warnings(page):
    text = page.read_text(encoding="utf-8")
    if text.startswith(".so "):                 # another name of a page (the .pl helpers)
        target = text.split()[1]
        assert text == f".so {target}\n" and (page.parent / target.split("/")[-1]).is_file(), text
        return
    first = text.split("\n", 1)[0]
    pre = ["-t"] if first.startswith("'\\\"") and "t" in first[3:] else []
    p = subprocess.run(["groff", "-ww", "-z", "-man", *pre, str(page)], capture_output=True, text=True)
    assert p.returncode == 0 and p.stderr == "", p.stderr
    p = subprocess.run(["man", "--warnings", "-l", str(page)], capture_output=True, encoding="utf-8",
                       env={"PATH": "/usr/bin:/bin", "MANWIDTH": "80", "LC_ALL": "C.UTF-8"})
    assert p.returncode == 0 and p.stderr == "", p.stderr
    name, section = page.stem, page.suffix[1:]
    assert f".TH {name.upper()} {section} " in text


def test_every_program_has_a_page():
    tools = [p.name for p in (REPO / "tools" / "bin").iterdir() if not p.name.startswith(".")]
    have = {p.name for p in PAGES}
    missing = [t for t in ["glexec", *tools] if f"{t}.8" not in have and f"{t}.1" not in have]
    assert not missing and "glexec.yaml.5" in have, missing
    assert not list((REPO / "docs").glob("*.[0-9].md")), "markdown duplicates of man pages"
