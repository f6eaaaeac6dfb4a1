#!/usr/bin/python3
"""Cost of a glexec call against runuser, sudo and setpriv, measured in the same run (as root).

Each glexec case is a mode (the MODES table) x a credential x a mapping:

    modes        inproc : the installed setuid shim execs the engine (python3.11) per call
                 service: the shim asks the prefix's resident engine service, which forks a
                          child per call from its warm parent; the shim runs the plan
    credentials  rfc    : an RFC 3820 proxy: full chain verification
                 voms   : the same user's proxy with two FQANs (voms-proxy-fake) and a vomsdir:
                          the attribute certificate verified, mapped by its first FQAN
    mappings     local  : gridmapfile -> one account (LCMAPS localaccount / voms_localaccount)
                 pool   : gridmapfile -> a pool; the identity's gridmapdir lease is reused
                          (LCMAPS poolaccount / voms_poolaccount)

every call with the PAM account check and session (packaging/pam.d/glexec), fsync'ed
audit records and linger; ``nopam`` is inproc-rfc-local with pam.enabled: false (the cost of
PAM).  Peers, run as root for the same target account:

    runuser  runuser -u <target> /bin/true
    sudo     sudo -u <target> /bin/true
    setpriv  setpriv --reuid --regid --init-groups /bin/true: the identity switch with no
             policy at all, the lower bound
    true     /bin/true itself (the floor)

Sequential: all cases round-robin (machine noise hits all alike), ``--rounds``; medians, p10,
p90 and every glexec case's ratio to runuser, sudo and setpriv.  Concurrency (``--levels``,
default 2 8 32 in flight, ``--calls`` per level and command): calls/s, p50/p99 latency and CPU
per call (the children's user+system time, from getrusage; in service mode plus the
service's own and its call children's, from /proc/<pid>/stat) for glexec (rfc, local and pool)
and the peers, each command on its own, ratios to the peers printed.  The load average is
printed before and after.  Then the engine's import profile (python -X importtime).

Accounts, ids and directories: see bench/benchsite.py (``--base-dir``, ``--pilot``,
``--target``, ``--pool``, ``--uid-range``).  With ``--baseline TREE`` (another source tree,
e.g. ``git archive`` of an older commit) rfc-local and rfc-pool are also run through that
tree installed in their own prefixes: before/after in one run.

    sudo bench/invoke.py [--rounds 100] [--levels 2 8 32] [--calls 200] [--no-voms]
"""
import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import benchsite  # noqa: E402
from tests.support import accounts as acc  # noqa: E402
from tests.support import install as inst  # noqa: E402
from tests.support.pki import TestPKI  # noqa: E402

USER_DN = "/DC=test/DC=glexec-py/CN=Bench User"
VO, VOMS_HOST = "testvo", "voms.example.org"
VOMS_DN = "/DC=test/DC=glexec-py/CN=voms.example.org"
FQANS = ("/testvo/prod/Role=pilot/Capability=NULL", "/testvo/Role=NULL/Capability=NULL")
# the throw-away accounts when none are given (inside the suite's swept id range)
POOL_GROUP, POOL_GID, POOL_FIRST_UID = "gxtbpool", 47160, 47161


class InProcess:
    """The shim execs the engine for every call (the fall-back when no service answers)."""
    name = "inproc"

    def __init__(self, prefix):
        self.prefix = prefix

    def start(self):
        inst.stop_service(self.prefix)   # none may answer for this prefix

    def stop(self):
        pass


class Service(InProcess):
    """The prefix's resident engine service (glexec_py/service.py --bind) decides; the shim
    runs the plan."""
    name = "service"

    def start(self):
        self.pid = inst.start_service(self.prefix).pid

    def cpu(self):
        """The service's CPU seconds so far: its own and its reaped call children's
        (/proc/<pid>/stat utime, stime, cutime, cstime): a call's work the caller's
        getrusage does not see."""
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")

    def stop(self):
        inst.stop_service(self.prefix)


MODES = {"inproc": InProcess, "service": Service}


# --- accounts -----------------------------------------------------------------------------

class Site:
    """The accounts a run uses: made here (gxt*) or the site's own (--pilot/--target/--pool)."""

    def __init__(self, args):
        self.made = None
        self.pool_made = []
        if benchsite.existing_accounts(args):
            self.pilot = acc.Account.lookup(args.pilot)
            self.target = args.target
            self.pool = list(args.pool or [])
        else:
            self.made = acc.TestAccounts.create_standard()
            self.pilot = self.made.pilot
            self.target = self.made.target1.name
            acc.create_group(POOL_GROUP, POOL_GID)
            for i in range(2):
                self.pool_made.append(acc.create_user(f"{POOL_GROUP}{i + 1:02d}", POOL_FIRST_UID + i, POOL_GROUP))
            self.pool = [a.name for a in self.pool_made]
        self.pool_name = self.pool[0].rstrip("0123456789") if self.pool else None
        tpw = acc.Account.lookup(self.target)
        self.target_ids = (tpw.uid, tpw.gid)
        self.pilot_ids = (self.pilot.uid, self.pilot.gid, sorted(self.pilot.groups))

    def remove(self):
        if self.made is None:
            return
        for a in self.pool_made:
            acc.remove_user(a.name)
        try:
            acc.remove_group(POOL_GROUP)
        except acc.AccountError:
            pass
        self.made.remove()


# --- one glexec installation per (mode, credential, mapping) --------------------------------

def install_case(site, pki, run, args, mapping, pam=True, tree=None):
    prefix = inst.install_prefix(Path(tree)) if tree else inst.install_prefix()
    inst.install_trust_dir(prefix, pki)
    etc = prefix / "etc" / "glexec-py"
    vomsdir = etc / "vomsdir"
    (vomsdir / VO).mkdir(parents=True, mode=0o755)
    os.chmod(vomsdir, 0o755)
    (vomsdir / VO / f"{VOMS_HOST}.lsc").write_text(f"{VOMS_DN}\n{pki.ca_dn}\n")
    low, high = benchsite.uid_range(args)
    mapping_cfg = {"min_uid": low, "max_uid": high}
    if mapping == "local":
        account = site.target
    else:
        gridmapdir = etc / "gridmapdir"
        gridmapdir.mkdir(mode=0o755)
        for name in site.pool:
            (gridmapdir / name).touch(mode=0o644)
        mapping_cfg["gridmapdir"] = str(gridmapdir)
        account = "." + site.pool_name
    inst.write_gridmap(prefix, [(FQANS[0], account), (USER_DN, account)])
    inst.write_config(prefix, pam={"enabled": pam}, credentials={"vomsdir": str(vomsdir)}, mapping=mapping_cfg,
                      callers={"users": [site.pilot.name], "groups": []})
    return prefix


def make_voms_proxy(pki, user, out, home):
    host = pki.user(VOMS_DN)
    cmd = ["voms-proxy-fake", "-q", "-cert", str(user.cert), "-key", str(user.key), "-certdir", str(pki.ca_dir),
           "-hostcert", str(host.cert), "-hostkey", str(host.key), "-voms", VO, "-uri", f"{VOMS_HOST}:15000",
           "-rfc", "-out", str(out)]
    for f in FQANS:
        cmd += ["-fqan", f]
    subprocess.run(cmd, check=True, capture_output=True, env={"PATH": "/usr/bin:/bin", "HOME": str(home)})
    return out


# --- measuring ----------------------------------------------------------------------------

def run_once(argv, env, ids, expect=None):
    kw = {}
    if ids:
        uid, gid, groups = ids
        kw = dict(user=uid, group=gid, extra_groups=groups)
    t0 = time.perf_counter()
    out = subprocess.PIPE if expect else subprocess.DEVNULL
    p = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.PIPE, **kw)
    dt = time.perf_counter() - t0
    if p.returncode != 0 or (expect is not None and p.stdout.strip().decode() not in expect):
        raise SystemExit(f"bench: {argv[0]} failed ({p.returncode}): {p.stdout!r} {p.stderr!r}")
    return dt


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def concurrent(argv, env, ids, in_flight, calls, server_cpu=None):
    """``calls`` runs of ``argv`` with ``in_flight`` at a time: (calls/s, latencies, CPU/call).
    ``server_cpu``: a callable giving the CPU seconds a server spent for the calls."""
    latencies, lock, left = [], threading.Lock(), [calls]

    def worker():
        while True:
            with lock:
                if not left[0]:
                    return
                left[0] -= 1
            dt = run_once(argv, env, ids)
            with lock:
                latencies.append(dt)
    server0 = server_cpu() if server_cpu else 0.0
    cpu0, t0 = children_cpu(), time.perf_counter()
    workers = [threading.Thread(target=worker) for _ in range(in_flight)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    wall, cpu = time.perf_counter() - t0, children_cpu() - cpu0
    if server_cpu:
        cpu += server_cpu() - server0
    if len(latencies) != calls:
        raise SystemExit("bench: a concurrent call failed")
    return calls / wall, latencies, cpu / calls


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def import_profile(prefix):
    libdir = prefix / "lib" / "glexec-py"
    code = ("import sys; sys.path.insert(0, %r); from glexec_py import engine;"
            "sys.path.append('/usr/lib/python3/dist-packages');"
            "from glexec_py.core import handoff, config, authz, proxychain, gridmap, envplan, audit, mapping, leases;"
            "from glexec_py.effects import configfile, native, userfiles, accounts, payload, auditlog, leasestore,"
            " gridmapdir, vomsdir, pam" % str(libdir))
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
    print(f"\nengine imports (python -X importtime, local + pool + VOMS path, top level, total {total / 1000:.1f} ms):")
    for cum, self_us, name in sorted(top, reverse=True)[:12]:
        print(f"  {cum / 1000:7.2f} ms  {name}")
    heavy = sorted({r[2].strip() for r in rows} & {"json", "re", "enum", "threading", "hashlib", "base64"})
    print(f"  heavy stdlib modules loaded: {', '.join(heavy) or 'none'}")


def loadavg(when):
    one, five, fifteen = os.getloadavg()
    print(f"load average {when}: {one:.2f} {five:.2f} {fifteen:.2f} ({os.cpu_count()} CPUs)")


# --- the run ------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=100, help="sequential round-robin rounds")
    ap.add_argument("--levels", type=int, nargs="*", default=[2, 8, 32], help="calls in flight (none: skip)")
    ap.add_argument("--calls", type=int, default=200, help="calls per concurrency level and command")
    ap.add_argument("--modes", nargs="+", choices=sorted(MODES), default=sorted(MODES))
    ap.add_argument("--no-voms", action="store_true", help="skip the VOMS cases")
    ap.add_argument("--baseline", metavar="TREE", default=os.environ.get("GLEXEC_BENCH_BASELINE"),
                    help="another source tree: rfc-local and rfc-pool through it too")
    benchsite.add_base_dir(ap)
    benchsite.add_accounts(ap)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench: run as root")
    custom_base = Path(args.base_dir).resolve() != Path(inst.TESTS_BASE)
    inst.use_base(benchsite.base_dir(args))
    loadavg("before")
    with acc.session_lock():
        if not custom_base:
            inst.cleanup_leftover_prefixes()
        site = Site(args)
        prefixes, modes, work, pki_dir = [], [], None, None
        try:
            if not site.pool:
                print("no --pool accounts: the pool cases are skipped")
            pki_dir = inst.make_run_dir("pki")
            pki = TestPKI(pki_dir)
            user = pki.user(USER_DN)
            work = inst.make_run_dir("run")
            os.chmod(work, 0o755)
            creds = {"rfc": pki.proxy(user, work / "x509up_rfc")}
            if not args.no_voms:
                creds["voms"] = make_voms_proxy(pki, user, work / "x509up_voms", work)
            for c in creds.values():
                os.chown(c, site.pilot.uid, site.pilot.gid)
                os.chmod(c, 0o600)
            mappings = ["local"] + (["pool"] if site.pool else [])
            # one prefix per mode and mapping: a service answers every call of its prefix
            installed = {(mode, m): install_case(site, pki, work, args, m) for mode in args.modes for m in mappings}
            prefixes += installed.values()
            nopam = install_case(site, pki, work, args, "local", pam=False)
            prefixes.append(nopam)
            baseline = {m: install_case(site, pki, work, args, m, tree=args.baseline)
                        for m in (mappings if args.baseline else ())}
            prefixes += baseline.values()

            def genv(cred):
                return {"PATH": "/usr/bin:/bin", "GLEXEC_CLIENT_CERT": str(creds[cred]),
                        "GLEXEC_TARGET_PROXY": "/dev/null"}
            renv = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
            tuid, tgid = site.target_ids
            cases, expect, servers = {}, {}, {}
            for (mode_name, mapping), prefix in installed.items():
                mode = MODES[mode_name](prefix)
                mode.start()
                modes.append(mode)
                if isinstance(mode, Service):
                    servers.update({f"{mode_name}-{cred}-{mapping}": mode.cpu for cred in creds})
                for cred in creds:
                    name = f"{mode_name}-{cred}-{mapping}"
                    cases[name] = ([str(inst.glexec_path(prefix)), "/usr/bin/id", "-un"], genv(cred),
                                   site.pilot_ids)
                    expect[name] = {site.target} if mapping == "local" else set(site.pool)
            modes.append(InProcess(nopam))
            modes[-1].start()
            cases["nopam"] = ([str(inst.glexec_path(nopam)), "/bin/true"], genv("rfc"), site.pilot_ids)
            for mapping, prefix in baseline.items():
                cases[f"baseline-rfc-{mapping}"] = ([str(inst.glexec_path(prefix)), "/bin/true"], genv("rfc"),
                                                    site.pilot_ids)
            peers = {
                "runuser": (["runuser", "-u", site.target, "/bin/true"], renv, None),
                "sudo": (["sudo", "-u", site.target, "/bin/true"], renv, None),
                "setpriv": (["setpriv", f"--reuid={tuid}", f"--regid={tgid}", "--init-groups", "/bin/true"],
                            renv, None),
                "true": (["/bin/true"], renv, None),
            }
            os.chdir(work)
            # the mapping is checked once (id -un), then every call runs /bin/true
            time.sleep(2.2)  # configurations older than rootcache's 2 s: cached from the first call on
            for name, (argv, env, ids) in list(cases.items()):
                if name in expect:
                    run_once(argv, env, ids, expect=expect[name])
                    cases[name] = ([argv[0], "/bin/true"], env, ids)
            cases.update(peers)
            for argv, env, ids in cases.values():
                for _ in range(5):
                    run_once(argv, env, ids)
            samples = {name: [] for name in cases}
            for _ in range(args.rounds):
                for name, (argv, env, ids) in cases.items():
                    samples[name].append(run_once(argv, env, ids))
            report_sequential(samples, args.rounds)
            if args.levels:
                chosen = [n for n in ("inproc-rfc-local", "inproc-rfc-pool") if n in cases]
                chosen += [n for n in cases if n.startswith("service-rfc-")]
                report_concurrency({n: cases[n] for n in chosen + ["runuser", "sudo", "setpriv"]},
                                   args.levels, args.calls, servers)
            for (mode_name, mapping), prefix in installed.items():
                records = sum(1 for _ in open(inst.audit_path(prefix), "rb"))
                print(f"audit records written ({mode_name}-{mapping} prefix): {records}")
            import_profile(next(iter(installed.values())))
        finally:
            os.chdir("/")
            for mode in modes:
                mode.stop()
            for p in prefixes:
                inst.remove_prefix(p)
            for d in (work, pki_dir):
                if d:
                    shutil.rmtree(d, ignore_errors=True)
            site.remove()
    loadavg("after")


def report_sequential(samples, rounds):
    med = {name: statistics.median(v) * 1000 for name, v in samples.items()}
    print(f"\nmedian latency over {rounds} rounds (ms), round-robin, same run:")
    for name in samples:
        q = statistics.quantiles(samples[name], n=10)
        print(f"  {name:22s} {med[name]:7.2f}   (p10 {q[0] * 1000:.2f}, p90 {q[-1] * 1000:.2f})")
    print("ratios (median / peer's median):")
    print(f"  {'':22s} {'/runuser':>9s} {'/sudo':>9s} {'/setpriv':>9s}")
    for name in samples:
        if name in ("runuser", "sudo", "setpriv", "true"):
            continue
        print(f"  {name:22s} {med[name] / med['runuser']:9.2f} {med[name] / med['sudo']:9.2f} "
              f"{med[name] / med['setpriv']:9.2f}")
    print(f"  {'sudo':22s} {med['sudo'] / med['runuser']:9.2f}")
    print(f"  {'setpriv':22s} {med['setpriv'] / med['runuser']:9.2f}")
    for name, target in (("service-rfc-local", 1.3), ("service-rfc-pool", 1.3), ("inproc-rfc-local", 3.0),
                         ("inproc-rfc-pool", 3.0)):
        if name in med:
            r = med[name] / med["runuser"]
            print(f"target {name}/runuser <= {target}: {r:.2f} ({'meets' if r <= target else 'MISSES'})")
    for cred_map in ("rfc-local", "rfc-pool", "voms-local", "voms-pool"):
        if f"service-{cred_map}" in med and f"inproc-{cred_map}" in med:
            print(f"ratio service-{cred_map}/inproc-{cred_map} = "
                  f"{med[f'service-{cred_map}'] / med[f'inproc-{cred_map}']:.2f}")
    if "nopam" in med and "inproc-rfc-local" in med:
        print(f"PAM cost: inproc-rfc-local - nopam = {med['inproc-rfc-local'] - med['nopam']:.2f} ms")
    for mapping in ("local", "pool"):
        if f"baseline-rfc-{mapping}" in med:
            print(f"ratio inproc-rfc-{mapping}/baseline-rfc-{mapping} = "
                  f"{med[f'inproc-rfc-{mapping}'] / med[f'baseline-rfc-{mapping}']:.2f} "
                  f"({med[f'inproc-rfc-{mapping}'] - med[f'baseline-rfc-{mapping}']:+.2f} ms)")


def report_concurrency(cases, levels, calls, servers):
    print(f"\nconcurrency: {calls} calls per level and command, each command on its own")
    print(f"  {'in flight':>9s} {'command':22s} {'calls/s':>8s} {'p50 ms':>8s} {'p99 ms':>8s} {'CPU ms/call':>11s}"
          f" {'thru/runuser':>12s} {'p99/runuser':>11s} {'thru/sudo':>9s} {'thru/setpriv':>12s}")
    for level in levels:
        rows = {}
        for name, (argv, env, ids) in cases.items():
            rate, lat, cpu = concurrent(argv, env, ids, level, calls, servers.get(name))
            rows[name] = (rate, pct(lat, 50), pct(lat, 99), cpu)
        ref = rows["runuser"]
        for name, (rate, p50, p99, cpu) in rows.items():
            print(f"  {level:9d} {name:22s} {rate:8.1f} {p50 * 1000:8.2f} {p99 * 1000:8.2f} {cpu * 1000:11.2f}"
                  f" {rate / ref[0]:12.2f} {p99 / ref[2]:11.2f} {rate / rows['sudo'][0]:9.2f}"
                  f" {rate / rows['setpriv'][0]:12.2f}")
        if level == 32:
            for name in (n for n in rows if n.startswith("service-")):
                thru, tail = rows[name][0] / ref[0], rows[name][2] / ref[2]
                print(f"  target at 32 in flight, {name}: throughput/runuser >= 0.5: {thru:.2f} "
                      f"({'meets' if thru >= 0.5 else 'MISSES'}); p99/runuser <= 3: {tail:.2f} "
                      f"({'meets' if tail <= 3 else 'MISSES'})")


if __name__ == "__main__":
    main()
