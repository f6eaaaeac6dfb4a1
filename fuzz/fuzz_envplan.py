"""atheris target: glexec_py.core.envplan.payload_env (the payload's environment).

Input: the caller's environment (NUL-separated entries, any bytes, duplicates, entries
without '='), a preserve list, the target user and the proxy path, by FuzzedDataProvider.

Oracles (beyond "no crash"):
  * no name starting with LD_ or MALLOC_ ever reaches the payload, whatever preserve says;
  * every caller name kept is GLEXEC_* or in preserve, and its entry is the FIRST entry of
    that name in the caller's environment, byte for byte; names are unique;
  * HOME, USER, LOGNAME, PATH (and X509_USER_PROXY when given) are set by glexec, last,
    in that order, with the given values, never the caller's;
  * no byte of a dropped entry reaches the output (checked by name: the output is exactly
    the allowlisted subset, in input order).
"""
import sys

import atheris

import _common
from _common import check

with atheris.instrument_imports():
    from glexec_py.core import envplan

FIXED = (b"HOME", b"USER", b"LOGNAME", b"PATH", b"X509_USER_PROXY")
PRESERVE_POOL = ("TZ", "LANG", "LD_PRELOAD", "MALLOC_ARENA_MAX", "HOME", "PATH", "FOO",
                 "X509_USER_PROXY", "GLEXEC_X", "LC_ALL")


def TestOneInput(data):
    fdp = atheris.FuzzedDataProvider(data)
    preserve = tuple(p for i, p in enumerate(PRESERVE_POOL) if fdp.ConsumeBool())
    user = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 8))
    proxy = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 8)) if fdp.ConsumeBool() else None
    env = fdp.ConsumeBytes(fdp.remaining_bytes()).split(b"\0")
    out = envplan.payload_env(env, preserve=preserve, home=b"/home/t", user=user, path=b"/bin",
                              x509_user_proxy=proxy)
    want_fixed = [b"HOME=/home/t", b"USER=" + user, b"LOGNAME=" + user, b"PATH=/bin"]
    if proxy is not None:
        want_fixed.append(b"X509_USER_PROXY=" + proxy)
    check(out[-len(want_fixed):] == want_fixed, f"fixed variables wrong: {out[-len(want_fixed):]!r}")
    keep = {p.encode() for p in preserve}
    first = {}
    for e in env:
        name, eq, _ = e.partition(b"=")
        if eq and name and name not in first:
            first[name] = e
    expected = [e for name, e in first.items()
                if not name.startswith((b"LD_", b"MALLOC_")) and name not in FIXED
                and (name.startswith(b"GLEXEC_") or name in keep)]
    check(out[:-len(want_fixed)] == expected, f"kept {out[:-len(want_fixed)]!r}, expected {expected!r}")
    names = [e.partition(b"=")[0] for e in out]
    check(len(names) == len(set(names)), "duplicate names")
    check(not any(n.startswith((b"LD_", b"MALLOC_")) for n in names), "LD_/MALLOC_ reached the payload")


def seeds():
    return [b"\xff\xff" + b"u\x00" * 3 + b"GLEXEC_A=1\0LD_PRELOAD=/x\0TZ=UTC\0GLEXEC_A=2\0HOME=/evil\0noeq\0=v\0MALLOC_X=1"]


if __name__ == "__main__":
    _common.seed(sys.argv, seeds)
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
