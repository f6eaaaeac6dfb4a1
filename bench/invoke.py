#!/usr/bin/python3
"""Latency of one glexec call against runuser and sudo, measured in the same run (as root).

    glexec  : the pilot runs the installed setuid glexec /bin/true with an RFC 3820 proxy:
              full chain verification, gridmapfile mapping, PAM account check and session
              (the shipped packaging/pam.d/glexec), fsync'ed audit records, linger
    nopam   : the same with pam.enabled: false (a second prefix): the cost of PAM
    runuser : root runs runuser -u <target> /bin/true
    sudo    : root runs sudo -u <target> /bin/true
    true    : /bin/true itself (the floor)
    baseline: with GLEXEC_BENCH_BASELINE=<another source tree> (e.g. `git archive` of an older
              commit), the same call as `glexec` through that tree installed in its own
              prefix: before/after in one run

The commands are run round-robin (so machine noise hits all alike); medians and ratios are
printed. Then the engine's import profile (python -X importtime), since interpreter start-up
and imports dominate the latency. Usage: bench/invoke.py [rounds]
"""
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support import accounts as acc  # noqa: E402
from tests.support import install as inst  # noqa: E402
from tests.support.pki import TestPKI  # noqa: E402
from tests.support.runas import run_as  # noqa: E402

USER_DN = "/DC=test/DC=glexec-py/CN=Bench User"


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


def import_profile(prefix):
    libdir = prefix / "lib" / "glexec-py"
    code = ("import sys; sys.path.insert(0, %r); sys.path.append('/usr/lib/python3/dist-packages');"
            "from glexec_py import engine;"
            "from glexec_py.core import handoff, config, authz, proxychain, gridmap, envplan, audit;"
            "from glexec_py.effects import configfile, native, userfiles, accounts, payload, auditlog"
            % str(libdir))
    err = subprocess.run(["/usr/bin/python3.11", "-I", "-S", "-B", "-X", "importtime", "-c", code],
                         capture_output=True, text=True).stderr
    rows = []
    for line in err.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cum_us, name = line[len("import time:"):].split("|")
        rows.append((int(cum_us), int(self_us), name[1:].rstrip()))
    top = [r for r in rows if not r[2].startswith(" ")]  # nested imports are indented
    total = sum(r[0] for r in top)
    print(f"\nengine imports (python -X importtime, top level, total {total / 1000:.1f} ms):")
    for cum, self_us, name in sorted(top, reverse=True)[:12]:
        print(f"  {cum / 1000:7.2f} ms  {name}")


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    if os.geteuid() != 0:
        sys.exit("bench: run as root")
    with acc.session_lock():
        inst.cleanup_leftover_prefixes()
        accounts = acc.TestAccounts.create_standard()
        prefix = nopam = baseline = None
        baseline_tree = os.environ.get("GLEXEC_BENCH_BASELINE")
        try:
            prefix = inst.install_prefix()
            nopam = inst.install_prefix()
            if baseline_tree:
                baseline = inst.install_prefix(Path(baseline_tree))
            pki = TestPKI(inst.make_run_dir("pki"))
            user = pki.user(USER_DN)
            work = inst.make_run_dir("run")
            os.chmod(work, 0o755)
            proxy = pki.proxy(user, work / "x509up_bench")
            os.chown(proxy, accounts.pilot.uid, accounts.pilot.gid)
            for p, pam in ((prefix, True), (nopam, False), (baseline, True)):
                if p is None:
                    continue
                inst.install_trust_dir(p, pki)
                inst.write_gridmap(p, [(USER_DN, "gxttarget1")])
                inst.write_config(p, pam={"enabled": pam})
            glexec = str(inst.glexec_path(prefix))
            target = "gxttarget1"
            pilot = accounts.pilot
            ids = (pilot.uid, pilot.gid, sorted(set(os.getgrouplist("gxtpilot", pilot.gid))))
            genv = {"PATH": "/usr/bin:/bin", "GLEXEC_CLIENT_CERT": str(proxy), "GLEXEC_TARGET_PROXY": "/dev/null"}
            renv = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
            cases = {
                "glexec": ([glexec, "/bin/true"], genv, ids),
                "nopam": ([str(inst.glexec_path(nopam)), "/bin/true"], genv, ids),
                "runuser": (["runuser", "-u", target, "/bin/true"], renv, None),
                "sudo": (["sudo", "-u", target, "/bin/true"], renv, None),
                "true": (["/bin/true"], renv, None),
            }
            if baseline:
                cases["baseline"] = ([str(inst.glexec_path(baseline)), "/bin/true"], genv, ids)
            # warm-up (also fills the engines' config caches, once the configurations are
            # older than the two seconds in which effects.rootcache does not cache them)
            time.sleep(2.2)
            for g in [glexec, cases["nopam"][0][0]] + ([cases["baseline"][0][0]] if baseline else []):
                r = run_as("gxtpilot", [g, "/bin/true"], env=genv, cwd=str(work))
                assert r.returncode == 0 and not r.stderr, r
            for argv, env, who in cases.values():
                for _ in range(5):
                    timed(argv, env, who)
            samples = {name: [] for name in cases}
            os.chdir(work)
            for _ in range(rounds):
                for name, (argv, env, who) in cases.items():
                    samples[name].append(timed(argv, env, who))
            med = {name: statistics.median(v) * 1000 for name, v in samples.items()}
            print(f"median latency over {rounds} rounds (ms), round-robin, same run:")
            for name in cases:
                q = statistics.quantiles(samples[name], n=10)
                print(f"  {name:8s} {med[name]:7.2f}   (p10 {q[0] * 1000:.2f}, p90 {q[-1] * 1000:.2f})")
            print(f"ratio glexec/runuser = {med['glexec'] / med['runuser']:.2f}")
            print(f"ratio glexec/sudo    = {med['glexec'] / med['sudo']:.2f}")
            print(f"PAM cost: glexec - nopam = {med['glexec'] - med['nopam']:.2f} ms "
                  f"(ratio {med['glexec'] / med['nopam']:.2f})")
            if baseline:
                print(f"ratio glexec/baseline = {med['glexec'] / med['baseline']:.2f}")
            records = sum(1 for _ in open(inst.audit_path(prefix), "rb"))
            print(f"audit records written: {records}")
            import_profile(prefix)
        finally:
            os.chdir("/")
            for p in (prefix, nopam, baseline):
                if p:
                    inst.remove_prefix(p)
            inst.cleanup_leftover_prefixes()
            accounts.remove()


if __name__ == "__main__":
    main()
