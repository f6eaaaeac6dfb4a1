"""glexec-leases: look at and administer the gridmapdir lease store.

Runs as: root only (the gridmapdir sidecar is root 0700; every change is audited).  Store
API ``glexec_py.effects.gridmapdir.GridmapDir`` (format and lifecycle: docs/leases.md);
man page docs/man/glexec-leases.8.

Commands: list, show, fsck, repair, release, drain, expire.  Every changing command has
``--dry-run`` and writes one audit record per change (``event: "lease_admin"``) to the
configuration's ``audit.file`` or ``--audit-file``; without an audit file nothing is changed.

Exit: 0 ok / clean; 1 fsck findings, nothing matched, or something was left undone
(skipped, still draining, findings remain after repair); 2 usage, not root, configuration
error; 3 system failure (lease store I/O, audit record not written).
"""
import argparse
import json
import os
import pwd
import socket
import stat
import sys
import time

from glexec_py.core.text import printable

PROG = "glexec-leases"
EXIT_OK, EXIT_FOUND, EXIT_USAGE, EXIT_FAIL = 0, 1, 2, 3
DEFAULT_GRACE = 60           # s between draining and a confirmation that may count
DEFAULT_SETTLE = 2.0         # s (--force): in-flight grants start their payload meanwhile


class Usage(Exception):
    pass


class Failure(Exception):
    pass


def default_config_path():
    """PREFIX/etc/glexec-py/glexec.yaml for the PREFIX this tool is installed in."""
    here = os.path.realpath(__file__)
    lib = os.path.dirname(os.path.dirname(here))
    if lib.endswith("/lib/glexec-py"):
        prefix = lib[: -len("/lib/glexec-py")]
        return ("" if prefix in ("", "/usr") else prefix) + "/etc/glexec-py/glexec.yaml"
    return "/usr/local/etc/glexec-py/glexec.yaml"


# --- small helpers ----------------------------------------------------------------------

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text):
    """``90``, ``90s``, ``15m``, ``12h``, ``30d``, ``2w`` or sums like ``1d12h`` -> seconds."""
    s = text.strip().lower()
    if not s:
        raise ValueError("empty duration")
    if s.isdigit():
        return float(s)
    total, num = 0.0, ""
    for c in s:
        if c.isdigit() or c == ".":
            num += c
        elif c in _UNITS and num:
            total += float(num) * _UNITS[c]
            num = ""
        else:
            raise ValueError(f"bad duration {text!r} (e.g. 3600, 90m, 12h, 30d, 1d12h)")
    if num:
        raise ValueError(f"bad duration {text!r}: number without unit at the end")
    return total


def _duration_arg(s):
    try:
        return parse_duration(s)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def iso(t):
    if t is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%06dZ" % int(t % 1 * 1e6)


def escape(value):
    """One printable line (core.text.printable); "-" for a missing value."""
    return "-" if value is None else printable(value)


def _lat(b):
    return None if b is None else bytes(b).decode("latin-1")


def oneline_dn(dn):
    """The DN as LCMAPS/the engine compare it (core.identity.oneline_bytes): bytes >= 0x80 of the
    UTF-8 value as \\xHH."""
    raw = dn.encode("utf-8", "surrogateescape") if isinstance(dn, str) else bytes(dn)
    if raw.isascii():
        return raw
    return b"".join(b"\\x%02X" % b if b >= 0x80 else bytes((b,)) for b in raw)


def uids_with_processes(proc="/proc"):
    """Runs as: root. Every uid that is the real, effective, saved or fs uid of a process."""
    uids = set()
    for d in os.listdir(proc):
        if not d.isdigit():
            continue
        try:
            with open(f"{proc}/{d}/status", "rb") as f:
                for line in f:
                    if line.startswith(b"Uid:"):
                        uids.update(int(x) for x in line.split()[1:])
                        break
        except OSError:
            continue
    return uids


def boot_id():
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return None


def read_state_record(path):
    """A prune/sweep state record (dict) or None: root-owned regular file, JSON object, v 1."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o022:
            return None
        raw = os.read(fd, 65536)
    finally:
        os.close(fd)
    try:
        rec = json.loads(raw)
    except ValueError:
        return None
    return rec if isinstance(rec, dict) and rec.get("v") == 1 else None


def _num(x):
    return x if isinstance(x, (int, float)) and not isinstance(x, bool) else None


def confirmation(state_dir, account, drained_at, grace, current_boot):
    """Whether prune-users and glexec-sweep confirmed ``account`` idle after it was drained.

    prune-users: ``<state_dir>/prune/<account>.json`` with result ``no_processes``, the
    current ``boot_id`` and ``time`` >= drained_at + grace.  glexec-sweep:
    ``<state_dir>/sweep/<account>.json`` with state ``no_files`` and ``swept_at_unix`` >=
    drained_at + grace.  Returns (ok, why, evidence)."""
    ev = {"drained_at": drained_at, "grace": grace}
    if not state_dir:
        return False, "no state_dir: cannot read prune-users/glexec-sweep records", ev
    if drained_at is None:
        return False, "drain time unknown", ev
    need = drained_at + grace
    base = state_dir.rstrip("/")
    pr = read_state_record(f"{base}/prune/{account}.json")
    sw = read_state_record(f"{base}/sweep/{account}.json")
    ev["prune"] = None if pr is None else {k: pr.get(k) for k in ("time", "result", "boot_id")}
    ev["sweep"] = None if sw is None else {k: sw.get(k) for k in ("swept_at_unix", "state")}
    if pr is None:
        return False, "waiting for prune-users (no prune record)", ev
    pt = _num(pr.get("time"))
    if pr.get("result") != "no_processes":
        return False, f"prune-users result {pr.get('result')!r}, not 'no_processes'", ev
    if current_boot and pr.get("boot_id") != current_boot:
        return False, "prune record is from another boot", ev
    if pt is None or pt < need:
        return False, "waiting for prune-users (record older than drain + grace)", ev
    if sw is None:
        return False, "waiting for glexec-sweep (no sweep record)", ev
    st = _num(sw.get("swept_at_unix"))
    if sw.get("state") != "no_files":
        return False, f"glexec-sweep state {sw.get('state')!r}, not 'no_files'", ev
    if st is None or st < need:
        return False, "waiting for glexec-sweep (record older than drain + grace)", ev
    return True, "prune-users: no processes; glexec-sweep: no files (both after the drain)", ev


# --- context ------------------------------------------------------------------------------

class Context:
    def __init__(self, args):
        cfg = None
        if args.config or not args.gridmapdir:
            from glexec_py.effects import configfile
            from glexec_py.errors import GlexecError
            path = args.config or default_config_path()
            try:
                cfg = configfile.load(path, "")      # "" = no cache written by this tool
            except GlexecError as e:
                raise Usage(f"{path}: {e.message}") from None
        self.gridmapdir = args.gridmapdir or (cfg.mapping.gridmapdir if cfg else "")
        if not self.gridmapdir:
            raise Usage("no gridmapdir: mapping.gridmapdir is not set (use --gridmapdir)")
        if not self.gridmapdir.startswith("/"):
            raise Usage("--gridmapdir must be an absolute path")
        self.audit_file = args.audit_file or (cfg.audit.file if cfg else None)
        self.state_dir = args.state_dir or (cfg.state_dir if cfg else None)
        self.pools = tuple(os.fsencode(p) for p in args.pool) if args.pool else None
        self.host = socket.gethostname()
        self._gd = None

    def store(self):
        if self._gd is None:
            from glexec_py.effects.gridmapdir import GridmapDir
            self._gd = GridmapDir(self.gridmapdir, pools=self.pools)
        return self._gd

    def close(self):
        if self._gd is not None:
            self._gd.close()

    def require_audit(self):
        if not self.audit_file:
            raise Usage("changing the lease store needs an audit file: --audit-file or "
                        "--config with audit.file")

    def audit(self, action, **fields):
        from glexec_py.core.audit import encode
        from glexec_py.effects import auditlog
        from glexec_py.errors import GlexecError
        now = time.time()
        rec = {"time": iso(now), "event": "lease_admin", "tool": PROG, "host": self.host,
               "pid": os.getpid(), "admin": {"uid": os.getuid(),
                                            "sudo_user": os.environ.get("SUDO_USER")},
               "gridmapdir": self.gridmapdir, "action": action}
        rec.update(fields)
        try:
            auditlog.append(self.audit_file, auditlog.stamper(rec, encode))
        except GlexecError as e:
            raise Failure(f"cannot write the audit record to {self.audit_file}: "
                          f"{e.detail.get('cause', e.message)}") from None

    def pool_names(self):
        """Explicit --pool, else inferred like GridmapDir: names (not %/.-names) ending in
        digits, pool = name without the trailing digits."""
        if self.pools is not None:
            return self.pools
        from glexec_py.core import leases as core
        found = set()
        for name, _ino, _nlink, _reg in self.store().snapshot():
            if name[:1] != b"%" and not core.skip_entry(name):
                prefix = name.rstrip(b"0123456789")
                if prefix and prefix != name:
                    found.add(prefix)
        return tuple(sorted(found))

    def drained_at(self, account):
        """When the metadata record was last written (a draining record is written by
        ``drain``; later rewrites only move this later: conservative)."""
        try:
            return os.lstat(os.path.join(self.gridmapdir, ".glexec-py",
                                         os.fsdecode(account))).st_mtime
        except OSError:
            return None


def _owner(owner):
    """The recorded owner (identity key) as a list of text, or None (LCMAPS-made, older
    record, or malformed: fsck says which)."""
    if isinstance(owner, list) and owner and all(isinstance(x, str) for x in owner):
        return owner
    return None


def owner_text(owner):
    """One line for a human: the canonical DN, or ``iss=<...> sub=<...>`` for a token."""
    if not owner:
        return None
    if owner[0] == "jwt" and len(owner) == 3:
        return f"iss={owner[1]} sub={owner[2]}"
    return " ".join(owner[1:])


def lease_rows(ctx):
    rows = []
    for lease, (account, rec, mtime) in ctx.store().leases(ctx.pools).items():
        rec = rec or {}
        state = rec.get("state") or "unrecorded"
        try:
            uid = pwd.getpwnam(os.fsdecode(account)).pw_uid
        except KeyError:
            uid = None
        since = _num(rec.get("since"))
        rows.append({"lease": _lat(lease), "account": _lat(account), "uid": uid,
                     "dn": _lat(rec.get("dn")), "groups": [_lat(g) for g in rec.get("groups", ())],
                     "mapcount": rec.get("mapcount", 0), "since": since, "since_iso": iso(since),
                     "last_use": mtime, "last_use_iso": iso(mtime), "state": state,
                     "by": rec.get("by"), "owner": _owner(rec.get("owner"))})
    rows.sort(key=lambda r: (r["account"], r["lease"]))
    return rows


def free_entries(ctx):
    from glexec_py.core import leases as core
    pools = ctx.pool_names()
    return sorted(_lat(n) for n, _i, nlink, reg in ctx.store().snapshot()
                  if reg and nlink == 1 and any(core.pool_member(n, p) for p in pools))


def _age(t, now):
    if t is None:
        return "-"
    s = max(0, int(now - t))
    if s >= 86400:
        return f"{s // 86400}d{s % 86400 // 3600}h"
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60}m"
    if s >= 60:
        return f"{s // 60}m{s % 60}s"
    return f"{s}s"


def _emit(args, obj, text_lines):
    if args.json:
        sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
    else:
        for line in text_lines:
            sys.stdout.write(line + "\n")


# --- selecting one lease --------------------------------------------------------------------

def select(ctx, args):
    """The lease rows chosen by LEASE | --account | --dn (possibly empty)."""
    given = [x for x in (args.lease, args.account, args.dn) if x]
    if len(given) != 1:
        raise Usage("name exactly one of LEASE, --account ACCOUNT, --dn DN")
    rows = lease_rows(ctx)
    if args.lease:
        return [r for r in rows if r["lease"] == args.lease]
    if args.account:
        return [r for r in rows if r["account"] == args.account]
    from glexec_py.core.leases import lease_name
    dn = oneline_dn(args.dn)
    try:
        plain = _lat(lease_name(dn))
    except ValueError as e:
        raise Usage(f"--dn: {e}") from None
    want = dn.decode("latin-1")
    # By the recorded text or owner; by the LCMAPS name only for a lease with neither (the
    # name is lower-cased: "CN=alice" must not select the lease of "CN=Alice").
    canon = None
    try:
        from glexec_py.core import dn as dnmod
        canon = dnmod.canonical(dnmod.parse_text(args.dn))
    except ValueError:
        pass
    return [r for r in rows if r["dn"] == want
            or (canon is not None and r["owner"] == ["x509", canon])
            or (r["lease"] == plain and r["dn"] is None and r["owner"] is None)]


# --- commands -------------------------------------------------------------------------------

def _who(r):
    if r["owner"]:
        return escape(owner_text(r["owner"]))
    return escape(r["dn"]) + " (no owner recorded)" if r["dn"] else "(lease) " + escape(r["lease"])


def cmd_list(ctx, args):
    rows = lease_rows(ctx)
    free = free_entries(ctx)
    now = time.time()
    lines = [f"{'ACCOUNT':<16} {'UID':>7} {'STATE':<10} {'SINCE':<27} {'LAST USE':<27} "
             f"{'IDLE':>7}  OWNER / DN / LEASE"]
    for r in rows:
        lines.append(f"{escape(r['account']):<16} {r['uid'] if r['uid'] is not None else '-':>7} "
                     f"{r['state']:<10} {r['since_iso'] or '-':<27} {r['last_use_iso'] or '-':<27} "
                     f"{_age(r['last_use'], now):>7}  "
                     f"{_who(r)}")
    lines.append(f"{len(rows)} leases ({sum(r['state'] == 'draining' for r in rows)} draining), "
                 f"{len(free)} free pool entries")
    _emit(args, {"gridmapdir": ctx.gridmapdir, "leases": rows, "free": free,
                 "counts": {"leases": len(rows), "free": len(free),
                            "draining": sum(r["state"] == "draining" for r in rows)}}, lines)
    return EXIT_OK


def cmd_show(ctx, args):
    if args.account_pos and not args.account:
        args.account = args.account_pos
    args.lease = None
    rows = select(ctx, args)
    cb = boot_id()
    for r in rows:
        r["drained_at"] = ctx.drained_at(r["account"]) if r["state"] == "draining" else None
        ok, why, ev = confirmation(ctx.state_dir, r["account"], r["drained_at"],
                                   args.grace, cb)
        r["confirmation"] = {"ok": ok, "why": why, **ev} if r["state"] == "draining" else None
    free = None
    if not rows and args.account:
        free = args.account in free_entries(ctx)
    lines = []
    for r in rows:
        lines += [f"lease:     {escape(r['lease'])}",
                  f"account:   {escape(r['account'])} (uid {r['uid'] if r['uid'] is not None else 'unknown'})",
                  f"owner:     {escape(owner_text(r['owner'])) if r['owner'] else '(not recorded)'}",
                  f"dn:        {escape(r['dn'])}",
                  f"groups:    {' '.join(escape(g) for g in r['groups']) or '-'}",
                  f"mapcount:  {r['mapcount']}",
                  f"state:     {r['state']}" + (f" (since {iso(r['drained_at'])})"
                                                 if r["drained_at"] else ""),
                  f"since:     {r['since_iso'] or '-'}",
                  f"last use:  {r['last_use_iso'] or '-'}",
                  f"by:        {r['by'] or '-'}"]
        if r["confirmation"]:
            lines.append(f"release:   {'confirmed' if r['confirmation']['ok'] else 'not yet'}: "
                         f"{r['confirmation']['why']}")
        lines.append("")
    if not rows:
        lines.append("no lease" + (f"; {args.account} is a free pool entry" if free else ""))
    _emit(args, {"leases": rows, "found": bool(rows), "free": free}, lines)
    return EXIT_OK if rows else EXIT_FOUND


def cmd_fsck(ctx, args):
    findings = ctx.store().fsck(ctx.pools)
    lines = [f"{f.severity:<7} {f.kind:<22} {' '.join(escape(n) for n in f.names)}: {f.why} "
             f"[repair: {f.action}]" for f in findings]
    lines.append("clean" if not findings else f"{len(findings)} finding(s)")
    _emit(args, {"gridmapdir": ctx.gridmapdir, "clean": not findings,
                 "findings": [f.as_dict() for f in findings]}, lines)
    return EXIT_FOUND if findings else EXIT_OK


def cmd_repair(ctx, args):
    gd = ctx.store()
    findings = gd.fsck(ctx.pools)
    plan = [f for f in findings if f.action != "manual"]
    manual = [f for f in findings if f.action == "manual"]
    done = []
    if not args.dry_run and plan:
        ctx.require_audit()
        done = gd.repair(plan, ctx.pools)
        for f in done:
            ctx.audit("repair", finding=f.as_dict())
    after = findings if args.dry_run else gd.fsck(ctx.pools)
    verb = "would" if args.dry_run else "did"
    lines = [f"{verb} {f.action:<13} {' '.join(escape(n) for n in f.names)}  # {f.kind}: {f.why}"
             for f in (plan if args.dry_run else done)]
    lines += [f"manual        {' '.join(escape(n) for n in f.names)}  # {f.kind}: {f.why}"
              for f in manual]
    lines.append(f"{len(plan) if args.dry_run else len(done)} action(s) "
                 f"{'planned' if args.dry_run else 'done'}, {len(manual)} left for an "
                 "administrator" + ("" if args.dry_run else
                                     f", fsck now {'clean' if not after else 'not clean'}"))
    _emit(args, {"dry_run": args.dry_run, "plan": [f.as_dict() for f in plan],
                 "done": [f.as_dict() for f in done], "manual": [f.as_dict() for f in manual],
                 "remaining": [f.as_dict() for f in after]}, lines)
    return EXIT_FOUND if after else EXIT_OK


def _row_uid_busy(row, busy):
    return row["uid"] is not None and row["uid"] in busy


def cmd_release_or_drain(ctx, args):
    action = args.cmd
    rows = select(ctx, args)
    if not rows:
        _emit(args, {"action": action, "dry_run": args.dry_run, "matched": [], "done": []},
              ["no such lease"])
        return EXIT_FOUND
    busy = uids_with_processes() if action == "release" else set()
    plan, skipped = [], []
    for r in rows:
        if action == "release" and _row_uid_busy(r, busy) and not args.force:
            skipped.append({**r, "why": "the account has processes (use --force to release "
                                        "anyway, or drain it and let prune-users act)"})
        elif action == "drain" and r["state"] == "draining":
            skipped.append({**r, "why": "already draining"})
        else:
            plan.append(r)
    done = []
    if not args.dry_run and plan:
        ctx.require_audit()
        gd = ctx.store()
        for r in plan:
            lease = r["lease"].encode("latin-1")
            got = gd.release(lease) if action == "release" else gd.drain(lease)
            if got is None:
                skipped.append({**r, "why": "lease vanished meanwhile"})
                continue
            r = {**r, "account": _lat(got)}
            ctx.audit(action, lease=r["lease"], account=r["account"], uid=r["uid"], dn=r["dn"],
                      previous_state=r["state"], last_use=iso(r["last_use"]),
                      forced=bool(action == "release" and args.force))
            done.append(r)
    verb = ("would " if args.dry_run else "") + action
    lines = [f"{verb} {escape(r['lease'])} (account {escape(r['account'])}, {r['state']})"
             for r in (plan if args.dry_run else done)]
    lines += [f"skip {escape(r['lease'])} (account {escape(r['account'])}): {r['why']}"
              for r in skipped]
    _emit(args, {"action": action, "dry_run": args.dry_run, "plan": plan, "done": done,
                 "skipped": skipped}, lines)
    return EXIT_FOUND if skipped else EXIT_OK


def plan_expire(ctx, args, now, busy, cb):
    out = []
    for r in lease_rows(ctx):
        idle = r["last_use"] is not None and now - r["last_use"] >= args.older_than
        if not idle:
            continue
        item = {**r, "idle_seconds": round(now - r["last_use"], 3)}
        active = _row_uid_busy(r, busy)
        if r["state"] != "draining":
            if active:
                item.update(action="skip", why="account has processes (active)")
            elif args.force:
                item.update(action="release", why="idle, no processes; --force: drain, "
                            "settle, release without prune/sweep confirmation")
            else:
                item.update(action="drain", why="idle, no processes: drain now; released by a "
                            "later expire run once prune-users and glexec-sweep confirm it")
        else:
            drained = ctx.drained_at(r["account"])
            item["drained_at"] = drained
            if active:
                item.update(action="skip", why="draining, account still has processes")
            elif args.force:
                item.update(action="release", why="draining, no processes; --force: "
                            "release without prune/sweep confirmation")
            else:
                ok, why, ev = confirmation(ctx.state_dir, r["account"], drained, args.grace, cb)
                item["confirmation"] = {"ok": ok, "why": why, **ev}
                item.update(action="release" if ok else "wait", why=why)
        out.append(item)
    return out


def cmd_expire(ctx, args):
    now = time.time()
    busy = uids_with_processes()
    cb = boot_id()
    plan = plan_expire(ctx, args, now, busy, cb)
    act = args.yes and not args.dry_run
    done, left = [], []
    if act and any(p["action"] in ("drain", "release") for p in plan):
        ctx.require_audit()
        gd = ctx.store()
        drained_now = []
        for p in plan:
            if p["action"] == "drain" or (p["action"] == "release" and p["state"] != "draining"):
                got = gd.drain(p["lease"].encode("latin-1"))
                if got is None:
                    left.append({**p, "why": "lease vanished meanwhile"})
                    continue
                ctx.audit("expire_drain", lease=p["lease"], account=p["account"], uid=p["uid"],
                          dn=p["dn"], last_use=iso(p["last_use"]), older_than=args.older_than,
                          forced=args.force)
                if p["action"] == "drain":
                    done.append({**p, "done": "drained"})
                else:
                    drained_now.append(p)
        if drained_now:
            time.sleep(args.settle)      # grants decided before the drain start their payload
        busy2 = uids_with_processes()
        for p in plan:
            if p["action"] != "release":
                continue
            if p["state"] != "draining" and p not in drained_now:
                continue
            if _row_uid_busy(p, busy2):
                left.append({**p, "why": "processes appeared; left draining"})
                continue
            # re-check right before the release: still the same account, still draining
            cur = {r["lease"]: r for r in lease_rows(ctx)}.get(p["lease"])
            if cur is None or cur["account"] != p["account"] or cur["state"] != "draining":
                left.append({**p, "why": "lease changed meanwhile; not released"})
                continue
            got = gd.release(p["lease"].encode("latin-1"))
            if got is None:
                left.append({**p, "why": "lease vanished meanwhile"})
                continue
            ctx.audit("expire_release", lease=p["lease"], account=p["account"], uid=p["uid"],
                      dn=p["dn"], last_use=iso(p["last_use"]), older_than=args.older_than,
                      forced=args.force, confirmation=p.get("confirmation"))
            done.append({**p, "done": "released"})
    pending = [p for p in plan if p["action"] in ("skip", "wait")]
    lines = []
    for p in plan:
        lines.append(f"{p['action']:<8} {escape(p['account']):<16} idle {_age(p['last_use'], now):>7} "
                     f"{p['state']:<10} {escape(p['dn']) if p['dn'] else escape(p['lease'])}  "
                     f"# {p['why']}")
    if not plan:
        lines.append(f"no lease idle for {args.older_than:g} s or more")
    elif act:
        lines.append(f"done: {sum(d['done'] == 'drained' for d in done)} drained, "
                     f"{sum(d['done'] == 'released' for d in done)} released, "
                     f"{len(pending) + len(left)} left")
        lines += [f"left     {escape(p['account'])}: {p['why']}" for p in left]
    else:
        lines.append("nothing changed" + ("" if args.dry_run else ": add --yes to act"))
    _emit(args, {"dry_run": not act, "older_than": args.older_than, "force": args.force,
                 "plan": plan, "done": done, "left": left}, lines)
    return EXIT_FOUND if (act and left) else EXIT_OK


# --- command line ---------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        sys.stderr.write(f"{PROG}: {message}\n")
        sys.exit(EXIT_USAGE)


def build_parser():
    def common(p, sub):
        d = argparse.SUPPRESS if sub else None
        p.add_argument("--gridmapdir", default=d, metavar="PATH",
                       help="the gridmapdir (default: mapping.gridmapdir of --config)")
        p.add_argument("--config", default=d, metavar="PATH",
                       help=f"glexec.yaml (default: {default_config_path()} when no "
                            "--gridmapdir is given)")
        p.add_argument("--audit-file", default=d, metavar="PATH",
                       help="audit file for changes (default: audit.file of the config)")
        p.add_argument("--state-dir", default=d, metavar="PATH",
                       help="where prune-users/glexec-sweep keep their records "
                            "(<dir>/prune, <dir>/sweep; default: state_dir of the config)")
        p.add_argument("--pool", action="append", default=d, metavar="NAME",
                       help="pool name (repeatable; default: inferred from the directory)")
        p.add_argument("--json", action="store_true", default=d,
                       help="one JSON object on stdout")

    p = _Parser(prog=PROG, description="Inspect and administer glexec-py's gridmapdir leases.",
                epilog="Exit status: 0 ok, 1 findings / no match / something left, "
                       "2 usage or not root, 3 system failure.")
    common(p, False)
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=_Parser)

    def add(name, help_):
        s = sub.add_parser(name, help=help_, description=help_)
        common(s, True)
        return s

    add("list", "list leases: account, uid, state, since, last use (mtime), DN")
    s = add("show", "one lease by account or DN, with its release confirmation")
    s.add_argument("account_pos", nargs="?", metavar="ACCOUNT")
    s.add_argument("--account", help=argparse.SUPPRESS)
    s.add_argument("--dn")
    s.add_argument("--grace", type=float, default=DEFAULT_GRACE, help=argparse.SUPPRESS)
    add("fsck", "check the lease store; exit 1 on any finding")
    s = add("repair", "apply the repair action of every fsck finding (not 'manual' ones)")
    s.add_argument("-n", "--dry-run", action="store_true", help="print the plan only")
    for name, help_ in (("release", "remove a lease: the account becomes free"),
                        ("drain", "mark a lease draining: refused to its identity, "
                                  "not handed to anyone")):
        s = add(name, help_)
        s.add_argument("lease", nargs="?", metavar="LEASE")
        s.add_argument("--account")
        s.add_argument("--dn")
        s.add_argument("-n", "--dry-run", action="store_true", help="print the plan only")
        if name == "release":
            s.add_argument("--force", action="store_true",
                           help="release even if the account has processes")
    s = add("expire", "drain idle leases; release drained ones that prune-users and "
                      "glexec-sweep confirmed idle")
    s.add_argument("--older-than", required=True, type=_duration_arg, metavar="DURATION",
                   help="idle age by last use (lease mtime): 3600, 90m, 12h, 30d, 1d12h")
    s.add_argument("--yes", action="store_true", help="act (default: list the plan only)")
    s.add_argument("-n", "--dry-run", action="store_true", help="print the plan only")
    s.add_argument("--force", action="store_true",
                   help="release idle accounts without prune-users/glexec-sweep confirmation "
                        "(still never one with processes)")
    s.add_argument("--grace", type=float, default=DEFAULT_GRACE, metavar="SECONDS",
                   help="a confirmation counts only if made this long after the drain "
                        "(default %(default)s)")
    s.add_argument("--settle", type=float, default=DEFAULT_SETTLE, metavar="SECONDS",
                   help="--force: wait between draining and the process check "
                        "(default %(default)s)")
    return p


COMMANDS = {"list": cmd_list, "show": cmd_show, "fsck": cmd_fsck, "repair": cmd_repair,
            "release": cmd_release_or_drain, "drain": cmd_release_or_drain,
            "expire": cmd_expire}


def main(argv=None):
    args = build_parser().parse_args(argv)
    if os.geteuid() != 0:
        sys.stderr.write(f"{PROG}: must run as root\n")
        return EXIT_USAGE
    from glexec_py.errors import GlexecError
    ctx = None
    try:
        ctx = Context(args)
        return COMMANDS[args.cmd](ctx, args)
    except Usage as e:
        sys.stderr.write(f"{PROG}: {e}\n")
        return EXIT_USAGE
    except Failure as e:
        sys.stderr.write(f"{PROG}: {e}\n")
        return EXIT_FAIL
    except GlexecError as e:
        sys.stderr.write(f"{PROG}: {e.message.removeprefix('glexec: ')} ({e.reason})\n")
        return EXIT_FAIL
    except ValueError as e:
        sys.stderr.write(f"{PROG}: {e}\n")
        return EXIT_USAGE
    except OSError as e:
        sys.stderr.write(f"{PROG}: {e.strerror or e}\n")
        return EXIT_FAIL
    finally:
        if ctx is not None:
            ctx.close()
