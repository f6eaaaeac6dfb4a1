"""glexec-leases effects: the lease store through ``GridmapDir``, the prune-users and
glexec-sweep state records, the admin audit record of every change, and the acting part of
``expire``.
"""
import json
import os
import pwd
import stat
import time

from glexec_tools import front
from glexec_tools.leases import plan as plan_mod
from glexec_tools.leases.plan import _num

PROG = "glexec-leases"
EXIT_FAIL = 3


def _lat(b):
    return None if b is None else bytes(b).decode("latin-1")


def iso(t):
    """Runs as: any user (pure formatting).  Seconds -> the audit records' time format."""
    if t is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%06dZ" % int(t % 1 * 1e6)


def read_state_record(path):
    """Runs as: root.  A prune/sweep state record (dict) or None: root-owned regular file,
    JSON object, v 1."""
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


def confirmation(state_dir, account, drained_at, grace, current_boot):
    """Runs as: root.  ``plan.confirm`` on the account's prune-users and glexec-sweep state
    records (``<state_dir>/prune/<account>.json``, ``<state_dir>/sweep/<account>.json``)."""
    pr = sw = None
    if state_dir:
        base = state_dir.rstrip("/")
        pr = read_state_record(f"{base}/prune/{account}.json")
        sw = read_state_record(f"{base}/sweep/{account}.json")
    return plan_mod.confirm(pr, sw, drained_at, grace, current_boot, bool(state_dir))


class Context:
    """Runs as: root.  One run's view of the lease store: the options over glexec.yaml's ``leases:``
    section and shared values.  The configuration is read unless only ``--gridmapdir`` is
    given (a store looked at on its own)."""

    def __init__(self, args):
        if args.config or not args.gridmapdir:
            cfg = front.load_section("leases", args.config)
        else:
            cfg = plan_mod.default_config()
        self.cfg = cfg
        self.gridmapdir = args.gridmapdir or cfg.gridmapdir
        if self.gridmapdir and not self.gridmapdir.startswith("/"):
            raise front.ToolError("--gridmapdir must be an absolute path")
        self.audit_file = args.audit_file or cfg.audit_file or None
        self.state_dir = args.state_dir or cfg.state_dir or None
        pools = args.pool or cfg.pools
        self.pools = tuple(os.fsencode(p) for p in pools) if pools else None
        self._gd = None

    def need_store(self):
        if not self.gridmapdir:
            raise front.ToolError("no gridmapdir: mapping.gridmapdir is not set (use --gridmapdir)")

    def store(self):
        self.need_store()
        if self._gd is None:
            from glexec_py.effects.gridmapdir import GridmapDir
            self._gd = GridmapDir(self.gridmapdir, pools=self.pools)
        return self._gd

    def close(self):
        if self._gd is not None:
            self._gd.close()

    def require_audit(self):
        if not self.audit_file:
            raise front.ToolError("changing the lease store needs an audit file: --audit-file "
                                  "or --config with audit.file")

    def audit(self, action, **fields):
        """Runs as: root.  One "lease_admin" audit record of a change (front.admin_record);
        ToolError (exit 3) if it cannot be written."""
        from glexec_py.errors import GlexecError
        try:
            front.admin_record(self.audit_file, PROG, "lease_admin",
                               {"gridmapdir": self.gridmapdir, "action": action, **fields})
        except GlexecError as e:
            raise front.ToolError(f"cannot write the audit record to {self.audit_file}: "
                                  f"{e.detail.get('cause', e.message)}", EXIT_FAIL) from None

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


def lease_rows(ctx):
    """Runs as: root.  One dict per lease of the store (account, uid from passwd, DN,
    groups, since, last use, state, owner), sorted by account."""
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
    """Runs as: root.  The pool entries that are free (a single link, no lease)."""
    from glexec_py.core import leases as core
    pools = ctx.pool_names()
    return sorted(_lat(n) for n, _i, nlink, reg in ctx.store().snapshot()
                  if reg and nlink == 1 and any(core.pool_member(n, p) for p in pools))


def expire(ctx, plan, args, processes):
    """Runs as: root.  Carry out an expire plan: drain, settle, re-check (processes, the
    lease still the same and draining) and release, each change audited.  ``processes()``:
    the uids with processes now.  Returns (done, left)."""
    done, left = [], []
    row_uid_busy = plan_mod.row_uid_busy
    if any(p["action"] in ("drain", "release") for p in plan):
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
        busy2 = processes()
        for p in plan:
            if p["action"] != "release":
                continue
            if p["state"] != "draining" and p not in drained_now:
                continue
            if row_uid_busy(p, busy2):
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
    return done, left
