"""prune-users apply step: resolve the scope, read the lease store, scan, plan, signal.

Runs as: root (the whole module; ``kill_uid_all`` forks a child that becomes the pool uid).

Signals go **only** through pidfds: ``os.pidfd_open(pid)`` -> re-read /proc/PID (stat,
status, cgroup) -> compare start time and uids with the plan and re-decide with the
planner -> confirm the pidfd's process is still alive (``pidfd_send_signal(fd, 0)``; so the
/proc read above was of *that* process, its pid could not have been reused meanwhile) ->
audit record -> ``pidfd_send_signal(fd, sig)``.  A pid whose process died and was reused
is never hit: the pidfd refers to the dead one and the kernel answers ESRCH.

Rounds (security.md 4.I case 34, batch.md section 8):

1. scan + plan; ``--max-kills`` cap on the first plan (over the cap: nothing is signalled);
2. first signal (``signal``, SIGTERM by default) to every stray, wait up to ``term_grace``
   seconds on the pidfds (a pidfd polls readable when its process exits);
3. up to ``max_rounds`` kill rounds within ``time_limit`` seconds: rescan (no young-process
   grace any more for uids already being purged), SIGSTOP every stray (a stopped process
   cannot fork), rescan and stop new ones until a pass finds none (so fork bombs, double
   forks and setsid children are frozen), then SIGKILL all of them.  With ``kill_all``, a
   uid whose latest *full* scan shows no kept process and no lease protection is instead
   killed in one step by a child that fully becomes that uid (setgroups([]), setresgid,
   setresuid via ``native.switch_identity``, verified) and calls ``kill(-1, SIGKILL)``;
   the child is watched through its pidfd and SIGKILLed and retried if a same-uid process
   stops it.  Never with a real uid of 0 (``switch_identity`` verifies r/e/s uid).
4. final scan: strays still alive are "survivors" (exit 3); zombies are reported, not
   counted (they are dead; init or their parent reaps them).

State record for the lease lifecycle, one per pool account *name* on every non-dry run,
written atomically (tmp + rename, root 0600, directory ``<state_dir>/prune/`` root 0700):
``<state_dir>/prune/<account>.json`` = one JSON object::

    {"v": 1, "account": "pool001", "uid": 50001, "time": 1700000000.123,
     "boot_id": "...", "result": "no_processes" | "processes" | "survivors" | "spared",
     "kept": 2, "killed": 3, "survivors": [pid, ...], "zombies": 0}

``no_processes``: the final scan saw no live process with that uid (as r/e/s uid) at
``time``; ``processes``: only legitimate (kept) ones; ``survivors``: strays outlived the
bound; ``spared``: the account was lease-protected, nothing was done.  The lease store
(draining -> free) should accept ``no_processes`` only if ``time`` is after the moment the
lease was set draining and ``boot_id`` is the current boot.

Lock: ``<state_dir>/prune/.lock`` (flock, non-blocking): a second run refuses.
"""
import errno
import fcntl
import json
import os
import pwd
import select
import signal
import time

from glexec_tools.prune import plan as core
from glexec_py.core import audit
from glexec_tools import front
from glexec_tools.common import procfs as procscan
from glexec_py.errors import SystemFault


class PruneError(Exception):
    """Refusal before anything was signalled (exit 2): config, scope, lock, lease store."""


# --- scope and leases -----------------------------------------------------------------

def resolve_scope(cfg, passwd=None):
    """Runs as: any user (reads passwd). ``core.Scope`` from the configuration: pool
    names (``.prefix`` = every account named prefix + digits), spared accounts.  Refuses
    (PruneError) a prefix or name that resolves to nothing, and every scope check of
    ``core.check_scope``."""
    entries = passwd if passwd is not None else pwd.getpwall()
    by_name = {e.pw_name: e for e in entries}
    cands = {}
    gids = {}
    for item in cfg.pool_accounts:
        if item.startswith("."):
            prefix = item[1:]
            found = [e for e in entries if e.pw_name.startswith(prefix)
                     and e.pw_name[len(prefix):].isdigit() and e.pw_name[len(prefix):].isascii()]
            if not found:
                raise PruneError(f"pool '{core.escape(item)}' has no accounts in passwd")
        else:
            if item not in by_name:
                raise PruneError(f"pool account '{core.escape(item)}' does not exist")
            found = [by_name[item]]
        for e in found:
            cands[e.pw_uid] = e.pw_name
            gids[e.pw_uid] = e.pw_gid
    for e in entries:                       # names for uids of the ranges (state records)
        for lo, hi in cfg.uid_ranges:
            if lo <= e.pw_uid <= hi and e.pw_uid not in cands:
                cands[e.pw_uid] = e.pw_name
                gids[e.pw_uid] = e.pw_gid
    spared = {}
    for name in cfg.spare_accounts:
        if name not in by_name:
            raise PruneError(f"spared account '{core.escape(name)}' does not exist")
        spared[by_name[name].pw_uid] = name
    try:
        core.check_scope(cfg, cands, spared)
    except ValueError as e:
        raise PruneError(str(e)) from None
    scope = core.Scope(cands, spared, {}, (), cfg.uid_ranges, cfg.min_uid)
    return scope, gids


def lease_protection(cfg, scope, now):
    """Runs as: root. ({uid: reason} of lease-protected uids, {uid: lease state}) from
    ``GridmapDir(cfg.gridmapdir).leases()``.  Protected: a lease in state "leased" granted or
    used (mtime) less than ``lease_fresh`` seconds ago, or any "leased" lease with
    ``spare_leased``.  "draining" leases are never protected: that is the state in which the
    account waits for the pruner.  Any failure reading the store raises PruneError (no lease
    knowledge, no kill)."""
    lease_db = getattr(cfg, "lease_db", None)
    if not cfg.gridmapdir and not lease_db:
        return {}, {}
    from glexec_tools.common.leasestore import open_store
    by_name = {n: u for u, n in scope.candidates.items() if n}
    try:
        with open_store(cfg.gridmapdir, lease_db) as gd:
            leases = gd.leases()
    except (SystemFault, OSError, ValueError) as e:
        raise PruneError(f"cannot read the lease store {'(database)' if lease_db else cfg.gridmapdir}: "
                         f"{getattr(e, 'message', e)}") from None
    protected, states = {}, {}
    for _lease, (account, rec, mtime) in leases.items():
        name = bytes(account).decode("latin-1") if isinstance(account, (bytes, bytearray)) \
            else account
        uid = by_name.get(name)
        if uid is None:
            continue
        state = (rec or {}).get("state", "leased")
        states[uid] = state
        if state != "leased":
            continue
        since = (rec or {}).get("since") or 0
        last = max(x for x in (mtime, since, 0) if isinstance(x, (int, float)))
        age = now - last
        if cfg.spare_leased:
            protected[uid] = f"account {core.escape(name)} holds a lease (spare_leased)"
        elif age < cfg.lease_fresh:
            protected[uid] = (f"lease of {core.escape(name)} granted/used {max(age, 0):.0f} s ago "
                              f"(< lease_fresh {cfg.lease_fresh} s)")
    return protected, states


# --- helpers ----------------------------------------------------------------------------

def _poll_exit(pfds, timeout):
    """Wait until every pidfd in ``pfds`` is readable (process exited) or ``timeout``."""
    deadline = time.monotonic() + timeout
    pending = set(pfds)
    while pending:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        po = select.poll()
        for fd in pending:
            po.register(fd, select.POLLIN)
        for fd, _ev in po.poll(max(1, int(left * 1000))):
            pending.discard(fd)
    return pending


def _exited(pfd):
    po = select.poll()
    po.register(pfd, select.POLLIN)
    return bool(po.poll(0))


class Pruner:
    """One run of prune-users.  ``run()`` returns a report dict (see ``report_json``);
    ``exit_code`` after it: 0 nothing to do, 1 strays found and all gone, 3 some survived
    (or the cap/audit stopped the run).  Refusals before any signal raise PruneError."""

    def __init__(self, cfg, *, dry_run=False, proc="/proc", passwd=None, clock=time.time,
                 log=None, list_keeps=True):
        self.cfg = cfg
        self.dry_run = dry_run
        self.list_keeps = list_keeps   # False: the report's "plan" lists kill decisions only
        self.proc = proc
        self.clock = clock
        self.log = log or (lambda msg: None)
        self.scope, self.gids = resolve_scope(cfg, passwd)
        self.names = tuple(cfg.daemons) + (("sshd",) if cfg.spare_ssh else ())
        self.sig = getattr(signal, cfg.signal)
        self.events = []           # per-process actions: dicts
        self.pfds = {}             # pid -> (pidfd, starttime) of processes we signalled
        self.audited = set()       # (pid, starttime) with an audit record
        self.purged = set()        # uids with strays signalled in this run
        self.run_id = f"{os.getpid()}-{int(clock() * 1000)}"
        self.boot_id = procscan.boot_id(proc)
        self.exit_code = 0
        self.stop_reason = None
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != hard:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
                soft = hard
            except (ValueError, OSError):
                pass
        self.fd_budget = max(16, min(soft, 1 << 20) - 64)   # pidfds kept for waiting

    # --- scanning and planning -----------------------------------------------------------

    def _scope_now(self):
        protected, states = lease_protection(self.cfg, self.scope, self.clock())
        self.lease_states = states
        return self.scope.with_leases(protected, self.purged)

    def plan(self, full=False):
        """Runs as: root. (snapshot, scope, plan) with every kill decision confirmed on
        complete facts (status + cgroup re-read, re-planned)."""
        scope = self._scope_now()
        snap = procscan.scan(uids=scope, names=self.names, full=full, proc=self.proc)
        plan = core.plan_prune(snap, self.cfg, scope)
        for _ in range(4):
            todo = [d.proc.pid for d in plan.unconfirmed]
            if not todo:
                break
            procscan.complete(snap, todo, proc=self.proc)
            plan = core.plan_prune(snap, self.cfg, scope)
        else:
            plan = core.Plan([d if d.proc.full or d.action != core.KILL else
                              core.Decision(d.proc, d.account, core.KEEP, "unconfirmed",
                                            "could not be re-read in full: next round")
                              for d in plan.decisions])
        return snap, scope, plan

    # --- signalling ------------------------------------------------------------------------

    def _audit(self, d, p, cmdline, sig_name, round_no, how="pidfd"):
        # front.admin_record: the time (ISO, read under the append lock: file order = time
        # order), host and admin, as every audit record has them (the back-map reads them)
        rec = front.admin_record(self.cfg.audit_file, "prune-users", "prune_kill", {
            "run": self.run_id, "boot_id": self.boot_id,
            "pid": p.pid, "ppid": p.ppid, "uid": p.ruid, "euid": p.euid, "suid": p.suid,
            "account": d.account, "starttime": p.starttime, "comm": p.comm,
            "cmdline": cmdline, "reason": d.reason, "why": d.text,
            "signal": sig_name, "round": round_no, "via": how})
        if self.cfg.syslog:
            try:
                import syslog
                syslog.openlog("prune-users", syslog.LOG_PID, syslog.LOG_AUTHPRIV)
                syslog.syslog(syslog.LOG_NOTICE, audit.encode(rec).decode("ascii").rstrip())
                syslog.closelog()
            except Exception:       # best effort: the JSON file is the record that counts
                pass

    def signal_verified(self, d, snap, scope, sig, round_no):
        """Runs as: root. Signal one planned process through a pidfd after re-checking it.
        Returns "sent", "gone", "changed" (start time/uids differ: not the planned process)
        or "spared:<reason>" (the re-check now keeps it)."""
        pid = d.proc.pid
        key = (pid, d.proc.starttime)
        held = self.pfds.get(pid)
        if held is not None and held[1] != d.proc.starttime:
            os.close(held[0])
            self.pfds.pop(pid)
            held = None
        try:
            pfd = held[0] if held else os.pidfd_open(pid)
        except ProcessLookupError:
            return "gone"
        except OSError as e:
            if e.errno == errno.ESRCH:
                return "gone"
            raise
        keep_fd = False
        try:
            p = procscan.read_proc(pid, want_cgroup=True, proc=self.proc)
            if p is None:
                return "gone"
            if not p.same_process(d.proc):
                return "changed"
            cmdline = procscan.read_cmdline(pid, proc=self.proc) if key not in self.audited \
                else None
            try:
                signal.pidfd_send_signal(pfd, 0)         # alive => the reads above were its
            except ProcessLookupError:
                return "gone"
            nd = core.decide_one(p, snap, self.cfg, scope)
            if nd.action != core.KILL:
                return "spared:" + nd.reason
            sig_name = signal.Signals(sig).name
            if key not in self.audited:
                self._audit(nd, p, cmdline, sig_name, round_no)     # no record, no kill
                self.audited.add(key)
                self.events.append({**nd.as_dict(), "cmdline": [core.escape(a) for a in cmdline],
                                    "signal": sig_name, "round": round_no})
            try:
                signal.pidfd_send_signal(pfd, sig)
            except ProcessLookupError:
                return "gone"
            self.purged.update(u for u in p.uids if scope.is_candidate(u))
            if held is not None or len(self.pfds) < self.fd_budget:
                self.pfds[pid] = (pfd, d.proc.starttime)
                keep_fd = True
            return "sent"
        finally:
            if not keep_fd and held is None:
                os.close(pfd)

    def _close_pfds(self):
        for fd, _st in self.pfds.values():
            try:
                os.close(fd)
            except OSError:
                pass
        self.pfds.clear()

    # --- kill(-1) as the pool uid ------------------------------------------------------------

    def kill_uid_all(self, uid, targets, round_no, tries=3, wait=2.0):
        """Runs as: root; forks a child that fully becomes ``uid`` (setgroups([]),
        setresgid, setresuid, verified by ``native.switch_identity``) and calls
        ``kill(-1, SIGKILL)``.  Only called for a uid with no kept process in a full scan
        and no lease protection.  Returns True if a child completed kill(-1)."""
        from glexec_py.effects import native
        if uid == 0 or uid < self.cfg.min_uid or uid in self.scope.spared:
            raise AssertionError("kill(-1) refused for a root/system uid")
        gid = self.gids.get(uid, uid)
        for d in targets:
            key = (d.proc.pid, d.proc.starttime)
            if key not in self.audited:
                cmd = procscan.read_cmdline(d.proc.pid, proc=self.proc)
                self._audit(d, d.proc, cmd, "SIGKILL", round_no, how="kill(-1) as uid")
                self.audited.add(key)
                self.events.append({**d.as_dict(), "cmdline": [core.escape(a) for a in cmd],
                                    "signal": "SIGKILL", "round": round_no,
                                    "via": "kill(-1) as uid"})
        for _ in range(tries):
            r, w = os.pipe()
            child = os.fork()
            if child == 0:                                     # pragma: no cover (child)
                try:
                    os.close(r)
                    native.switch_identity(uid, gid, [])
                    if os.getresuid() != (uid, uid, uid) or 0 in os.getresuid():
                        os._exit(3)
                    os.kill(-1, signal.SIGKILL)
                    os.write(w, b"k")
                    os._exit(0)
                except BaseException:
                    os._exit(4)
            os.close(w)
            pfd = os.pidfd_open(child)
            try:
                done = not _poll_exit([pfd], wait)
                if not done:        # stopped or blocked by a same-uid process: kill, retry
                    signal.pidfd_send_signal(pfd, signal.SIGKILL)
                os.waitpid(child, 0)
                ok = os.read(r, 1) == b"k"
            finally:
                os.close(pfd)
                os.close(r)
            if ok:
                self.purged.add(uid)
                return True
        return False

    # --- the run -------------------------------------------------------------------------

    def run(self):
        cfg = self.cfg
        t0 = time.monotonic()
        snap, scope, plan = self.plan()
        self.first_plan = plan
        kills = plan.kills
        with core.gc_paused():
            rows = [d.as_dict() for d in plan.decisions
                    if self.list_keeps or d.action == core.KILL]
        # the scan's clock: ages and start times of the rows for people (starttime is ticks)
        report = {"dry_run": self.dry_run, "plan": rows,
                  "scan": {"time": round(self.clock(), 3), "uptime": snap.uptime, "hz": snap.hz}}
        if self.dry_run:
            for d in report["plan"]:
                if d["action"] == core.KILL:
                    d["cmdline"] = [core.escape(a) for a in
                                    procscan.read_cmdline(d["pid"], proc=self.proc)]
            self.exit_code = 1 if kills else 0
            report["would_kill"] = len(kills)
            return report
        if len(kills) > cfg.max_kills:
            self.exit_code = 3
            self.stop_reason = (f"{len(kills)} strays exceed max_kills {cfg.max_kills}: "
                                "nothing was signalled")
            report["stopped"] = self.stop_reason
            return report
        found_any = bool(kills)
        try:
            if kills and self.sig != signal.SIGKILL:
                for d in kills:
                    self.signal_verified(d, snap, scope, self.sig, 0)
                live = [fd for fd, _ in self.pfds.values() if not _exited(fd)]
                if live and cfg.term_grace:
                    _poll_exit(live, cfg.term_grace)
            rounds = 0
            while rounds < cfg.max_rounds and time.monotonic() - t0 < cfg.time_limit:
                rounds += 1
                snap, scope, plan = self.plan()
                kills = plan.kills
                if not kills:
                    break
                found_any = True
                self._kill_round(snap, scope, plan, rounds, t0)
            self.rounds = rounds
        except SystemFault as e:       # audit write failed: stop signalling at once
            self.stop_reason = f"audit record could not be written ({e.message}): stopped"
        finally:
            self._close_pfds()
        snap, scope, plan = self.plan()
        report.update(self._final(snap, scope, plan, found_any))
        return report

    def _kill_round(self, snap, scope, plan, round_no, t0):
        cfg = self.cfg
        kills = plan.kills
        by_uid = {}
        for d in kills:
            by_uid.setdefault(next(u for u in d.proc.uids if scope.is_candidate(u)), []).append(d)
        if cfg.kill_all:
            fsnap, fscope, fplan = self.plan(full=True)
            busy = fplan.uids_with_kept()
            for uid in list(by_uid):
                if uid in busy or uid in fscope.protected or uid in self.scope.spared:
                    continue
                targets = [d for d in fplan.kills if uid in d.proc.uids]
                if targets and self.kill_uid_all(uid, targets, round_no):
                    del by_uid[uid]
        stopped = set()
        todo = [d for ds in by_uid.values() for d in ds]
        for _ in range(8):                        # freeze: stop until a pass finds no new one
            new = [d for d in todo if (d.proc.pid, d.proc.starttime) not in stopped]
            if not new:
                break
            for d in new:
                if self.signal_verified(d, snap, scope, signal.SIGSTOP, round_no) == "sent":
                    stopped.add((d.proc.pid, d.proc.starttime))
            if time.monotonic() - t0 > cfg.time_limit:
                break
            snap, scope, plan = self.plan()
            todo = [d for d in plan.kills if d.proc.state not in ("T", "t")
                    or (d.proc.pid, d.proc.starttime) not in stopped]
        for pid, (pfd, st) in list(self.pfds.items()):
            if (pid, st) in stopped or pid in {d.proc.pid for d in todo}:
                try:
                    signal.pidfd_send_signal(pfd, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for d in todo:                            # strays of this pass not yet stopped
            self.signal_verified(d, snap, scope, signal.SIGKILL, round_no)
        live = [fd for fd, _ in self.pfds.values() if not _exited(fd)]
        if live:
            _poll_exit(live, min(2.0, max(0.1, cfg.time_limit - (time.monotonic() - t0))))

    def _final(self, snap, scope, plan, found_any):
        survivors = plan.kills
        zombies = [d for d in plan.decisions if d.reason == "zombie"]
        kept = [d for d in plan.keeps if d.reason != "zombie"]
        if self.stop_reason or survivors:
            self.exit_code = 3
        elif found_any or self.events:
            self.exit_code = 1
        else:
            self.exit_code = 0
        accounts = {}
        for uid, name in sorted(self.scope.candidates.items()):
            if not name:
                continue
            s = [d.proc.pid for d in survivors if uid in d.proc.uids]
            k = sum(1 for d in kept if uid in d.proc.uids)
            z = sum(1 for d in zombies if uid in d.proc.uids)
            killed = sum(1 for e in self.events if uid in (e["uid"], e["euid"], e["suid"]))
            if uid in scope.protected:
                result = "spared"
            elif s:
                result = "survivors"
            elif k:
                result = "processes"
            else:
                result = "no_processes"
            accounts[name] = {"v": 1, "account": name, "uid": uid, "time": round(self.clock(), 3),
                              "boot_id": self.boot_id, "result": result, "kept": k,
                              "killed": killed, "survivors": s, "zombies": z}
        self._write_states(accounts)
        out = {"killed": self.events, "survivors": [d.as_dict() for d in survivors],
               "zombies": [d.as_dict() for d in zombies], "rounds": getattr(self, "rounds", 0),
               "accounts": {n: r["result"] for n, r in accounts.items()}}
        if self.stop_reason:
            out["stopped"] = self.stop_reason
        return out

    def _write_states(self, accounts):
        """Runs as: root. ``<state_dir>/prune/<account>.json`` per account (see module doc)."""
        d = state_dir(self.cfg)
        dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            for name, rec in accounts.items():
                if "/" in name or name.startswith("."):
                    continue
                tmp = f".tmp.{name}.{os.getpid()}"
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
                             | os.O_CLOEXEC, 0o600, dir_fd=dfd)
                try:
                    os.write(fd, (json.dumps(rec, sort_keys=True) + "\n").encode("ascii"))
                finally:
                    os.close(fd)
                os.rename(tmp, f"{name}.json", src_dir_fd=dfd, dst_dir_fd=dfd)
            os.fsync(dfd)
        finally:
            os.close(dfd)


def state_dir(cfg):
    """Runs as: root. ``<state_dir>/prune`` (created root 0700; the state dir itself must
    exist, be root-owned and not group/other-writable, like its ancestors)."""
    from glexec_py.effects import trust
    base = cfg.state_dir.rstrip("/") or "/"
    try:
        trust.check_dir_chain(base)
    except SystemFault as e:
        raise PruneError(f"state_dir {base}: {e.message}") from None
    except OSError as e:
        raise PruneError(f"state_dir {base}: {e.strerror}") from None
    path = base + "/prune"
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(path)
    import stat as _st
    if not _st.S_ISDIR(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o077:
        raise PruneError(f"{path} must be a root-owned directory with mode 0700")
    return path


def read_state(cfg_state_dir, account):
    """Runs as: root. The last state record of ``account`` (dict) or None (missing or
    unparsable: treat as unknown).  For the lease lifecycle."""
    try:
        with open(f"{cfg_state_dir.rstrip('/')}/prune/{account}.json", "rb") as f:
            rec = json.loads(f.read(65536))
        return rec if isinstance(rec, dict) and rec.get("v") == 1 else None
    except (OSError, ValueError):
        return None


class RunLock:
    """Runs as: root. Exclusive non-blocking flock on ``<state_dir>/prune/.lock``; a second
    run raises PruneError.  Released when the process exits."""

    def __init__(self, cfg):
        self.path = state_dir(cfg) + "/.lock"
        self.fd = None

    def __enter__(self):
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise PruneError(f"another prune-users run holds {self.path}") from None
        self.fd = fd
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
