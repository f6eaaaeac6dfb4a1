"""atheris target: the job side's input-sandbox unpacker (tools/glexec_tools/job), in-process.

Input: the archive bytes (tar plain/gz/bz2/xz/zstd or zip, told apart by their magic).

Oracles (beyond "no crash"; tests/support/job_oracle.py, shared with the hypothesis twin
tests/job/test_unpack_props.py::test_random_bytes):
  * only a Refused (one line) comes out for bad input, never another exception;
  * nothing outside the job directory changes (a sentinel tree beside it, checksummed);
  * no device, FIFO, socket, set-id/sticky bit inside; every symlink resolves inside;
  * bytes written <= the cap (small caps: 4 MiB, 200 members);
  * a refusal leaves the job directory empty.
"""
import os
import sys

import atheris

import _common

sys.path.insert(0, os.path.join(_common.REPO, "tools"))
with atheris.instrument_imports():
    from glexec_tools.job import apply, plan  # noqa: F401
from tests.support import job_oracle

BASE = _common.work_dir("job-unpack")


def TestOneInput(data):
    try:
        job_oracle.check_unpack(os.path.join(BASE, "case"), data)
    except AssertionError as e:
        raise _common.OracleViolation(str(e)) from None


def seeds():
    from tests.job import corpus
    ctx = corpus.Ctx(os.path.join(BASE, "case", "sentinel"))
    out = []
    for case in corpus.cases():
        if case.name.startswith(("bomb-", "sparse-")):
            continue
        out += [a for a in case.build(ctx) if len(a) < 64 << 10]
    return out


if __name__ == "__main__":
    _common.seed(sys.argv, seeds)
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
