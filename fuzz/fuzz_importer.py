"""atheris target: glexec-import's planner (tools/glexec_tools/importer/plan.py) on
arbitrary glexec.conf, lcmaps.db and lcas.db texts.

Oracle (tests/support/importer_oracle.py, beyond "no crash"): never an exception; the
output loads with glexec_py/core/config.py, or there is no output and the report has an
error saying why; every finding's file:line is a real line; the exit code follows from the
findings; deterministic.  Seeds: the golden sites of tests/importer/sites/.
"""
import os
import sys

import atheris

import _common
from _common import check

sys.path.insert(0, os.path.join(_common.REPO, "tools"))
with atheris.instrument_imports(include=["glexec_tools"]):
    from glexec_tools.importer import plan  # noqa: F401
from tests.support import importer_oracle

SEP = b"\n\x00\x00\n"


def TestOneInput(data):
    parts = data.split(SEP)
    texts = [p.decode("utf-8", "surrogateescape") for p in parts[:3]] + [None] * (3 - min(3, len(parts)))
    conf, db, lcas = texts
    result = importer_oracle.run(conf, db if db is not None else "", lcas)
    bad = importer_oracle.problems(conf, db if db is not None else "", lcas, result)
    check(not bad, "; ".join(bad))


def seeds():
    out = []
    sites = os.path.join(_common.REPO, "tests", "importer", "sites")
    for site in sorted(os.listdir(sites)):
        d = os.path.join(sites, site)
        names = sorted(os.listdir(d))
        read = lambda n: open(os.path.join(d, n), "rb").read().replace(b"@ROOT@", b"/srv/site")  # noqa: E731
        db = next(n for n in names if "lcmaps" in n)
        lcas = next((n for n in names if "lcas" in n), None)
        out.append(SEP.join([read("glexec.conf"), read(db)] + ([read(lcas)] if lcas else [])))
    return out


if __name__ == "__main__":
    _common.seed(sys.argv, seeds)
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
