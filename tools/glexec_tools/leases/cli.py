"""glexec-leases: look at and administer the lease store (the gridmapdir, or the site's
PostgreSQL lease database with ``mapping.lease_store: postgresql`` or ``--postgresql``).

Runs as: root only (the gridmapdir sidecar is root 0700; every change is audited).  Store
API ``glexec_py.effects.gridmapdir.GridmapDir`` / ``glexec_py.effects.pgleases.PgLeaseStore``
(format and lifecycle: docs/leases.md); man page docs/man/glexec-leases.8.

Commands: list, show, fsck, repair, release, drain, expire; PostgreSQL: confirm (post this
node's prune/sweep confirmations), migrate --to postgresql|gridmapdir, db-init,
accounts-add.  Every changing command has
``--dry-run`` and writes one audit record per change (``event: "lease_admin"``) to the
configuration's ``audit.file`` or ``--audit-file``; without an audit file nothing is changed.

Exit: 0 ok / clean; 1 fsck findings, nothing matched, or something was left undone
(skipped, still draining, findings remain after repair); 2 usage, not root, configuration
error; 3 system failure (lease store I/O, audit record not written).
"""
import argparse
import json
import os
import sys

from glexec_py.core.text import printable
from glexec_tools import front
from glexec_tools.common.procfs import boot_id, uids_with_processes
from glexec_tools.leases import apply, plan as plan_mod
from glexec_tools.leases.apply import Context, free_entries, lease_rows
from glexec_tools.leases.plan import parse_duration

PROG = "glexec-leases"
EXIT_OK, EXIT_FOUND, EXIT_USAGE, EXIT_FAIL = 0, 1, 2, 3
Usage = front.ToolError


# --- small helpers ----------------------------------------------------------------------

def _seconds(s):
    v = float(s)
    if not 0 <= v <= 86400:
        raise ValueError(s)
    return v


def _duration_arg(s):
    try:
        return parse_duration(s)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


iso = apply.iso


def escape(value):
    """One printable line (core.text.printable); "-" for a missing value."""
    return "-" if value is None else printable(value)


_lat = apply._lat


def oneline_dn(dn):
    """The DN as LCMAPS/the engine compare it (core.identity.oneline_bytes): bytes >= 0x80 of the
    UTF-8 value as \\xHH."""
    raw = dn.encode("utf-8", "surrogateescape") if isinstance(dn, str) else bytes(dn)
    if raw.isascii():
        return raw
    return b"".join(b"\\x%02X" % b if b >= 0x80 else bytes((b,)) for b in raw)


# --- context ------------------------------------------------------------------------------

def owner_text(owner):
    """One line for a human: the canonical DN, or ``iss=<...> sub=<...>`` for a token."""
    if not owner:
        return None
    if owner[0] == "jwt" and len(owner) == 3:
        return f"iss={owner[1]} sub={owner[2]}"
    return " ".join(owner[1:])


def _age(t, now):
    return "-" if t is None else front.human_age(now - t)


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
    now = ctx.now()
    lines = [f"{'ACCOUNT':<16} {'UID':>7} {'STATE':<10} {'SINCE':<27} {'LAST USE':<27} "
             f"{'IDLE':>7}  OWNER / DN / LEASE"]
    for r in rows:
        lines.append(f"{escape(r['account']):<16} {r['uid'] if r['uid'] is not None else '-':>7} "
                     f"{r['state']:<10} {r['since_iso'] or '-':<27} {r['last_use_iso'] or '-':<27} "
                     f"{_age(r['last_use'], now):>7}  "
                     f"{_who(r)}")
    lines.append(f"{len(rows)} leases ({sum(r['state'] == 'draining' for r in rows)} draining), "
                 f"{len(free)} free pool entries")
    _emit(args, {**ctx.where(), "leases": rows, "free": free,
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
        ok, why, ev = ctx.confirmation(r["account"], r["drained_at"], args.grace, cb)
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
    findings = apply.pg_fsck(ctx) if ctx.pg else ctx.store().fsck(ctx.pools)
    lines = [f"{f.severity:<7} {f.kind:<22} {' '.join(escape(n) for n in f.names)}: {f.why} "
             f"[repair: {f.action}]" for f in findings]
    lines.append("clean" if not findings else f"{len(findings)} finding(s)")
    _emit(args, {**ctx.where(), "clean": not findings,
                 "findings": [f.as_dict() for f in findings]}, lines)
    return EXIT_FOUND if findings else EXIT_OK


def cmd_repair(ctx, args):
    if ctx.pg:
        raise Usage("the lease database has nothing to repair: its constraints keep it "
                    "consistent (fsck lists what an administrator forced past them)")
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
        if action == "release" and plan_mod.row_uid_busy(r, busy) and not args.force:
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


def cmd_expire(ctx, args):
    now = ctx.now()
    busy = uids_with_processes()
    cb = boot_id()
    plan = plan_mod.plan_expire(apply.lease_rows(ctx), now, args.older_than, busy, force=args.force,
                                confirm=lambda account, drained: ctx.confirmation(
                                    account, drained, args.grace, cb),
                                drained_at=ctx.drained_at)
    act = args.yes and not args.dry_run
    done, left = [], []
    if act:
        done, left = apply.expire(ctx, plan, args, uids_with_processes)
    pending = [p for p in plan if p["action"] in ("skip", "wait")]
    lines = []
    for p in plan:
        lines.append(f"{p['action']:<8} {escape(p['account']):<16} idle {_age(p['last_use'], now):>7} "
                     f"{p['state']:<10} {escape(p['dn']) if p['dn'] else escape(p['lease'])}  "
                     f"# {p['why']}")
    if not plan:
        lines.append(f"no lease idle for {front.human_age(args.older_than)} or more")
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


def cmd_confirm(ctx, args):
    if not ctx.pg:
        # The shipped timer and cron job run this on every node: with the gridmapdir,
        # expire reads this node's prune/sweep records itself; there is nothing to post.
        _emit(args, {"node": None, "confirmations": [], "note": "no lease database"},
              ["nothing to confirm: the lease store is the gridmapdir (mapping.lease_store: "
               "postgresql posts this node's confirmations)"])
        return EXIT_OK
    rows = [] if args.dry_run else apply.post_confirmations(ctx, boot_id())
    lines = [f"{'posted' if r['posted'] else 'not yet':<8} {escape(r['account']):<16} {r['kind']:<6} "
             f"{r.get('why') or iso(r['observed_at'])}" for r in rows]
    lines.append(f"{sum(r['posted'] for r in rows)} confirmation(s) posted from node {ctx.node()}")
    _emit(args, {"node": ctx.node(), "confirmations": rows}, lines)
    return EXIT_OK


def cmd_migrate(ctx, args):
    ctx.pg = True
    ctx.require_audit()
    if args.to == "postgresql":
        accounts, leases = apply.migrate_to_postgresql(ctx)
        ctx.audit("migrate", to="postgresql", from_gridmapdir=ctx.gridmapdir, accounts=accounts,
                  leases=leases)
        line = f"moved {leases} lease(s) and {accounts} pool account(s) into the lease database"
    else:
        leases = apply.migrate_to_gridmapdir(ctx)
        ctx.audit("migrate", to="gridmapdir", gridmapdir=ctx.gridmapdir, leases=leases)
        line = f"moved {leases} lease(s) from the lease database into {ctx.gridmapdir}"
    _emit(args, {"to": args.to, "leases": leases}, [line])
    return EXIT_OK


def cmd_db_init(ctx, args):
    ctx.pg = True
    found = apply.db_init(ctx)
    latest = apply.SCHEMA_LATEST
    if found is not None and ctx.audit_file:
        ctx.audit("db_init", schema=latest, previous_schema=found or None)
    line = (f"schema version {latest} is installed already (nothing changed)" if found is None
            else f"schema version {latest} installed" if found == 0
            else f"schema upgraded from version {found} to {latest}")
    _emit(args, {"installed": found is not None, "previous": found, "schema": latest}, [line])
    return EXIT_OK if found is not None else EXIT_FOUND


def cmd_accounts_add(ctx, args):
    ctx.pg = True
    ctx.require_audit()
    added = ctx.pg_store().add_accounts(args.pool_name, args.accounts)
    ctx.audit("accounts_add", pool=args.pool_name, accounts=args.accounts, added=added)
    _emit(args, {"pool": args.pool_name, "added": added},
              [f"{added} account(s) added to pool {escape(args.pool_name)}"])
    return EXIT_OK


# --- command line ---------------------------------------------------------------------------

def build_parser():
    def common(p, sub):
        d = argparse.SUPPRESS if sub else None
        p.add_argument("--gridmapdir", default=d, metavar="PATH",
                       help="the gridmapdir (default: mapping.gridmapdir of glexec.yaml)")
        p.add_argument("--postgresql", default=d, metavar="CONNINFO_FILE",
                       help="use the lease database whose libpq conninfo is in this root-only "
                            "file (default: with mapping.lease_store: postgresql, "
                            "postgresql.conninfo_file of glexec.yaml)")
        p.add_argument("--node", default=d, metavar="NAME",
                       help="this node's name in the lease database (default: postgresql.node, "
                            "else the host name)")
        p.add_argument("--audit-file", default=d, metavar="PATH",
                       help="audit file for changes (default: audit.file of glexec.yaml)")
        p.add_argument("--state-dir", default=d, metavar="PATH",
                       help="where prune-users/glexec-sweep keep their records "
                            "(<dir>/prune, <dir>/sweep; default: state_dir of glexec.yaml)")
        p.add_argument("--pool", action="append", default=d, metavar="NAME",
                       help="pool name (repeatable; default: leases.pools, else inferred "
                            "from the directory)")
        front.add_common(p, changes=False, suppress=sub)

    p = front.argument_parser(
        PROG, "Inspect and administer glexec-py's gridmapdir leases.",
        "Exit status: 0 ok, 1 findings / no match / something left, 2 usage or not root, "
        "3 system failure, 70 internal error.  glexec.yaml is read unless only --gridmapdir "
        "is given.", changes=False)
    for action in list(p._actions):          # the top level's --config/--json come from common()
        if action.dest in ("config", "json"):
            p._remove_action(action)
            for o in action.option_strings:
                p._option_string_actions.pop(o, None)
    common(p, False)
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=type(p))

    def add(name, help_):
        s = sub.add_parser(name, help=help_, description=help_, formatter_class=p.formatter_class)
        common(s, True)
        return s

    add("list", "list leases: account, uid, state, since, last use (mtime), DN")
    s = add("show", "one lease by account or DN, with its release confirmation")
    s.add_argument("account_pos", nargs="?", metavar="ACCOUNT")
    s.add_argument("--account", help=argparse.SUPPRESS)
    s.add_argument("--dn")
    s.add_argument("--grace", type=float, default=None, help=argparse.SUPPRESS)
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
    s.add_argument("--older-than", type=_duration_arg, metavar="DURATION",
                   help="idle age by last use (lease mtime): 3600, 90m, 12h, 30d, 1d12h "
                        "(default: leases.expire_after, 7d)")
    s.add_argument("--yes", action="store_true", help="act (default: list the plan only)")
    s.add_argument("-n", "--dry-run", action="store_true", help="print the plan only")
    s.add_argument("--force", action="store_true",
                   help="release idle accounts without prune-users/glexec-sweep confirmation "
                        "(still never one with processes)")
    s.add_argument("--grace", type=_seconds, metavar="SECONDS",
                   help="a confirmation counts only if made this long after the drain "
                        f"(default: leases.grace, {plan_mod.DEFAULT_GRACE})")
    s.add_argument("--settle", type=_seconds, metavar="SECONDS",
                   help="--force: wait between draining and the process check "
                        f"(default: leases.settle, {plan_mod.DEFAULT_SETTLE:g})")
    add("confirm", "post this node's prune-users/glexec-sweep records of draining leases "
                   "used here to the lease database (PostgreSQL); with the gridmapdir: "
                   "nothing to do, exit 0").add_argument(
        "-n", "--dry-run", action="store_true", help="post nothing")
    s = add("migrate", "move the leases between the gridmapdir and the lease database")
    s.add_argument("--to", required=True, choices=("postgresql", "gridmapdir"))
    add("db-init", "install the lease database schema into an empty database, or upgrade "
                   "an older one (version 1 -> 2: the lease history)")
    s = add("accounts-add", "add pool accounts (free) to the lease database")
    s.add_argument("pool_name", metavar="POOL")
    s.add_argument("accounts", nargs="+", metavar="ACCOUNT")
    return p


COMMANDS = {"list": cmd_list, "show": cmd_show, "fsck": cmd_fsck, "repair": cmd_repair,
            "release": cmd_release_or_drain, "drain": cmd_release_or_drain,
            "expire": cmd_expire, "confirm": cmd_confirm, "migrate": cmd_migrate,
            "db-init": cmd_db_init, "accounts-add": cmd_accounts_add}


def _main(argv):
    args = build_parser().parse_args(argv)
    if os.geteuid() != 0:
        raise front.ToolError("must run as root")
    from glexec_py.errors import ConfigError, GlexecError
    ctx = None
    try:
        ctx = Context(args)
        for key in ("grace", "settle"):            # options over the leases: section
            if getattr(args, key, "absent") is None:
                setattr(args, key, getattr(ctx.cfg, key))
        if getattr(args, "older_than", "absent") is None:
            args.older_than = ctx.cfg.expire_after
        if not ctx.pg and not ctx.gridmapdir and args.cmd in ("list", "fsck", "expire"):
            _emit(args, {"note": "no lease store: mapping.gridmapdir is not set"},
                  ["no lease store: mapping.gridmapdir is not set (no pools, nothing to do)"])
            return EXIT_OK
        return COMMANDS[args.cmd](ctx, args)
    except ConfigError:
        raise
    except GlexecError as e:      # the lease store: a system failure
        raise front.ToolError(f"{e.message.removeprefix('glexec: ')} ({e.reason})",
                              EXIT_FAIL) from None
    except ValueError as e:
        raise front.ToolError(str(e)) from None
    except OSError as e:
        raise front.ToolError(f"{e.filename + ': ' if isinstance(e.filename, str) else ''}"
                              f"{e.strerror or e}", EXIT_FAIL) from None
    finally:
        if ctx is not None:
            ctx.close()


def main(argv=None):
    return front.run(PROG, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
