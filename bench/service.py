#!/usr/bin/python3
"""The engine service against the in-process engine and runuser, in the same run (as root).

    service    : the pilot runs the installed setuid glexec /bin/true; the prefix's engine
                 service (glexec_py/service.py, bound to the prefix's socket) decides, the
                 shim runs the plan: full chain verification, gridmapfile mapping, PAM
                 account check and session, fsync'ed audit records, linger
    in-process : the same call through a second prefix with no service: the shim execs the
                 engine (the fall-back path)
    runuser    : root runs runuser -u <target> /bin/true
    setpriv    : root runs setpriv --reuid/--regid/--init-groups /bin/true (no policy at all)
    true       : /bin/true itself (the floor)

Sequential calls round-robin (machine noise hits all alike): medians and ratios. Then
calls in flight (2, 8, 32 at once, each for --seconds): calls/s, p50/p99 latency.
Usage: bench/service.py [rounds] [--flight-seconds S]
"""
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support import accounts as acc  # noqa: E402
from tests.support import install as inst  # noqa: E402
from tests.support.pki import TestPKI  # noqa: E402
from tests.support.runas import run_as  # noqa: E402

USER_DN = "/DC=test/DC=glexec-py/CN=Bench User"
TARGET = "gxttarget1"


def timed(argv, env, ids):
    kw = {}
    if ids:
        uid, gid, groups = ids
        kw = dict(user=uid, group=gid, extra_groups=groups)
    t0 = time.perf_counter()
    p = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, **kw)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"bench: {argv[0]} failed ({p.returncode}): {p.stderr!r}")
    return dt


def in_flight(case, width, seconds):
    """`width` callers looping for `seconds`: (calls/s, p50 ms, p99 ms)."""
    argv, env, ids = case
    lat, stop = [], time.monotonic() + seconds

    def caller():
        while time.monotonic() < stop:
            lat.append(timed(argv, env, ids))
    threads = [threading.Thread(target=caller) for _ in range(width)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    q = statistics.quantiles(lat, n=100)
    return len(lat) / wall, statistics.median(lat) * 1000, q[98] * 1000


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    rounds = int(args[0]) if args else 100
    seconds = float(sys.argv[sys.argv.index("--flight-seconds") + 1]) if "--flight-seconds" in sys.argv else 5.0
    if os.geteuid() != 0:
        sys.exit("bench: run as root")
    with acc.session_lock():
        inst.cleanup_leftover_prefixes()
        accounts = acc.TestAccounts.create_standard()
        served = local = None
        try:
            served, local = inst.install_prefix(), inst.install_prefix()
            pki = TestPKI(inst.make_run_dir("pki"))
            user = pki.user(USER_DN)
            work = inst.make_run_dir("run")
            os.chmod(work, 0o755)
            proxy = pki.proxy(user, work / "x509up_bench")
            os.chown(proxy, accounts.pilot.uid, accounts.pilot.gid)
            for p in (served, local):
                inst.install_trust_dir(p, pki)
                inst.write_gridmap(p, [(USER_DN, TARGET)])
                inst.write_config(p)
            inst.start_service(served)
            inst.stop_service(local)
            pilot, target = accounts.pilot, accounts[TARGET]
            ids = (pilot.uid, pilot.gid, sorted(set(os.getgrouplist("gxtpilot", pilot.gid))))
            genv = {"PATH": "/usr/bin:/bin", "GLEXEC_CLIENT_CERT": str(proxy), "GLEXEC_TARGET_PROXY": "/dev/null"}
            renv = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
            cases = {
                "service": ([str(inst.glexec_path(served)), "/bin/true"], genv, ids),
                "in-process": ([str(inst.glexec_path(local)), "/bin/true"], genv, ids),
                "runuser": (["runuser", "-u", TARGET, "/bin/true"], renv, None),
                "setpriv": (["setpriv", f"--reuid={target.uid}", f"--regid={target.gid}", "--init-groups",
                             "/bin/true"], renv, None),
                "true": (["/bin/true"], renv, None),
            }
            os.chdir(work)
            for g in (cases["service"][0][0], cases["in-process"][0][0]):
                r = run_as("gxtpilot", [g, "/bin/true"], env=genv, cwd=str(work))
                assert r.returncode == 0 and not r.stderr, r
            for argv, env, who in cases.values():
                for _ in range(5):
                    timed(argv, env, who)
            samples = {name: [] for name in cases}
            for _ in range(rounds):
                for name, (argv, env, who) in cases.items():
                    samples[name].append(timed(argv, env, who))
            med = {name: statistics.median(v) * 1000 for name, v in samples.items()}
            print(f"median latency over {rounds} rounds (ms), round-robin, same run:")
            for name in cases:
                q = statistics.quantiles(samples[name], n=10)
                print(f"  {name:10s} {med[name]:7.2f}   (p10 {q[0] * 1000:.2f}, p90 {q[-1] * 1000:.2f})")
            for name in ("service", "in-process", "setpriv"):
                print(f"ratio {name}/runuser = {med[name] / med['runuser']:.2f}")
            print(f"ratio service/in-process = {med['service'] / med['in-process']:.2f}")
            if seconds > 0:
                print(f"\ncalls in flight ({seconds:g} s each): calls/s, p50 ms, p99 ms")
                for width in (2, 8, 32):
                    row = {name: in_flight(cases[name], width, seconds) for name in ("service", "in-process", "runuser")}
                    for name, (rate, p50, p99) in row.items():
                        print(f"  {width:2d} {name:10s} {rate:7.1f}/s  p50 {p50:7.2f}  p99 {p99:7.2f}")
                    print(f"     throughput service/runuser = {row['service'][0] / row['runuser'][0]:.2f}, "
                          f"p99 service/runuser = {row['service'][2] / row['runuser'][2]:.2f}")
            for p in (served, local):
                records = sum(1 for _ in open(inst.audit_path(p), "rb"))
                print(f"audit records written ({'service' if p == served else 'in-process'}): {records}")
        finally:
            os.chdir("/")
            for p in (served, local):
                if p:
                    inst.remove_prefix(p)
            inst.cleanup_leftover_prefixes()
            accounts.remove()


if __name__ == "__main__":
    main()
