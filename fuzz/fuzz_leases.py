"""atheris target: glexec_py.core.leases.lease_name (the LCMAPS gridmapdir lease name).

Input: two DNs, up to three group names and a mapcount, drawn with FuzzedDataProvider.

Oracles (beyond "no crash"):
  * lease_name raises ValueError exactly for an empty DN, a NUL byte, or a mapcount outside
    -1..9999, nothing else; the name holds no NUL and is at most 3 bytes per input byte;
  * ASCII DN without \\x01 (OpenSSL oneline form): the name equals an independent model
    (tests/support/lease_oracle.py) and decodes back to (lower-cased DN, groups/mapcount):
    a round trip, so the name determines the identity up to letter case;
  * injectivity: for two such DNs, equal names <=> equal lower-cased DNs;
  * the DN part never contains '/': a lease is one file in the gridmapdir.
"""
import sys

import atheris

import _common
from _common import check

with atheris.instrument_imports():
    from glexec_py.core import leases
from tests.support.lease_oracle import check_ascii


def _plain(dn):
    return dn.isascii() and b"\x01" not in dn and b"\0" not in dn and dn != b""


def TestOneInput(data):
    fdp = atheris.FuzzedDataProvider(data)
    a = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 80))
    b = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 80))
    groups = tuple(fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 12))
                   for _ in range(fdp.ConsumeIntInRange(0, 3)))
    mapcount = fdp.ConsumeIntInRange(-3, 10002)
    bad = (not a or b"\0" in a or any(b"\0" in g for g in groups)
           or not -1 <= mapcount <= leases.MAX_MAPCOUNT)
    try:
        name = leases.lease_name(a, groups, mapcount)
    except ValueError:
        check(bad, f"ValueError for a valid identity {a!r} {groups!r} {mapcount}")
        return
    check(not bad, f"accepted an invalid identity {a!r} {groups!r} {mapcount}")
    raw = len(a) + sum(len(g) + 1 for g in groups) + (14 if mapcount > 0 else 0)
    check(b"\0" not in name and len(name) <= 3 * raw, f"bad name {name!r}")
    if b"\x01" not in a:
        check(b"/" not in name.partition(b":")[0], f"'/' in the DN part of {name!r}")
    if _plain(a) and all(b"\x01" not in g for g in groups) and groups == tuple(g for g in groups if g):
        problems = check_ascii(leases.lease_name, a, groups, mapcount)
        check(not problems, "; ".join(problems))
    if _plain(a) and _plain(b):
        same = leases.lease_name(a) == leases.lease_name(b)
        check(same == (a.lower() == b.lower()), f"injectivity: {a!r} vs {b!r} -> same={same}")


def seeds():
    return [b"/DC=org/DC=example/CN=Alice Smith" + bytes(40), b"/CN=Andr\xc3\xa9\x01g1:g2" + bytes(20),
            b"/CN=a/CN=A" * 3, b"\x01" * 10 + b"/CN=x" * 5]


if __name__ == "__main__":
    _common.seed(sys.argv, seeds)
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
