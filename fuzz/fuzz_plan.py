"""atheris target: the payload plan's C decoder, gx_plan_decode() (csrc/plan_decode.c), linked
with the harness tests/native/plan_harness.c (UBSan; ASan for a fixed eighth of the inputs)
and run once per input (fork/exec).

Inputs: raw bytes as they come (for 1 in 4 a valid plan built from the input by
core.plan.encode, then up to 4 bytes overwritten and the total length optionally patched
to match, so the fuzzer gets past the header and into the groups, limits and strings).

Oracle (beyond "no crash", including ASan/UBSan reports in the harness): the C accepts
exactly what glexec_py.core.plan.decode (the reference) accepts, and then gives back the
same Plan field for field; a plan built by encode is always accepted unchanged.
"""
import os  # noqa: F401
import struct
import subprocess  # noqa: F401
import sys
import zlib

import atheris

import _common
from _common import check

from glexec_py.core import plan as P  # noqa: E402 - the oracle; not instrumented (it is not under test)

with atheris.instrument_imports():
    from tests.support.plan_harness import PlanHarness

WORK = _common.work_dir("plan")
HARNESSES = (PlanHarness(WORK, asan=True), PlanHarness(WORK, asan=False))
IDS = [0, 1, 65534, P.MAX_ID, 2**32 - 1]
LIMITS = [-1, 0, 1, 2**63 - 1, 2**63, 2**64 - 2]


def _bytes(fdp, n=24):
    return fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, n)).replace(b"\0", b"\1")


def built(fdp):
    """A valid plan from the input, or None if the drawn values break a rule."""
    linger = fdp.ConsumeBool()

    def ident():
        return IDS[fdp.ConsumeIntInRange(0, len(IDS) - 1)] if fdp.ConsumeBool() else fdp.ConsumeIntInRange(0, P.MAX_ID)
    rlimits = {}
    for _ in range(fdp.ConsumeIntInRange(0, 4)):
        a, b = sorted((LIMITS[fdp.ConsumeIntInRange(0, len(LIMITS) - 1)] for _ in range(2)),
                      key=lambda v: 2**64 if v == -1 else v)
        rlimits[fdp.ConsumeIntInRange(0, 15)] = (a, b)
    try:
        return P.Plan(path=b"/" + _bytes(fdp), argv=[_bytes(fdp) for _ in range(fdp.ConsumeIntInRange(1, 4))],
                      env=[_bytes(fdp) for _ in range(fdp.ConsumeIntInRange(0, 4))], uid=ident(), gid=ident(),
                      groups=[ident() for _ in range(fdp.ConsumeIntInRange(0, 4))],
                      cwd=(b"/" + _bytes(fdp)) if fdp.ConsumeBool() else b"", umask=fdp.ConsumeIntInRange(0, 0o777),
                      rlimits=rlimits, switch_identity=fdp.ConsumeBool(), no_new_privs=fdp.ConsumeBool(),
                      tty_guard=fdp.ConsumeBool(), linger=linger,
                      pdeathsig=fdp.ConsumeIntInRange(0, 64) if linger else 0,
                      forward_signals=[s for s in (fdp.ConsumeIntInRange(1, 64) for _ in range(3))
                                       if s not in (9, 17, 19)] if linger else (),
                      caller_ruid=ident())
    except ValueError:
        return None


def TestOneInput(data):
    crc = zlib.crc32(data)
    harness = HARNESSES[0 if (crc >> 8) % 8 == 0 else 1]
    fdp = atheris.FuzzedDataProvider(data)
    plan = built(fdp) if crc % 4 == 0 else None
    try:
        wire = bytearray(P.encode(plan)) if plan is not None else None
    except ValueError:          # a drawn value breaks a rule: the raw input is used instead
        wire = None
    if wire is not None:
        check(harness.decode(bytes(wire)) == plan, "a valid plan did not decode to itself")
        for _ in range(fdp.ConsumeIntInRange(0, 4)):
            wire[fdp.ConsumeIntInRange(0, len(wire) - 1)] = fdp.ConsumeIntInRange(0, 255)
        if fdp.ConsumeBool():
            struct.pack_into("<I", wire, 8, len(wire))
        data = bytes(wire)
    try:
        want = P.decode(data)
    except ValueError:
        want = None
    got = harness.decode(data)
    check(got == want, f"C decoder {got!r} vs reference {want!r}")


def seeds():
    base = dict(path=b"/bin/sh", argv=[b"sh", b"-c", b"id"], env=[b"HOME=/h"], uid=1000, gid=1000, groups=[1000, 27],
                cwd=b"/tmp", umask=0o022, rlimits={0: (-1, -1), 7: (1024, 4096)}, switch_identity=True,
                no_new_privs=False, tty_guard=True, linger=True, pdeathsig=9, forward_signals=[1, 2, 15],
                caller_ruid=1000)
    yield P.encode(P.Plan(**base))
    yield P.encode(P.Plan(**dict(base, linger=False, pdeathsig=0, forward_signals=(), groups=[], rlimits={})))


if __name__ == "__main__":
    _common.seed(sys.argv, seeds)
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
