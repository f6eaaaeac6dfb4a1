"""glexec.yaml's optional 'backmap:' section (glexec_tools.backmap.plan.parse_section)."""
import pytest

from glexec_py.errors import ConfigError
from glexec_tools.backmap import plan
from glexec_tools.common.section import present
from tests.support.glexec_yaml import with_section


def parse(body, **main):
    return plan.parse_section(with_section("backmap", body, **main), "glexec.yaml")


def test_defaults_from_the_engine_sections():
    for body in (None, ""):
        c = parse(body, state_dir="/st/", audit_file="/log/a.jsonl", gridmapdir="/gmd")
        assert (c.audit_files, c.index, c.gridmapdir) == (("/log/a.jsonl",),
                                                           "/st/backmap.sqlite", "/gmd")


def test_values():
    c = parse("index: /srv/bm.sqlite\naudit_files: [/srv/wn1.jsonl, /srv/wn2.jsonl]\n")
    assert c.index == "/srv/bm.sqlite" and c.audit_files == ("/srv/wn1.jsonl", "/srv/wn2.jsonl")


@pytest.mark.parametrize("body,what", [
    ("index: relative.sqlite\n", "'backmap.index' must be an absolute path"),
    ("audit_files: []\n", "non-empty list"),
    ("audit_files: [x]\n", "'backmap.audit_files' must be an absolute path"),
    ("audit_file: /x\n", "'audit.file'"),
    ("indexes: /x\n", "unknown key 'indexes' in 'backmap'"),
    ("index: /a\nindex: /b\n", "duplicate key 'index'"),
])
def test_refused_with_the_line(body, what):
    with pytest.raises(ConfigError) as e:
        parse(body)
    assert what in e.value.message and e.value.line >= 11


def test_present_finds_only_top_level_keys():
    text = with_section("backmap", "index: /x\n").encode()
    assert present(text, "backmap") and present(b"backmap:\n", "backmap")
    assert not present(with_section("prune", "min_age: 1\n").encode(), "backmap")
    assert not present(b"prune:\n  backmap_x: 1\n", "backmap")
