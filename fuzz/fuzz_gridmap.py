"""atheris target: glexec_py.core.gridmap (LCMAPS grid-mapfile parser and lookups).

Oracles (beyond "no crash"):
  * parse_gridmap raises nothing but ConfigError; all or nothing (a tuple of GridmapLine or
    an error, never a partial list);
  * the result is well formed: line numbers strictly increasing and within the file,
    subject bytes, mappings a tuple of non-empty bytes without '\\n';
  * parsing is deterministic and independent of the bytes after the last newline being
    followed by more lines (parse(data) is a prefix-extension of parse of its first lines);
  * the lookups (local_account, pool_name, subject_matches) on the parsed result never raise;
  * differential against libc fnmatch(p, s, FNM_NOESCAPE) in the C locale, as LCMAPS calls
    it (tests/support/libc_fnmatch.py): a mapping pattern (subject_matches) never matches
    more than LCMAPS, a ban pattern (ban_pattern_matches) never less, and both equal it on
    well-formed ASCII patterns.
"""
import sys

import atheris

import _common
from _common import check

with atheris.instrument_imports():
    from glexec_py.core import gridmap
    from glexec_py.errors import ConfigError
from tests.support.libc_fnmatch import violations

SUBJECTS = (b"/DC=org/DC=example/CN=Alice", b"/testvo/Role=NULL/Capability=NULL", b"/CN=a",
            b"/DC=org/CN=Jos\\xC3\\xA9")


def TestOneInput(data):
    ok, lines = _common.only(ConfigError, gridmap.parse_gridmap, data, "fuzz")
    if not ok:
        return
    check(type(lines) is tuple, "not a tuple")
    nlines = data.count(b"\n") + 1
    last = 0
    for ln in lines:
        check(type(ln) is gridmap.GridmapLine, "not a GridmapLine")
        check(last < ln.lineno <= nlines, f"line number {ln.lineno} out of order/range")
        last = ln.lineno
        check(type(ln.subject) is bytes and b"\n" not in ln.subject, f"bad subject {ln.subject!r}")
        check(type(ln.mappings) is tuple and all(type(m) is bytes and m and b"\n" not in m
                                                for m in ln.mappings), f"bad mappings {ln.mappings!r}")
    # the lines before the last newline parse the same on their own (per-line parser)
    cut = data.rfind(b"\n")
    if cut >= 0:
        head = gridmap.parse_gridmap(data[:cut], "fuzz")
        check(head == tuple(ln for ln in lines if ln.lineno <= data[:cut].count(b"\n") + 1),
              "prefix of the file parses differently")
    subjects = SUBJECTS + tuple(ln.subject for ln in lines[:4])
    for s in subjects:
        gridmap.local_account(lines, s)
        gridmap.local_account(lines, s, wildcards=True)
        gridmap.pool_name(lines, s)
    for ln in lines[:4]:
        if len(ln.subject) > 100:
            continue
        for s in subjects:
            if len(s) <= 100:
                bad = violations(ln.subject, s, gridmap.subject_matches(ln.subject, s),
                                 gridmap.ban_pattern_matches(ln.subject, s))
                check(not bad, "; ".join(bad))


def seeds():
    return [b'"/DC=org/DC=example/CN=Alice" alice\n"/DC=org/*" .pool,alice\n# c\n  \n',
            b'"/testvo/Role=pilot/Capability=NULL" .testvo\n"/testvo/*" .tv , x\\ y\n',
            b'/CN=unquoted\\ blank a\r\n"/CN=Jos\\xC3\\xA9 \\"Q\\"" jose\n',
            b'"/DC=[a-c]?/CN=*x" b\n"/CN=[!x]" c\n"" d\n"/CN=a"\n',
            b'"/CN=[M[:]allory*" m\n"/CN=[[:alpha:]]*" a\n"/CN=[[=a=]]" e\n/CN=Mallory x\n']


if __name__ == "__main__":
    _common.seed(sys.argv, seeds)
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
