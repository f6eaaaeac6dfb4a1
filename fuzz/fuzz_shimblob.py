"""atheris target: the shim's hand-off encoder, handoff_to_fd3() (csrc/shim_blob.c), linked
with the harness tests/shim/blob_harness.c (UBSan; ASan for a fixed eighth of the inputs)
and run once per input (fork/exec).

The input is decoded (atheris.FuzzedDataProvider) into argv, env (raw bytes: empty entries,
'=' anywhere, non-UTF-8; for 1 input in 64, about 65536 entries or one entry of up to
17 MiB), the privileged flag, umask, cwd, session, and rlimits the harness sets on itself.

Oracles (beyond "no crash", including ASan/UBSan reports in the harness):
  * over the limits (argc > MAX_ARGV, envc > MAX_ENV, blob > MAX_BLOB): exit 201 with the
    documented line and no blob; a blob larger than RLIMIT_FSIZE: exit 201, its own line;
  * otherwise fd 3 is sealed (SEAL|SHRINK|GROW|WRITE) and read-only, and
    glexec_py.core.handoff.parse of the blob gives back exactly the argv and env given and
    the harness's real facts (ids, groups, pid/ppid/sid/pgid, umask, privileged, all 16
    rlimits, cwd) - see tests/support/shim_harness.py check_run.
"""
import ctypes  # noqa: F401 - imported before instrument_imports: not worth instrumenting
import os
import resource
import struct  # noqa: F401
import subprocess  # noqa: F401
import sys
import zlib

import atheris

import _common
from _common import check

# The code under test is C (not instrumented); the engine's parser is only the oracle here
# (fuzz_handoff.py fuzzes it) and, instrumented, made the 65536-entry inputs take seconds.
from glexec_py.core import handoff  # noqa: F401,E402

with atheris.instrument_imports():
    from tests.support import shim_harness as sh

WORK = _common.work_dir("shimblob")
# ASan costs ~20 ms a run: it checks a fixed eighth of the inputs, UBSan all the others.
HARNESSES = (sh.BlobHarness(WORK, asan=True), sh.BlobHarness(WORK, asan=False))
ODD = os.path.join(os.fsencode(WORK), b"odd \xff\n=dir")
os.makedirs(ODD, exist_ok=True)
CWDS = ["/", WORK, os.fsdecode(ODD)]
LIMITS = [0, 1, 100, 4096, 2**31, 2**32, 2**63 - 1, 2**63, 2**63 + 1, 2**64 - 2, sh.RLIM_INFINITY]
BIG = 17 * 1024 * 1024


def limit(fdp):
    if fdp.ConsumeBool():
        return LIMITS[fdp.ConsumeIntInRange(0, len(LIMITS) - 1)]
    return fdp.ConsumeIntInRange(0, sh.RLIM_INFINITY)


def strings(fdp, n):
    return [fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 64)).replace(b"\0", b"")
            for _ in range(n)]


def TestOneInput(data):
    fdp = atheris.FuzzedDataProvider(data)
    privileged, new_session = fdp.ConsumeBool(), fdp.ConsumeBool()
    umask = fdp.ConsumeIntInRange(0, 0o777)
    cwd = CWDS[fdp.ConsumeIntInRange(0, len(CWDS) - 1)]
    rlimits = {}
    for _ in range(fdp.ConsumeIntInRange(0, 3)):
        res = sh.SAFE_RLIMITS[fdp.ConsumeIntInRange(0, len(sh.SAFE_RLIMITS) - 1)]
        hard = min(limit(fdp), resource.getrlimit(res)[1] % 2**64)   # lowering: always allowed
        rlimits[res] = (min(limit(fdp), hard), hard)
    # Two slow modes (~0.3 s each), gated by a hash of the whole input: a mode byte alone
    # let mutants of one such corpus entry be 40 % of all runs.
    crc = zlib.crc32(data)
    mode = fdp.ConsumeIntInRange(0, 1) if crc % 64 == 1 else 2
    argv = strings(fdp, fdp.ConsumeIntInRange(1, 8))
    env = strings(fdp, fdp.ConsumeIntInRange(0, 8))
    if mode == 0:       # many entries, around the count limits
        n = fdp.ConsumeIntInRange(sh.MAX_ARGV - 2, sh.MAX_ARGV + 2)
        (argv if fdp.ConsumeBool() else env).extend([fdp.ConsumeBytes(1).replace(b"\0", b"")] * n)
    elif mode == 1:     # one huge entry, around the size limit
        byte = fdp.ConsumeBytes(1).replace(b"\0", b"") or b"v"
        (argv if fdp.ConsumeBool() else env).append(byte * fdp.ConsumeIntInRange(0, BIG))
    harness = HARNESSES[0 if (crc >> 8) % 8 == 0 else 1]
    bad = sh.check_run(harness, argv, env, privileged, rlimits, umask, cwd, new_session)
    check(not bad, "; ".join(bad))


def seeds():
    return [b"", b"\x01" * 64, bytes(range(256)), b"\x00\x01" * 100, b"\x7f=\xff" * 40]


if __name__ == "__main__":
    _common.seed(sys.argv, seeds)
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
