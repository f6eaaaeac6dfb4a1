"""Test driver for tests/leases/test_crash.py: one GridmapDir operation in a fresh process
(so strace can kill it or fail one of its system calls).  Prints one line:
``OK <result>`` or ``ERR <exception class> <reason>``.

    python3.11 crash_driver.py <gridmapdir> acquire <dn> <pool> [sync]
    python3.11 crash_driver.py <gridmapdir> release <lease>
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from glexec_py.effects.gridmapdir import GridmapDir  # noqa: E402


def main():
    gmd, op, arg = sys.argv[1], sys.argv[2], sys.argv[3].encode()
    try:
        with GridmapDir(gmd, sync=sys.argv[5] if len(sys.argv) > 5 else "grant") as g:
            if op == "acquire":
                res = g.acquire(arg, sys.argv[4].encode())
            else:
                res = g.release(arg)
        print("OK", res, flush=True)
    except Exception as e:  # noqa: BLE001 - the test inspects it
        print("ERR", type(e).__name__, getattr(e, "reason", e), flush=True)


if __name__ == "__main__":
    main()
