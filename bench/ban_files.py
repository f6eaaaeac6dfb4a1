"""Per-call cost of the global ban files (effects.banfiles.load + core.bans.check), as the
engine pays it on every call.

    /usr/bin/python3 bench/ban_files.py [--lines 100000] [--calls 20] [--against DIR]

Runs as root (ban files and the cache must be root-owned).  Writes a DN ban list with
--lines entries (one in a thousand a wildcard pattern) into a private directory and times
--calls consecutive loads + one check of an unbanned chain: the first call (cold: parse,
and write the cache when there is one) and the median of the rest (cache hits: the file is
aged past the cache's racy window first).  ``--against DIR``: run the same measurement
with the glexec_py of another checkout (e.g. an export of main) first, then this one's,
each in its own process, and print both.
"""
import argparse
import os
import shutil
import statistics
import sys
import time
import types

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=100_000)
    ap.add_argument("--calls", type=int, default=20)
    ap.add_argument("--against", metavar="DIR", help="another checkout to measure first")
    ap.add_argument("--tree", default=REPO, help=argparse.SUPPRESS)
    sys.path.insert(0, REPO)
    from bench import benchsite
    benchsite.add_base_dir(ap)
    a = ap.parse_args()
    if a.against:
        import subprocess
        for label, tree in (("other", a.against), ("this", REPO)):
            print(f"{label} ({tree}): ", end="", flush=True)
            subprocess.run([sys.executable, os.path.abspath(__file__), "--lines", str(a.lines),
                            "--calls", str(a.calls), "--tree", tree, "--base-dir", a.base_dir], check=True)
        return
    sys.path.insert(0, os.path.abspath(a.tree))
    from glexec_py.core import bans, dn
    from glexec_py.effects import banfiles
    assert banfiles.__file__.startswith(os.path.abspath(a.tree)), banfiles.__file__
    d = benchsite.scratch_dir(a, "bench-bans")
    os.chmod(d, 0o755)
    try:
        path = os.path.join(d, "ban_dn.db")
        with open(path, "w") as f:
            for i in range(a.lines):
                if i % 1000 == 0:
                    f.write(f'"/DC=org/DC=example/OU=Unit{i}/CN=Banned*"\n')
                else:
                    f.write(f'"/DC=org/DC=example/OU=Unit{i % 97}/CN=Banned User {i}"\n')
        os.chmod(path, 0o644)
        # A version younger than the racy window is parsed on every call, never cached.
        time.sleep(getattr(banfiles, "RACY_NS", 0) / 1e9 + 0.2)
        state = os.path.join(d, "state")
        os.mkdir(state, 0o700)
        cfg = types.SimpleNamespace(dn_files=(path,), ca_files=(), fqan_files=(), dn=(), ca=(),
                                    fqan=(), fingerprint=(), token=(),
                                    max_file_size=64 << 20)
        subject = dn.parse_text("/DC=org/DC=example/CN=Alice Innocent")
        times = []
        for _ in range(a.calls):
            t = time.perf_counter()
            try:
                bl = banfiles.load(cfg, "/etc/glexec-py/glexec.yaml", state)
            except TypeError:                       # before the cache: no state_dir argument
                bl = banfiles.load(cfg, "/etc/glexec-py/glexec.yaml")
            decision = bans.check(bl, subject_dns=[subject],
                                  subject_onelines=[b"/DC=org/DC=example/CN=Alice Innocent"])
            times.append(time.perf_counter() - t)
            assert decision is None and bl.unusable_why is None, (decision, bl)
        size = os.path.getsize(path)
        print(f"ban list: {a.lines} lines, {size / 1e6:.1f} MB; first call {times[0] * 1000:.0f} ms; "
              f"median of the next {a.calls - 1}: {statistics.median(times[1:]) * 1000:.1f} ms per call",
              flush=True)
    finally:
        shutil.rmtree(d)


if __name__ == "__main__":
    main()
