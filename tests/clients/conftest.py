"""The gLExec-era client helpers (packaging/sbin) run from the source tree: a copy with the
install-time placeholders filled in as `make install` does (LIBDIR = this checkout)."""
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


@pytest.fixture(scope="session")
def helpers(tmp_path_factory):
    d = tmp_path_factory.mktemp("sbin")
    for name in ("mkgltempdir", "glexec_wrapenv.pl", "glexec_unwrapenv.pl"):
        text = (REPO / "packaging" / "sbin" / name).read_text()
        text = text.replace("@LIBDIR@", str(REPO)).replace("@SBINDIR@", str(d))
        (d / name).write_text(text)
        os.chmod(d / name, 0o755)
    return d
