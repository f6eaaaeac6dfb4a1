"""glexec-sweep: remove files and IPC objects of pool accounts that are no longer in use.

Runs as: root only.  Semantics in ``glexec_py.core.sweep`` (planner), effects in
``glexec_py.effects.sweep_walk``; the YAML schema, state record and exit codes are in
docs/man/glexec-sweep.8.

Exit: 0 done, every swept account is clean ("no files" recorded); 1 done, but something of
a swept account is left (young or spared files, errors, a cap reached); 2 usage or
configuration refused; 3 another glexec-sweep is running (lock held); 4 system failure
(a root cannot be opened safely, the audit or state record cannot be written ...).
"""
import argparse
import json
import os
import pwd
import socket
import sys
import time

from glexec_py.core.text import printable

EXIT_CLEAN, EXIT_LEFT, EXIT_USAGE, EXIT_LOCKED, EXIT_FAIL = 0, 1, 2, 3, 4
PROG = "glexec-sweep"


def default_config_path():
    """PREFIX/etc/glexec-py/sweep.yaml for the PREFIX this tool is installed in."""
    here = os.path.realpath(__file__)
    lib = os.path.dirname(os.path.dirname(here))
    if lib.endswith("/lib/glexec-py"):
        prefix = lib[: -len("/lib/glexec-py")]
        return ("" if prefix in ("", "/usr") else prefix) + "/etc/glexec-py/sweep.yaml"
    return "/usr/local/etc/glexec-py/sweep.yaml"


def build_parser():
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Remove old files, SysV IPC objects and POSIX message queues of pool "
                    "accounts that hold no lease and run no process.",
        epilog="Exit status: 0 clean, 1 something left, 2 usage/config refused, "
               "3 another run holds the lock, 4 system failure.")
    p.add_argument("--config", default=None, help="sweep.yaml (default: %s)" % default_config_path())
    p.add_argument("--dry-run", "--test", dest="dry_run", action="store_true",
                   help="remove nothing; print every decision with its reason")
    p.add_argument("--json", action="store_true", help="JSON lines: decisions (with --dry-run "
                   "or --verbose) and one final summary object")
    p.add_argument("--verbose", "-v", action="store_true", help="print every decision also when removing")
    p.add_argument("--account", action="append", default=[], help="only this pool account (repeatable)")
    p.add_argument("--uid", action="append", type=int, default=[], help="only this pool uid (repeatable)")
    return p


class Usage(Exception):
    pass


def escape_path(b):
    """Path bytes as one printable line (core.text.printable): newlines, invalid UTF-8 and
    terminal escapes cannot reach the tty."""
    return printable(b)


def read_config(path):
    """Runs as: root.  The config file must be a regular root-owned file not writable by
    group/other (it decides what root deletes)."""
    from glexec_py.core import sweep as core
    import stat
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as e:
        raise Usage(f"{path}: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o022:
            raise Usage(f"{path}: must be a regular root-owned file, not group/other-writable")
        if st.st_size > 1 << 20:
            raise Usage(f"{path}: larger than 1 MiB")
        data = os.read(fd, (1 << 20) + 1)
    finally:
        os.close(fd)
    try:
        return core.parse_config(data, path)
    except core.ConfigProblem as e:
        raise Usage(f"{path}:{e.line}: {e.what}" if e.line else f"{path}: {e.what}") from None


def lookup_uid(name):
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        return None


def account_names(uids):
    """{uid: (name or None, primary gid or None)} from the account database."""
    out = {}
    for u in uids:
        try:
            pw = pwd.getpwuid(u)
            out[u] = (pw.pw_name, pw.pw_gid)
        except KeyError:
            out[u] = (None, None)
    return out


def lease_holders(gridmapdir):
    """Runs as: root.  (accounts with a complete lease, those of them marked draining)."""
    if not gridmapdir:
        return set(), set()
    from glexec_py.effects.gridmapdir import GridmapDir
    with GridmapDir(gridmapdir) as gd:
        leases = gd.leases()
    held, draining = set(), set()
    for _lease, (account, rec, _mtime) in leases.items():
        a = account.decode("utf-8", "surrogateescape") if isinstance(account, bytes) else account
        held.add(a)
        if rec and rec.get("state") == "draining":
            draining.add(a)
    return held, draining


def _now_iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%06dZ" % int(t % 1 * 1e6)


class Printer:
    def __init__(self, as_json, out):
        self.as_json = as_json
        self.out = out
        self.owner = {}

    def decision(self, root, rel, st, d):
        path = root + b"/" + rel
        if self.as_json:
            from glexec_py.core.audit import encode
            self.out.write(encode({"path": path, "uid": st.st_uid, "action": d.action,
                                   "reason": d.reason, "rmdir_if_empty": d.rmdir}).decode("ascii"))
        else:
            extra = " (rmdir if empty)" if d.rmdir else ""
            self.out.write(f"{d.action:7} uid={st.st_uid:<6} {escape_path(path)}  # {d.reason}{extra}\n")

    def account(self, name, uid, verdict, why):
        if self.as_json:
            self.out.write(json.dumps({"account": name, "uid": uid, "sweep": verdict, "reason": why}) + "\n")
        else:
            self.out.write(f"account {name or '-'} uid={uid}: {'sweep' if verdict else 'spare'}  # {why}\n")


def main(argv=None):
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return EXIT_USAGE if e.code else 0
    if os.geteuid() != 0:
        sys.stderr.write(f"{PROG}: permission denied: root only\n")
        return EXIT_USAGE
    os.umask(0o077)
    try:
        return run(args, sys.stdout)
    except Usage as e:
        sys.stderr.write(f"{PROG}: {escape_path(str(e).encode('utf-8', 'surrogateescape'))}\n")
        return EXIT_USAGE


def run(args, out):
    from glexec_py.core import sweep as core
    from glexec_py.effects import sweep_walk as walk
    t0 = time.monotonic()
    now = time.time()
    cfg = read_config(args.config or default_config_path())
    try:
        pool = core.resolve_pool(cfg.pool, lookup_uid, cfg.min_uid)
    except core.ConfigProblem as e:
        raise Usage(e.what) from None
    names = account_names(pool)
    wanted = set(pool)
    if args.account or args.uid:
        wanted = set()
        for a in args.account:
            u = lookup_uid(a)
            if u is None or u not in pool:
                raise Usage(f"--account {a}: not a pool account of this configuration")
            wanted.add(u)
        for u in args.uid:
            if u not in pool:
                raise Usage(f"--uid {u}: not in the pool of this configuration")
            wanted.add(u)

    # run lock and state dir
    try:
        sfd = walk.ensure_private_dir(cfg.state_dir.rstrip("/") + "/sweep")
    except OSError as e:
        sys.stderr.write(f"{PROG}: state directory: {e}\n")
        return EXIT_FAIL
    try:
        lock = walk.RunLock(sfd) if not cfg.lock_file else _lock_at(cfg.lock_file, walk)
        lock.acquire()
    except BlockingIOError:
        sys.stderr.write(f"{PROG}: another {PROG} is running (lock held); refusing\n")
        return EXIT_LOCKED
    except OSError as e:
        sys.stderr.write(f"{PROG}: lock: {e}\n")
        return EXIT_FAIL

    printer = Printer(args.json, out)
    # who may be swept
    try:
        held, draining = lease_holders(cfg.gridmapdir)
    except Exception as e:   # an unreadable lease store: sweep nobody
        sys.stderr.write(f"{PROG}: cannot read the gridmapdir: {getattr(e, 'message', e)}\n")
        return EXIT_FAIL
    busy = walk.uids_with_processes()
    sweep_uids, spared = {}, {}
    for u in sorted(wanted):
        name, gid = names[u]
        ok, why = core.account_verdict(u, name, leases=held, processes=busy, draining=draining,
                                       sweep_draining=cfg.sweep_draining)
        (sweep_uids if ok else spared)[u] = why
        if args.dry_run or args.verbose:
            printer.account(name, u, ok, why)

    emit = printer.decision if (args.dry_run or args.verbose) else None
    # a lease granted while we sweep: every removal batch re-checks the account's lease
    # under the gridmapdir lock and holds the lock while it removes (docs/leases.md)
    guard = walk.LeaseGuard(cfg.gridmapdir, {u: names[u][0] for u in sweep_uids},
                            cfg.sweep_draining) if cfg.gridmapdir else None
    walker = walk.Walker(set(sweep_uids), {u: names[u][1] for u in sweep_uids if names[u][1] is not None},
                         dry_run=args.dry_run, as_owner=cfg.as_owner,
                         deadline=t0 + cfg.max_runtime, max_removals=cfg.max_removals,
                         emit=emit, now=now, guard=guard)
    rules = list(cfg.rules)
    # Object classes this run cannot inspect (nobody is then "no_files": an object not seen
    # is not an object gone), and those the configuration opts out of (named in the records).
    unchecked = {}
    not_swept = [k for k, on in (("devshm", cfg.devshm_dir), ("mqueue", cfg.mqueue_dir),
                                 ("sysv", cfg.sysv_ipc)) if not on]
    failures = []
    if sweep_uids:
        if cfg.devshm_dir:
            if os.path.isdir(cfg.devshm_dir):
                rules.append(core.Rule(cfg.devshm_dir, 0, "", "", types=core.DEFAULT_TYPES, kind="devshm"))
            else:
                unchecked["devshm"] = f"{cfg.devshm_dir} is not a directory"
        if cfg.mqueue_dir:
            where, why = mqueue_root(cfg, walk)
            if where is None:
                unchecked["mqueue"] = why
            else:
                rules.append(core.Rule(where, 0, "", "", types=("file",), remove_dirs=False,
                                       max_depth=0, kind="mqueue"))
        for rule in rules:
            try:
                walker.sweep(rule, workers=(cfg.workers or min(4, os.cpu_count() or 1))
                             if rule.kind == "dir" else 1)
            except walk.RootRefused as e:
                failures.append(f"{rule.root.decode('utf-8', 'surrogateescape')}: {e}")
                sys.stderr.write(f"{PROG}: refusing root {escape_path(rule.root)}: {e}\n")
            except walk.SweepStop:
                break
            except OSError as e:
                failures.append(f"{rule.root!r}: {e}")
                sys.stderr.write(f"{PROG}: {escape_path(rule.root)}: {e.strerror}\n")
        if walker.unseen:
            unchecked["files"] = f"{walker.unseen} directories could not be entered"
        if cfg.sysv_ipc and walker.incomplete is None:
            try:
                objects = walk.sysv_objects()
            except (OSError, ValueError) as e:
                unchecked["sysv"] = f"cannot read /proc/sysvipc: {e}"
                objects = []
            for kind, ident, why in core.plan_ipc(objects, set(sweep_uids)):
                objs = [o for o in objects if o[0] == kind and o[1] == ident]
                owner = objs[0][2] if objs and objs[0][2] in sweep_uids else (objs[0][3] if objs else None)
                if emit:
                    out.write(json.dumps({"ipc": kind, "id": ident, "uid": owner, "action": "remove",
                                          "reason": why}) + "\n" if args.json else
                              f"remove  uid={owner!s:<6} sysv-{kind}:{ident}  # {why}\n")
                if owner not in walker.stats:
                    continue
                if args.dry_run:
                    walker.stats[owner].ipc.append((kind, ident))
                    continue
                if guard is None:
                    r = walk.remove_sysv(kind, ident, set(sweep_uids))
                else:
                    with guard.hold(owner) as (free, _why):
                        r = walk.remove_sysv(kind, ident, set(sweep_uids)) if free else "kept"
                if r == "kept":
                    walker.stats[owner].kept += 1
                elif r is None:
                    walker.stats[owner].ipc.append((kind, ident))
                elif r != "gone":
                    walker.stats[owner].errors += 1

    # the lease may have been granted while we swept: never mark such an account
    try:
        held_after, draining_after = lease_holders(cfg.gridmapdir)
    except Exception:
        held_after, draining_after = held, draining
    busy_after = walk.uids_with_processes()
    status = EXIT_CLEAN
    accounts_out = []
    host = socket.gethostname()
    for u in sorted(sweep_uids):
        name = names[u][0] or str(u)
        s = walker.stats[u]
        regranted = (name in held_after and not (name in draining_after and cfg.sweep_draining)) \
            or u in busy_after or u in walker.lost
        clean = (s.kept == 0 and s.errors == 0 and walker.incomplete is None and not failures
                 and not regranted and not unchecked)
        state = "no_files" if clean else "files_remain"
        why = ("lease granted or process started during the sweep" if regranted
               else walker.incomplete or ("roots refused" if failures else
                                          ("cannot inspect " + ", ".join(sorted(unchecked)) if unchecked else
                                           ("errors" if s.errors else ("files kept" if s.kept else "clean")))))
        if not clean:
            status = EXIT_LEFT
        acc = {"account": name, "uid": u, "state": state, "why": why, **s.as_dict(),
               "unchecked": unchecked, "not_swept": not_swept}
        accounts_out.append(acc)
        if args.dry_run:
            continue
        rec = {"time": _now_iso(time.time()), "event": "sweep", "host": host, "pid": os.getpid(),
               "tool": PROG, "account": name, "uid": u, "state": state, "why": why,
               "roots": [r.root for r in rules], **s.as_dict(),
               "unchecked": unchecked, "not_swept": not_swept, "sweep_reason": sweep_uids[u]}
        try:
            if cfg.audit_file:
                from glexec_py.core.audit import encode
                from glexec_py.effects import auditlog
                auditlog.append(cfg.audit_file, auditlog.stamper(rec, encode))
            # the state record is written after the audit record: the lifecycle only
            # sees "no_files" once the removal is on record.
            state_rec = {"v": 1, "account": name, "uid": u, "state": state, "why": why,
                         "swept_at": rec["time"], "swept_at_unix": round(now, 6), "host": host,
                         "removed": s.removed + s.removed_dirs, "kept": s.kept, "errors": s.errors,
                         "ipc_removed": len(s.ipc), "unchecked": unchecked, "not_swept": not_swept}
            walk.write_state(sfd, name, (json.dumps(state_rec, sort_keys=True) + "\n").encode())
        except Exception as e:
            sys.stderr.write(f"{PROG}: cannot record the sweep of {name}: {getattr(e, 'message', e)}\n")
            return EXIT_FAIL
    if failures:
        status = EXIT_FAIL
    summary = {"summary": True, "dry_run": args.dry_run, "seconds": round(time.monotonic() - t0, 3),
               "incomplete": walker.incomplete, "refused_roots": failures,
               "unchecked": unchecked, "not_swept": not_swept,
               "spared": [{"account": names[u][0], "uid": u, "why": w} for u, w in spared.items()],
               "swept": accounts_out, "exit": status}
    if args.json:
        out.write(json.dumps(summary, sort_keys=True) + "\n")
    else:
        for a in accounts_out:
            out.write(f"{'would sweep' if args.dry_run else 'swept'} {a['account']} uid={a['uid']}: "
                      f"removed {a['removed']} files {a['removed_dirs']} dirs "
                      f"{len(a['ipc'])} ipc, kept {a['kept']}, errors {a['errors']} -> {a['state']}"
                      f" ({a['why']})\n")
        for u, w in spared.items():
            out.write(f"spared {names[u][0] or '-'} uid={u}: {w}\n")
        if walker.incomplete:
            out.write(f"incomplete: {walker.incomplete}\n")
        for k, w in sorted(unchecked.items()):
            out.write(f"cannot inspect {k}: {w}\n")
    out.flush()
    return status


def mqueue_root(cfg, walk):
    """Runs as: root.  (directory bytes, None) where this run sees the POSIX message queues
    of its IPC namespace, or (None, why) if it cannot see them.  The configured
    ``mqueue_dir`` when an mqueue file system is mounted there; else (typically no
    /dev/mqueue at all: the queues exist all the same) a private instance mounted in a
    private mount namespace of this process, under the state directory."""
    path = cfg.mqueue_dir.encode("utf-8", "surrogateescape")
    if walk.fs_type(path) == walk.MQUEUE_MAGIC:
        return path, None
    private = (cfg.state_dir.rstrip("/") + "/sweep/.mqueue").encode("utf-8", "surrogateescape")
    try:
        return walk.private_mqueue(private), None
    except OSError as e:
        return None, f"{cfg.mqueue_dir} is not an mqueue mount and a private one failed: {e.strerror or e}"


def _lock_at(path, walk):
    d, _, name = path.rpartition("/")
    dfd = walk.ensure_private_dir(d or "/")
    try:
        return walk.RunLock(dfd, name)
    finally:
        os.close(dfd)
