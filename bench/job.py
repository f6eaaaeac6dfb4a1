#!/usr/bin/python3.11
"""Bench: the job side's input-sandbox unpacker against GNU tar, same archives, same run.

    /usr/bin/python3.11 bench/job.py [--scratch /var/tmp] [--small 20000] [--small-size 700]
                                     [--large-mib 1024] [--repeat 5] [--user NAME]
                                     [--skip-large] [--bomb-gib 4] [--baseline TOOLS_DIR]

Builds under ``--scratch`` (a fresh private directory, removed afterwards): a plain tar of
``--small`` files of ``--small-size`` bytes in directories of 100, a plain tar of one
``--large-mib`` MiB file of incompressible bytes, and gzip/bzip2/xz bombs (one member of
``--bomb-gib`` GiB of zeros, declared size within the default caps, so only the ratio cap
can stop it).  Then per repeat, in alternating order, each as a fresh process into a fresh
empty directory: ``tar -xf ARCHIVE -C DIR`` and ``python3 -I -m glexec_tools.job.inner
unpack --dir DIR --archive ARCHIVE``; wall time and CPU time (user+system, from
wait4: less sensitive to a busy machine) are both reported.  With ``--user`` (root only) both run as that account
(directories owned by it), as they will through glexec.

Prints each repeat, the medians, speed ratios (tar time / ours: target >= 0.8 for small
files, >= 0.9 for the large one), our peak RSS, the load average before and after; then per
bomb: our exit code, time and peak RSS until stopped (target < 1 s and < 64 MiB).
``--baseline`` times another copy of the tools (e.g. /work/main/tools: before a change) in
the same repeats, so before, after and tar share one machine state.
"""
import argparse
import io
import os
import pwd
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = os.path.join(REPO, "tools")


def timed(argv, user):
    """Run ``argv`` (as ``user`` if given); (seconds, exit code, peak RSS KiB, stderr, CPU
    seconds user+system)."""
    kw = {}
    if user:
        pw = pwd.getpwnam(user)
        kw = dict(user=pw.pw_uid, group=pw.pw_gid, extra_groups=[])
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)
    err = p.stderr.read()
    _, status, ru = os.wait4(p.pid, 0)
    dt = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    return dt, p.returncode, ru.ru_maxrss, err.decode(errors="replace").strip(), ru.ru_utime + ru.ru_stime


def make_dir(base, name, user):
    d = os.path.join(base, name)
    os.mkdir(d, 0o700)
    if user:
        pw = pwd.getpwnam(user)
        os.chown(d, pw.pw_uid, pw.pw_gid)
    return d


def build_small(path, n, size):
    data = os.urandom(size)
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tf:
        for d in range((n + 99) // 100):
            ti = tarfile.TarInfo(f"d{d:04d}")
            ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            tf.addfile(ti)
            for i in range(min(100, n - d * 100)):
                ti = tarfile.TarInfo(f"d{d:04d}/f{i:03d}")
                ti.size, ti.mode, ti.mtime = size, 0o644, 1700000000
                tf.addfile(ti, io.BytesIO(data))


def build_large(path, mib):
    block = os.urandom(1 << 20)
    with open(path, "wb") as f:
        ti = tarfile.TarInfo("big.bin")
        ti.size, ti.mode = mib << 20, 0o644
        f.write(ti.tobuf(format=tarfile.GNU_FORMAT))
        for _ in range(mib):
            f.write(block)
        f.write(b"\0" * 1024)


def build_bomb(path, codec, gib):
    import bz2
    import lzma
    import zlib
    comp = {"gz": lambda: zlib.compressobj(9, zlib.DEFLATED, 31),
            "bz2": lambda: bz2.BZ2Compressor(9),
            "xz": lambda: lzma.LZMACompressor(format=lzma.FORMAT_XZ)}[codec]()
    zero = bytes(16 << 20)
    ti = tarfile.TarInfo("zeros")
    ti.size = gib << 30
    with open(path, "wb") as f:
        f.write(comp.compress(ti.tobuf(format=tarfile.GNU_FORMAT)))
        for _ in range((gib << 30) // len(zero)):
            f.write(comp.compress(zero))
        f.write(comp.compress(b"\0" * 1024))
        f.write(comp.flush())


def inner_boot(tools):
    return ("import sys, runpy; sys.path[:0] = [%r]; "
            "runpy.run_module('glexec_tools.job.inner', run_name='__main__', alter_sys=True)" % tools)


INNER = inner_boot(TOOLS)


def compare(label, archive, base, repeat, user, baseline=None):
    tar_t, our_t, rss, cpu = [], [], [], {"tar": [], "ours": [], "baseline": []}
    base_t = []
    for r in range(repeat):
        runs = [("tar", ["tar", "-xf", archive, "-C"]),
                ("ours", [sys.executable, "-I", "-c", INNER, "unpack", "--archive", archive, "--dir"])]
        if baseline:
            runs.append(("baseline", [sys.executable, "-I", "-c", inner_boot(baseline), "unpack",
                                      "--archive", archive, "--dir"]))
        if r % 2:
            runs.reverse()
        for who, argv in runs:
            d = make_dir(base, f"x-{label}-{who}-{r}", user)
            subprocess.run(["sync"])
            dt, rc, maxrss, err, c = timed(argv + [d], user)
            cpu[who].append(c)
            if rc != 0:
                sys.exit(f"{who} failed on {label} (exit {rc}): {err}")
            {"tar": tar_t, "ours": our_t, "baseline": base_t}[who].append(dt)
            if who == "ours":
                rss.append(maxrss)
            shutil.rmtree(d)
            subprocess.run(["sync"])
        print(f"  {label} repeat {r + 1}: tar {tar_t[-1]:.3f} s (CPU {cpu['tar'][-1]:.3f}), "
              f"ours {our_t[-1]:.3f} s (CPU {cpu['ours'][-1]:.3f})"
              + (f", baseline {base_t[-1]:.3f} s (CPU {cpu['baseline'][-1]:.3f})" if baseline else ""),
              flush=True)
    mt, mo = statistics.median(tar_t), statistics.median(our_t)
    print(f"{label}: median tar {mt:.3f} s, ours {mo:.3f} s, speed ratio (tar/ours) {mt / mo:.2f}, "
          f"our peak RSS {max(rss) // 1024} MiB", flush=True)
    ct, co = statistics.median(cpu["tar"]), statistics.median(cpu["ours"])
    print(f"{label}: median CPU (user+system) tar {ct:.3f} s, ours {co:.3f} s, ratio {ct / co:.2f}",
          flush=True)
    if baseline:
        mb, cb = statistics.median(base_t), statistics.median(cpu["baseline"])
        print(f"{label}: baseline {baseline}: median {mb:.3f} s, speed ratio (tar/baseline) {mt / mb:.2f}, "
              f"CPU {cb:.3f} s, CPU ratio {ct / cb:.2f}", flush=True)
    return mt / mo


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scratch", default="/var/tmp")
    ap.add_argument("--small", type=int, default=20000)
    ap.add_argument("--small-size", type=int, default=700)
    ap.add_argument("--large-mib", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--user")
    ap.add_argument("--skip-large", action="store_true")
    ap.add_argument("--bomb-gib", type=int, default=4)
    ap.add_argument("--baseline", help="another tools/ directory to time in the same run (before a change)")
    ap.add_argument("--build-bomb", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.build_bomb:
        codec, path, gib = a.build_bomb
        return build_bomb(path, codec, int(gib))
    if a.user and os.geteuid() != 0:
        sys.exit("--user needs root")
    base = tempfile.mkdtemp(prefix="glexec-job-bench-", dir=a.scratch)
    os.chmod(base, 0o755)
    try:
        print(f"load average before: {os.getloadavg()}", flush=True)
        small = os.path.join(base, "small.tar")
        build_small(small, a.small, a.small_size)
        ratios = {"small": compare(f"{a.small} small files", small, base, a.repeat, a.user, a.baseline)}
        if not a.skip_large:
            large = os.path.join(base, "large.tar")
            build_large(large, a.large_mib)
            ratios["large"] = compare(f"one {a.large_mib} MiB file", large, base, a.repeat, a.user, a.baseline)
            os.unlink(large)
        for codec in ("gz", "bz2", "xz"):
            bomb = os.path.join(base, f"bomb.tar.{codec}")
            # built by a separate process: a child's peak RSS includes its parent's at fork
            subprocess.run([sys.executable, os.path.abspath(__file__), "--build-bomb", codec, bomb,
                            str(a.bomb_gib)], check=True)
            d = make_dir(base, f"bomb-{codec}", a.user)
            dt, rc, maxrss, err, _ = timed([sys.executable, "-I", "-c", INNER, "unpack", "--archive", bomb,
                                         "--dir", d], a.user)
            left = sum(len(f) for _, _, f in os.walk(d))
            print(f"bomb {codec} ({os.path.getsize(bomb)} bytes -> {a.bomb_gib} GiB): exit {rc} in "
                  f"{dt:.3f} s, peak RSS {maxrss // 1024} MiB, files left {left}: {err}", flush=True)
            shutil.rmtree(d)
            os.unlink(bomb)
        print(f"load average after: {os.getloadavg()}")
        print("targets: small >= 0.80 -> %s, large >= 0.90 -> %s" % (
            f"{ratios['small']:.2f}", f"{ratios['large']:.2f}" if "large" in ratios else "skipped"))
    finally:
        shutil.rmtree(base)


if __name__ == "__main__":
    main()
