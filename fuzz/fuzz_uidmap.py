"""atheris target: the shim's uid_map rule, uid_map_is_initial() (csrc/shim_userns.c),
compiled into a throwaway shared library (tests/support/shim_harness.py).

Oracles (beyond "no crash"):
  * the C verdict equals the independent Python rule ``uidmap_oracle`` (accept iff exactly
    one newline-terminated line of exactly the fields 0, 0, 4294967295 separated by spaces
    or tabs, under 255 bytes);
  * the C code never reads past the input: it ends at a PROT_NONE page (a read beyond is
    a SIGSEGV, which libFuzzer reports as a deadly signal).
The C code is not coverage-instrumented: libFuzzer is guided by the Python oracle, and the
seeds are kernel-format maps.
"""
import mmap
import sys

import atheris

import _common
from _common import check

with atheris.instrument_imports():
    from tests.support.shim_harness import UidMap, uidmap_oracle

UIDMAP = UidMap(_common.work_dir("uidmap"))


def TestOneInput(data):
    data = data[:mmap.PAGESIZE]
    got = UIDMAP.is_initial(data)
    check(got == uidmap_oracle(data), f"uid_map_is_initial({data!r}) = {got}, oracle disagrees")


def seeds():
    k = b"%10u %10u %10u\n"
    return [k % (0, 0, 4294967295), k % (0, 0, 1), k % (0, 1000, 1), b"0 0 4294967295\n",
            b"0\t0\t4294967295\n", k % (0, 0, 4294967295) + k % (1, 1, 1), b"0 0 4294967295",
            b"0 0 4294967295\0\n", b" " * 240 + b"0 0 4294967295\n"]


if __name__ == "__main__":
    _common.seed(sys.argv, seeds)
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
