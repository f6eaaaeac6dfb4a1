"""A gLExec glexec.conf installed where glexec.yaml belongs: the real setuid glexec refuses
with 202 and one line that names the file for what it is and the tool that converts it
(not a bare YAML syntax error); the payload never runs."""
from pathlib import Path

import pytest

from tests.privileged.test_e2e_refuse import canary
from tests.support import install as inst

SITES = Path(__file__).resolve().parent.parent / "importer" / "sites"


@pytest.mark.parametrize("site", ["osg", "emi", "multi"])
def test_glexec_conf_as_config_names_the_importer(gx, site):
    argv, m = canary(gx)
    text = (SITES / site / "glexec.conf").read_text().replace("@ROOT@", "/nonexistent")
    cfg = inst.write_config_text(gx.prefix, text)
    header = next(n for n, line in enumerate(text.splitlines(), 1) if line.strip() == "[glexec]")
    r = gx.run(argv)
    gx.assert_refused(r, 202, "config")
    assert r.stderr == (f"glexec: {cfg}:{header}: this is a gLExec INI file (glexec.conf); "
                        "convert it with glexec-import\n").encode(), r
    assert not m.exists()
