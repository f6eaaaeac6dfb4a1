"""The config loader names a gLExec glexec.conf for what it is (core.config.parse_config):
one ConfigError (202) 'this is a gLExec INI file (glexec.conf); convert it with
glexec-import' at the [glexec] header's line, instead of a bare YAML error -- and only then:
other broken YAML keeps its own message."""
import pytest

from glexec_py.core.config import glexec_ini_line, parse_config
from glexec_py.errors import ConfigError
from tests.importer import sites as S

MSG = "this is a gLExec INI file (glexec.conf); convert it with glexec-import"


@pytest.mark.parametrize("site", S.SITES)
def test_every_site_glexec_conf_is_named(site):
    text = S.concrete(site, "/srv/x")["glexec.conf"]
    with pytest.raises(ConfigError) as e:
        parse_config(text, "/etc/glexec-py/glexec.yaml")
    header = next(n for n, line in enumerate(text.split("\n"), 1) if line.strip() == "[glexec]")
    assert (e.value.line, e.value.what) == (header, MSG)
    assert str(e.value) == f"/etc/glexec-py/glexec.yaml:{header}: {MSG}"
    assert e.value.exit_code == 202


@pytest.mark.parametrize("text,line", [
    ("[glexec]\n", 1),
    ("# gLExec\n\n[ glexec ]\nlinger=yes\n", 3),
    ("[glexec]\r\nlinger = yes\r\n", 1),
    (b"[glexec]\nuser_white_list = a,b\n", 1),
    ("[glexec]\nlinger = yes\n[other]\nx.y = 1\n", 1),
])
def test_ini_shapes(text, line):
    assert glexec_ini_line(text) == line


@pytest.mark.parametrize("text", [
    "callers: [\n", "[glexec\nlinger = yes\n", "[other]\nlinger = yes\n", "linger = yes\n[glexec]\n",
    "[glexec]\nnot a key line\n", "- [glexec]\n", "[glexec]\nlinger: true\n",
])
def test_other_broken_files_keep_their_own_error(text):
    assert glexec_ini_line(text) == 0
    with pytest.raises(ConfigError) as e:
        parse_config(text, "f.yaml")
    assert "gLExec INI" not in e.value.what
