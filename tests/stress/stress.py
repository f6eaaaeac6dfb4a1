#!/usr/bin/python3
"""Concurrency proof for pool leases (issue 4 item 7, security.md section 6 "Burst").

Runs the INSTALLED setuid glexec (a fresh ``make install`` into a throw-away prefix) as a
real pilot account with K identities x M calls each against a pool of P real accounts, with
at most W calls in flight.  Every payload (a tiny C program) appends
``start <token> <uid> <euid> <CLOCK_REALTIME ns> <CLOCK_MONOTONIC ns>`` when it starts,
sleeps a random time, and appends the same with ``end``, to its own file.  Then, per round:

* no uid served two identities at overlapping times (interval overlap on monotonic times;
  also checked across all rounds at the end), and no uid served two identities at all
  within a round (no lease is released during a round);
* each identity got at most one uid; no identity was both granted and refused in a round;
* exactly min(K, P) identities were granted, every other call refused with 203
  ``pool_exhausted`` and its payload never ran;
* zero unexpected results (exit other than 0 / 203, payload file missing or malformed);
* audit: grant + refuse records == calls, one end record per grant, every refusal
  ``pool_exhausted``, every grant's account == the uid its payload saw;
* the lease store: one lease per granted identity, named as LCMAPS names it, on the account
  its payloads ran as; ``GridmapDir.fsck()`` clean; no process of a pool uid left.

Between rounds every lease is released (as the sweeper would), so many rounds give large
grant counts.  Accounts: names ``gxts*``, ids 47700-47999 only (pilot 47700, pool group
47701, pool uids from 47701); removed afterwards, also on failure or SIGTERM; leftovers of
a crashed run are removed at start.  Runs hold ``/var/lib/glexec-py-tests/.stress.lock``.

    /usr/bin/python3 tests/stress/stress.py --identities 64 --calls 8 --pool 32 --rounds 400

Exit: 0 no violation, 1 violations or unexpected failures, 2 setup error.
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import random
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.support import accounts as acc  # noqa: E402
from tests.support import install as inst  # noqa: E402
from tests.support.pki import TestPKI  # noqa: E402
from tests.support.runas import popen_as  # noqa: E402

ID_LO, ID_HI = 47700, 47999
PILOT, PILOT_ID = "gxtspilot", 47700
POOL, POOL_GID, POOL_UID0 = "gxtspool", 47701, 47701
MAX_POOL = ID_HI - POOL_UID0 + 1
LOCK = acc.TESTS_BASE / ".stress.lock"
DN_FMT = "/DC=test/DC=glexec-py-stress/CN=Stress User {:04d}"

PAYLOAD_C = r"""
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
static long long ns(clockid_t c) { struct timespec t; clock_gettime(c, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec; }
static int line(int fd, const char *what, const char *tok) {
    char b[256];
    long long rt = ns(CLOCK_REALTIME), mo = ns(CLOCK_MONOTONIC);
    int n = snprintf(b, sizeof b, "%s %s %u %u %lld %lld\n", what, tok,
                     (unsigned)getuid(), (unsigned)geteuid(), rt, mo);
    return write(fd, b, n) == n ? 0 : -1; }
int main(int argc, char **argv) {
    if (argc != 4) return 100;
    int fd = open(argv[2], O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) return 101;
    if (line(fd, "start", argv[1])) return 102;
    long us = atol(argv[3]);
    struct timespec s = { us / 1000000, (us % 1000000) * 1000 };
    while (nanosleep(&s, &s) != 0) {}
    if (line(fd, "end", argv[1])) return 103;
    return close(fd) ? 104 : 0;
}
"""


@dataclass
class Params:
    identities: int = 12          # K
    calls: int = 4                # M per identity per round
    pool: int = 8                 # P
    rounds: int = 1
    workers: int = 16             # calls in flight
    seed: int | None = None
    max_sleep_ms: float = 20.0    # payload sleeps uniform(0, this)
    timeout: float = 120.0        # per glexec call
    keep: bool = False            # keep the run dir (accounts are always removed)
    verbose: bool = False


@dataclass
class Summary:
    params: dict
    seed: int
    rounds: int = 0
    calls: int = 0
    grants: int = 0
    refusals: int = 0
    unexpected: int = 0
    violations: list = field(default_factory=list)     # (kind, detail), capped sample
    violation_count: int = 0
    wall_seconds: float = 0.0
    setup_seconds: float = 0.0
    calls_seconds: float = 0.0
    audit_records: int = 0
    intents: int = 0             # lease_intent records (one before every new link)

    def violate(self, kind, detail):
        self.violation_count += 1
        if len(self.violations) < 50:
            self.violations.append({"kind": kind, "detail": detail})

    def as_dict(self):
        d = dict(self.__dict__)
        d["grants_per_second"] = round(self.grants / self.calls_seconds, 1) \
            if self.calls_seconds else None
        d["calls_per_second"] = round(self.calls / self.calls_seconds, 1) \
            if self.calls_seconds else None
        return d


class Env:
    """The installed prefix, accounts, PKI and proxies of one run."""

    def __init__(self, p: Params, log):
        self.p, self.log = p, log
        self.run_dir = self.prefix = None
        self.users, self.groups = [], []

    # -- setup / teardown -------------------------------------------------------------
    def setup(self):
        p = self.p
        self.run_dir = inst.make_run_dir("stress")
        self.log(f"run dir {self.run_dir}")
        self.prefix = self.run_dir / "prefix"
        self._install()
        self._accounts()
        self._pki()
        self._policy()
        self._payload()

    def _install(self):
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "LC_ALL": "C", "HOME": "/root", "DEBIAN_FRONTEND": "noninteractive"}
        logf = self.run_dir / "make.log"
        with open(logf, "wb") as out:
            r = subprocess.run(["make", "-C", str(REPO), "install", f"PREFIX={self.prefix}"],
                               stdout=out, stderr=subprocess.STDOUT, env=env, timeout=900)
        if r.returncode != 0:
            raise SetupError(f"make install failed:\n{logf.read_text(errors='replace')[-3000:]}")
        g = inst.glexec_path(self.prefix)
        st = g.stat()
        if st.st_uid != 0 or st.st_mode & 0o7777 != 0o4755:
            raise SetupError(f"{g} is not root 4755")
        self.glexec = str(g)
        inst.install_pam_service(self.prefix)      # the shipped PAM stack (pam.service)
        self.log("installed " + self.glexec)

    def _accounts(self):
        acc.create_group(PILOT, PILOT_ID)
        self.groups.append(PILOT)
        acc.create_group(POOL, POOL_GID)
        self.groups.append(POOL)
        self.pilot = acc.create_user(PILOT, PILOT_ID, PILOT)
        self.users.append(PILOT)
        self.pool = []
        for i in range(self.p.pool):
            name = f"{POOL}{i + 1:03d}"
            self.users.append(name)
            self.pool.append(acc.create_user(name, POOL_UID0 + i, POOL))
        self.pool_uids = {a.uid: a.name for a in self.pool}
        self.log(f"created {PILOT} and {len(self.pool)} pool accounts")

    def _pki(self):
        t = time.monotonic()
        root = self.run_dir / "pki"
        root.mkdir(mode=0o700)
        self.pki = TestPKI(root / "ca")
        self.dns = [DN_FMT.format(i) for i in range(self.p.identities)]
        users = [self.pki.user(dn) for dn in self.dns]
        pdir = self.run_dir / "proxies"
        pdir.mkdir(mode=0o700)
        os.chown(pdir, self.pilot.uid, self.pilot.gid)
        self.proxies = [pdir / f"id{i:04d}.pem" for i in range(len(users))]
        with ThreadPoolExecutor(8) as ex:
            list(ex.map(lambda a: self.pki.proxy(a[0], a[1]), zip(users, self.proxies)))
        for f in self.proxies:
            os.chown(f, self.pilot.uid, self.pilot.gid)
            os.chmod(f, 0o600)
        self.log(f"{len(users)} identities (certs + proxies) in {time.monotonic() - t:.1f} s")

    def _policy(self):
        inst.install_trust_dir(self.prefix, self.pki)
        inst.write_gridmap(self.prefix, [(dn, "." + POOL) for dn in self.dns])
        self.gridmapdir = self.prefix / "var" / "lib" / "glexec-py" / "gridmapdir"
        self.gridmapdir.mkdir(mode=0o755)
        os.chmod(self.gridmapdir, 0o755)
        for a in self.pool:
            (self.gridmapdir / a.name).touch(mode=0o644)
        inst.write_config(self.prefix, callers={"users": [PILOT], "groups": []},
                          # one pilot with K identities drains the pool on purpose: the
                          # per-caller lease limit is tested in tests/leases/test_caller_limit.py
                          mapping={"gridmapdir": str(self.gridmapdir), "max_leases_per_caller": 0},
                          payload={"linger": True})
        self.audit_file = inst.audit_path(self.prefix)

    def _payload(self):
        bdir = self.run_dir / "bin"
        bdir.mkdir(mode=0o755)
        src = bdir / "payload.c"
        src.write_text(PAYLOAD_C)
        self.payload = bdir / "payload"
        subprocess.run(["gcc", "-O2", "-o", str(self.payload), str(src)], check=True,
                       capture_output=True)
        os.chmod(self.payload, 0o755)
        self.out = self.run_dir / "out"
        self.out.mkdir()
        os.chmod(self.out, 0o1777)
        self.work = self.run_dir / "work"
        self.work.mkdir()
        os.chmod(self.work, 0o755)             # not mkdir(mode=): the caller's umask may be 077
        os.chown(self.work, self.pilot.uid, self.pilot.gid)

    def teardown(self):
        errors = []
        uids = [PILOT_ID] + [POOL_UID0 + i for i in range(self.p.pool)]
        try:
            acc.kill_uid_processes(uids)
        except acc.AccountError as e:
            errors.append(str(e))
        for name in reversed(self.users):
            try:
                acc.remove_user(name)
            except acc.AccountError as e:
                errors.append(str(e))
        for name in reversed(self.groups):
            try:
                acc.remove_group(name)
            except acc.AccountError as e:
                errors.append(str(e))
        if self.prefix is not None:
            inst.remove_pam_service(self.prefix)
        if self.run_dir is not None and not self.p.keep:
            try:
                inst._safe_rmtree(self.run_dir)
            except Exception as e:   # noqa: BLE001 - report, keep cleaning
                errors.append(f"rm {self.run_dir}: {e}")
        return errors


class SetupError(RuntimeError):
    pass


def cleanup_leftovers(log=print):
    """Accounts gxt* with ids 47700-47999 and stress-* run dirs of a crashed run (call with
    the stress lock held: the range and the dirs are this tool's alone)."""
    import grp
    import pwd
    gone = []
    # not acc.cleanup_leftovers(): it also removes the standard suite's homes, which a
    # concurrent privileged session may be using.
    acc.kill_uid_processes(range(ID_LO, ID_HI + 1))
    for pw in pwd.getpwall():
        if pw.pw_name.startswith("gxts") and ID_LO <= pw.pw_uid <= ID_HI:
            acc.remove_user(pw.pw_name)
            gone.append(pw.pw_name)
    for g in grp.getgrall():
        if g.gr_name.startswith("gxts") and ID_LO <= g.gr_gid <= ID_HI:
            acc.remove_group(g.gr_name)
            gone.append("group:" + g.gr_name)
    if gone:
        log(f"removed leftovers of an earlier run: {', '.join(gone)}")
    for d in acc.TESTS_BASE.iterdir():
        if d.name.startswith("stress-") and d.is_dir() and not d.is_symlink():
            inst._safe_rmtree(d)
            log(f"removed leftover run dir {d}")


# -- one round ---------------------------------------------------------------------------

def _call(env: Env, rnd, idx, ident, sleep_us):
    out = env.out / f"r{rnd:06d}-c{idx:06d}"
    argv = [env.glexec, str(env.payload), f"id{ident:04d}", str(out), str(sleep_us)]
    t0 = time.monotonic()
    p = popen_as(PILOT, argv, env={"GLEXEC_CLIENT_CERT": str(env.proxies[ident])},
                 cwd=str(env.work), executable=env.glexec)
    try:
        _stdout, err = p.communicate(timeout=env.p.timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _stdout, err = p.communicate()
        return (idx, ident, "timeout", err, out, t0, time.monotonic())
    return (idx, ident, p.returncode, err, out, t0, time.monotonic())


def _parse_payload(path):
    """{'start': (tok, uid, euid, rt, mono), 'end': ...} or None if missing/malformed."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return None
    recs = {}
    for line in lines:
        f = line.split()
        if len(f) != 6 or f[0] not in ("start", "end") or f[0] in recs:
            return {"bad": lines}
        recs[f[0]] = (f[1], int(f[2]), int(f[3]), int(f[4]), int(f[5]))
    return recs


def _read_audit_from(path, offset):
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read()
    end = data.rfind(b"\n") + 1
    recs = [json.loads(x) for x in data[:end].split(b"\n") if x]
    return recs, offset + end


def run_round(env: Env, rnd, rng, summary: Summary, audit_offset, intervals):
    from glexec_py.core.leases import lease_name
    from glexec_py.effects.gridmapdir import GridmapDir
    p = env.p
    calls = [(i, m) for i in range(p.identities) for m in range(p.calls)]
    rng.shuffle(calls)
    jobs = [(idx, ident, int(rng.uniform(0, p.max_sleep_ms) * 1000))
            for idx, (ident, _m) in enumerate(calls)]
    t0 = time.monotonic()
    ex = ThreadPoolExecutor(p.workers)
    try:
        results = list(ex.map(lambda j: _call(env, rnd, *j), jobs))
    except BaseException:
        ex.shutdown(wait=True, cancel_futures=True)    # calls in flight finish (<= timeout)
        raise
    ex.shutdown()
    summary.calls_seconds += time.monotonic() - t0
    summary.calls += len(results)

    granted, refused = {}, set()
    uid_of_ident = {}
    idents_of_uid = {}
    n_grant = n_refuse = 0
    for idx, ident, rc, err, out, _t0, _t1 in results:
        rec = _parse_payload(out)
        if rc == 0:
            n_grant += 1
            granted.setdefault(ident, 0)
            granted[ident] += 1
            if rec is None or "bad" in rec or set(rec) != {"start", "end"}:
                summary.unexpected += 1
                summary.violate("payload_record", {"round": rnd, "call": idx, "ident": ident,
                                                   "record": rec})
                continue
            (tok, uid, euid, rt0, mo0), (tok2, uid2, euid2, rt1, mo1) = rec["start"], rec["end"]
            if tok != f"id{ident:04d}" or tok2 != tok or {uid, euid, uid2, euid2} != {uid}:
                summary.violate("payload_mismatch", {"round": rnd, "call": idx, "rec": rec})
                continue
            if uid not in env.pool_uids:
                summary.violate("uid_outside_pool", {"round": rnd, "ident": ident, "uid": uid})
            uid_of_ident.setdefault(ident, set()).add(uid)
            idents_of_uid.setdefault(uid, set()).add(ident)
            intervals.append((uid, mo0, mo1, ident, rnd))
        elif rc == 203:
            n_refuse += 1
            refused.add(ident)
            if rec is not None:
                summary.violate("refused_payload_ran", {"round": rnd, "call": idx,
                                                        "ident": ident})
        else:
            summary.unexpected += 1
            summary.violate("unexpected_exit", {"round": rnd, "call": idx, "ident": ident,
                                                "rc": rc, "stderr": err[-300:].decode(
                                                    "utf-8", "replace")})
    summary.grants += n_grant
    summary.refusals += n_refuse

    want = min(p.identities, p.pool)
    if len(granted) != want:
        summary.violate("granted_identities", {"round": rnd, "granted": len(granted),
                                               "want": want})
    for ident in set(granted) & refused:
        summary.violate("granted_and_refused", {"round": rnd, "ident": ident})
    for ident, uids in uid_of_ident.items():
        if len(uids) > 1:
            summary.violate("identity_two_uids", {"round": rnd, "ident": ident,
                                                  "uids": sorted(uids)})
    for uid, idents in idents_of_uid.items():
        if len(idents) > 1:
            summary.violate("uid_two_identities", {"round": rnd, "uid": uid,
                                                   "idents": sorted(idents)})
    for v in overlaps([iv for iv in intervals if iv[4] == rnd]):
        summary.violate("overlap", v)

    # audit records of this round
    recs, audit_offset = _read_audit_from(env.audit_file, audit_offset)
    summary.audit_records += len(recs)
    grants = [r for r in recs if r.get("event") == "grant"]
    ends = [r for r in recs if r.get("event") == "end"]
    refs = [r for r in recs if r.get("event") == "refuse"]
    summary.intents += sum(r.get("event") == "lease_intent" for r in recs)
    if len(grants) + len(refs) != len(results) or len(grants) != n_grant \
            or len(refs) != n_refuse or len(ends) != len(grants):
        summary.violate("audit_count", {"round": rnd, "calls": len(results),
                                        "grant": len(grants), "refuse": len(refs),
                                        "end": len(ends), "rc0": n_grant, "rc203": n_refuse})
    for r in refs:
        if r.get("reason") != "pool_exhausted" or r.get("exit") != 203:
            summary.violate("refuse_reason", {"round": rnd, "reason": r.get("reason"),
                                              "exit": r.get("exit")})
    uid_by_dn = {env.dns[i]: next(iter(u)) for i, u in uid_of_ident.items() if len(u) == 1}
    for r in grants:
        if r.get("dn") in uid_by_dn and r.get("uid") != uid_by_dn[r["dn"]]:
            summary.violate("audit_uid", {"round": rnd, "dn": r.get("dn"), "uid": r.get("uid"),
                                          "payload_uid": uid_by_dn[r["dn"]]})

    # lease store: bijection, names, fsck; then release everything for the next round
    left = acc.live_uid_processes(env.pool_uids)
    if left:
        summary.violate("processes_left", {"round": rnd, "pids": left[:10]})
        acc.kill_uid_processes(set(env.pool_uids))
    with GridmapDir(str(env.gridmapdir)) as gd:
        findings = gd.fsck()
        if findings:
            summary.violate("fsck", {"round": rnd, "findings": [f.as_dict() for f in findings]})
        leases = gd.leases()
        if len(leases) != len(granted):
            summary.violate("lease_count", {"round": rnd, "leases": len(leases),
                                            "granted": len(granted)})
        by_lease = {lease: acct for lease, (acct, _rec, _m) in leases.items()}
        for ident, uids in uid_of_ident.items():
            name = lease_name(env.dns[ident].encode())
            acct = by_lease.get(name)
            if acct is None or env.pool_uids.get(next(iter(uids))) != acct.decode():
                summary.violate("lease_account", {"round": rnd, "ident": ident,
                                                  "lease_account": acct and acct.decode(),
                                                  "payload_uids": sorted(uids)})
        for lease in leases:
            gd.release(lease)
        if gd.leases():
            summary.violate("release", {"round": rnd})
        findings = gd.fsck()
        if findings:
            summary.violate("fsck_after_release", {"round": rnd,
                                                   "findings": [f.as_dict() for f in findings]})
    for f in env.out.iterdir():
        f.unlink()
    summary.rounds += 1
    return audit_offset


def overlaps(intervals):
    """Pairs of intervals (uid, start, end, ident, round) on one uid with different
    identities whose [start, end] intersect (monotonic ns).  Sweep per uid by start time."""
    found = []
    by_uid = {}
    for iv in intervals:
        by_uid.setdefault(iv[0], []).append(iv)
    for uid, ivs in by_uid.items():
        ivs.sort(key=lambda x: x[1])
        active = []                       # intervals whose end >= current start
        for iv in ivs:
            active = [a for a in active if a[2] >= iv[1]]
            for a in active:
                if a[3] != iv[3]:
                    found.append({"uid": uid, "a": list(a), "b": list(iv)})
                    if len(found) >= 20:
                        return found
            active.append(iv)
    return found


# -- driver --------------------------------------------------------------------------------

class _Lock:
    def __enter__(self):
        inst.ensure_base()
        self.fd = os.open(LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        deadline = time.monotonic() + 900
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise SetupError(f"another stress run holds {LOCK}") from None
                time.sleep(0.5)

    def __exit__(self, *exc):
        os.close(self.fd)


def _on_term(signum, frame):
    raise SystemExit(f"stress: signal {signum}")


def run(p: Params, log=None) -> Summary:
    """Set up, run ``p.rounds`` rounds, check, tear down (always).  Returns the Summary."""
    if os.geteuid() != 0:
        raise SetupError("stress needs root (installs a setuid binary, creates accounts)")
    if not 1 <= p.pool <= MAX_POOL:
        raise SetupError(f"--pool must be 1..{MAX_POOL} (uids {POOL_UID0}-{ID_HI})")
    if p.identities < 1 or p.calls < 1 or p.rounds < 1 or p.workers < 1:
        raise SetupError("identities, calls, rounds and workers must be >= 1")
    log = log or (lambda m: print(f"stress: {m}", file=sys.stderr, flush=True))
    seed = p.seed if p.seed is not None else int.from_bytes(os.urandom(4), "big")
    summary = Summary(params=dict(p.__dict__), seed=seed)
    rng = random.Random(seed)
    old = signal.signal(signal.SIGTERM, _on_term) if _main_thread() else None
    t_start = time.monotonic()
    try:
        with _Lock():
            cleanup_leftovers(log)
            env = Env(p, log)
            try:
                env.setup()
                summary.setup_seconds = round(time.monotonic() - t_start, 2)
                offset = env.audit_file.stat().st_size if env.audit_file.exists() else 0
                intervals = []
                report_every = max(1, p.rounds // 20)
                for rnd in range(p.rounds):
                    offset = run_round(env, rnd, rng, summary, offset, intervals)
                    if p.verbose or (rnd + 1) % report_every == 0 or rnd + 1 == p.rounds:
                        log(f"round {rnd + 1}/{p.rounds}: grants {summary.grants}, refusals "
                            f"{summary.refusals}, violations {summary.violation_count}, "
                            f"{summary.grants / summary.calls_seconds:.1f} grants/s")
                for v in overlaps(intervals):      # across rounds, too
                    summary.violate("overlap_global", v)
            finally:
                errors = env.teardown()
                if errors:
                    log("teardown: " + "; ".join(errors))
                    summary.violate("teardown", errors)
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)
    summary.wall_seconds = round(time.monotonic() - t_start, 2)
    summary.calls_seconds = round(summary.calls_seconds, 2)
    return summary


def _main_thread():
    import threading
    return threading.current_thread() is threading.main_thread()


def format_summary(s: Summary) -> str:
    d = s.as_dict()
    p = s.params
    lines = [
        f"stress: K={p['identities']} identities x M={p['calls']} calls on P={p['pool']} "
        f"accounts, {s.rounds} rounds, {p['workers']} workers, seed {s.seed}",
        f"  calls {s.calls}: grants {s.grants}, refusals (203 pool_exhausted) {s.refusals}, "
        f"unexpected {s.unexpected}",
        f"  audit records {s.audit_records}; violations {s.violation_count}",
        f"  wall {s.wall_seconds} s (setup {s.setup_seconds} s, calls {s.calls_seconds} s); "
        f"{d['grants_per_second']} grants/s, {d['calls_per_second']} calls/s",
    ]
    for v in s.violations[:10]:
        lines.append(f"  VIOLATION {v['kind']}: {json.dumps(v['detail'])[:400]}")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--identities", "-K", type=int, default=64)
    ap.add_argument("--calls", "-M", type=int, default=8, help="calls per identity per round")
    ap.add_argument("--pool", "-P", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--workers", type=int, default=16, help="calls in flight")
    ap.add_argument("--seed", type=int)
    ap.add_argument("--max-sleep-ms", type=float, default=20.0)
    ap.add_argument("--timeout", type=float, default=120.0, help="per call (s)")
    ap.add_argument("--keep", action="store_true", help="keep the run dir")
    ap.add_argument("--json", action="store_true", help="summary as JSON on stdout")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args(argv)
    p = Params(identities=a.identities, calls=a.calls, pool=a.pool, rounds=a.rounds,
               workers=a.workers, seed=a.seed, max_sleep_ms=a.max_sleep_ms, timeout=a.timeout,
               keep=a.keep, verbose=a.verbose)
    try:
        s = run(p)
    except (SetupError, acc.AccountError, inst.InstallError) as e:
        print(f"stress: setup failed: {e}", file=sys.stderr)
        return 2
    print(json.dumps(s.as_dict(), sort_keys=True) if a.json else format_summary(s))
    return 0 if s.violation_count == 0 and s.unexpected == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
