"""atheris target: glexec_py.core.bans (ban files and the ban check).

Input: byte 0 picks the kind (dn / fqan / ca); the rest is split at the first "\\n\\n":
a ban file in LCAS/LCMAPS syntax, then subjects (one per line) to check against it.

Oracles (beyond "no crash"):
  * load_ban_file raises nothing but BanLoadError, all or nothing (a BanList or an error);
  * every wildcard entry it keeps is a pattern glexec reads exactly like glibc
    (``gridmap.pattern_is_regular``): an irregular one is refused (deny everyone);
  * differential against libc fnmatch (tests/support/libc_fnmatch.py): for every wildcard
    entry and subject, ban_pattern_matches never misses what LCMAPS bans, subject_matches
    never maps what LCMAPS would not, both exact on well-formed ASCII patterns;
  * end to end: whenever LCMAPS would ban a subject by one of the entries, ``check`` with
    that subject as a raw oneline (DN) or FQAN denies; ``check`` never raises;
  * an exact DN entry bans its own DN, at any proxy depth (a proxy CN below it).
"""
import sys

import atheris

import _common
from _common import check

with atheris.instrument_imports():
    from glexec_py.core import bans, dn, gridmap
from tests.support.libc_fnmatch import lcmaps_matches, violations

KINDS = ("dn", "fqan", "ca")
PROXY_CN = ((("2.5.4.3", "123456"),),)


def TestOneInput(data):
    if not data:
        return
    kind = KINDS[data[0] % 3]
    body, _, rest = data[1:].partition(b"\n\n")
    ok, bl = _common.only(bans.BanLoadError, bans.load_ban_file, body, "fuzz", kind)
    if not ok:
        check(bl.line is None or bl.line >= 1, "BanLoadError without a usable line")
        return
    check(type(bl) is bans.BanList and bl.unusable_why is None, "load returned no usable list")
    subjects = [s for s in rest.split(b"\n")[:6] if s and len(s) <= 200]
    for e in bl.entries[:8]:
        if e.pattern is not None:
            check(gridmap.pattern_is_regular(e.pattern), f"irregular pattern kept: {e.pattern!r}")
            for s in subjects + [e.pattern]:
                bad = violations(e.pattern, s, gridmap.subject_matches(e.pattern, s),
                                 gridmap.ban_pattern_matches(e.pattern, s))
                check(not bad, "; ".join(bad))
        elif kind == "dn":
            d = e.value
            for chain in ([d], [d + PROXY_CN, d]):
                check(bans.check(bl, subject_dns=chain) is not None,
                      f"exact ban {e.text!r} does not ban its own DN")
    for s in subjects:
        try:
            text = s.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if kind == "fqan":
            got = bans.check(bl, fqans=[text] if text else [])
            wanted = text is not None and any(
                e.pattern is not None and lcmaps_matches(e.pattern, s) for e in bl.entries)
        elif kind == "dn":
            got = bans.check(bl, subject_onelines=[s])
            wanted = any(e.pattern is not None and lcmaps_matches(e.pattern, s) for e in bl.entries)
        else:
            got = bans.check(bl, issuer_onelines=[s])
            wanted = any(e.pattern is not None and lcmaps_matches(e.pattern, s) for e in bl.entries)
        check(got is None or type(got) is bans.Decision, "check returned a non-decision")
        if wanted:
            check(got is not None, f"LCMAPS would ban {s!r} ({kind}); check lets it through")


def seeds():
    return [b"\x00" + b'"/DC=org/DC=example/CN=Mallory*"\n"/DC=org/CN=Alice"\n\n'
            b"/DC=org/DC=example/CN=Mallory Evil\n/DC=org/CN=Bob\n",
            b"\x00" + b'"/DC=org/CN=[M[:]allory*"\n"/CN=[[:upper:]]x?"\n\n/DC=org/CN=Mallory\n/CN=Ax1\n',
            b"\x01" + b'"/testvo/Role=pilot"\n"/atlas/*"\n/cms\n\n/atlas/Role=NULL/Capability=NULL\n/cms/x\n',
            b"\x02" + b'"/DC=org/CN=Bad CA"\n"/DC=org/CN=Evil*"\n\n/DC=org/CN=Evil CA 2\n']


if __name__ == "__main__":
    _common.seed(sys.argv, seeds)
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
