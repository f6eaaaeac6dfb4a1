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
    section and shared values.  The configuration is read unless only ``--gridmapdir`` or
    ``--postgresql`` is given (a store looked at on its own).  The store is the gridmapdir
    or, with ``mapping.lease_store: postgresql`` or ``--postgresql CONNINFO_FILE``, the
    lease database (``self.pg``)."""

    def __init__(self, args):
        pg_file = getattr(args, "postgresql", None)
        if args.config or not (args.gridmapdir or pg_file):
            cfg = front.load_section("leases", args.config)
        else:
            cfg = plan_mod.default_config()
        self.cfg = cfg
        self.pg_settings = dict(cfg.postgresql)
        if pg_file:
            self.pg_settings["conninfo_file"] = pg_file
        if getattr(args, "node", None):
            self.pg_settings["node"] = args.node
        self.pg = bool(pg_file) or (cfg.lease_store == "postgresql" and not args.gridmapdir)
        self._pgs = None
        self.gridmapdir = args.gridmapdir or cfg.gridmapdir
        if self.gridmapdir and not self.gridmapdir.startswith("/"):
            raise front.ToolError("--gridmapdir must be an absolute path")
        self.audit_file = args.audit_file or cfg.audit_file or None
        self.state_dir = args.state_dir or cfg.state_dir or None
        pools = args.pool or cfg.pools
        self.pools = tuple(os.fsencode(p) for p in pools) if pools else None
        self._gd = None

    def need_store(self):
        if not self.pg and not self.gridmapdir:
            raise front.ToolError("no gridmapdir: mapping.gridmapdir is not set (use --gridmapdir)")

    def store(self):
        """The lease store: ``GridmapDir`` or ``PgLeaseStore`` (the same calls)."""
        if self.pg:
            return self.pg_store()
        return self.gridmap_store()

    def gridmap_store(self):
        if not self.gridmapdir:
            raise front.ToolError("no gridmapdir: mapping.gridmapdir is not set (use --gridmapdir)")
        if self._gd is None:
            from glexec_py.effects.gridmapdir import GridmapDir
            self._gd = GridmapDir(self.gridmapdir, pools=self.pools)
        return self._gd

    def pg_store(self):
        if self._pgs is None:
            from glexec_py.effects.pgleases import PgLeaseStore, read_conninfo
            pg = self.pg_settings
            if not pg.get("conninfo_file"):
                raise front.ToolError("no lease database: postgresql.conninfo_file is not set "
                                      "(use --postgresql CONNINFO_FILE)")
            self._pgs = PgLeaseStore(read_conninfo(pg["conninfo_file"]), node=self.node(),
                                     connect_timeout=pg.get("connect_timeout", 2),
                                     timeout=pg.get("timeout_ms", 2000) / 1000)
        return self._pgs

    def node(self):
        return self.pg_settings.get("node") or os.uname().nodename

    def now(self):
        """The clock lease times are on: the database's for PostgreSQL."""
        return self.pg_store().clock() if self.pg else time.time()

    def confirmation(self, account, drained_at, grace, current_boot):
        """Whether ``account`` (draining since ``drained_at``) may be released: the
        database's per-node confirmations, or this node's prune/sweep records."""
        if self.pg:
            return pg_confirmation(self, account, drained_at, grace)
        return confirmation(self.state_dir, account, drained_at, grace, current_boot)

    def where(self):
        """What the audit records and listings name as the store."""
        return {"lease_store": "postgresql", "node": self.node()} if self.pg else \
            {"gridmapdir": self.gridmapdir}

    def close(self):
        if self._gd is not None:
            self._gd.close()
        if self._pgs is not None:
            self._pgs.close()

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
                               {**self.where(), "action": action, **fields})
        except GlexecError as e:
            raise front.ToolError(f"cannot write the audit record to {self.audit_file}: "
                                  f"{e.detail.get('cause', e.message)}", EXIT_FAIL) from None

    def pool_names(self):
        """Explicit --pool, else inferred like GridmapDir: names (not %/.-names) ending in
        digits, pool = name without the trailing digits."""
        if self.pools is not None:
            return self.pools
        if self.pg:
            return tuple(sorted({p.encode() for p, _a, _n, _s in self.pg_store().accounts()}))
        return self.gridmap_pool_names()

    def gridmap_pool_names(self):
        from glexec_py.core import leases as core
        found = set()
        for name, _ino, _nlink, _reg in self.gridmap_store().snapshot():
            if name[:1] != b"%" and not core.skip_entry(name):
                prefix = name.rstrip(b"0123456789")
                if prefix and prefix != name:
                    found.add(prefix)
        return tuple(sorted(found))

    def drained_at(self, account):
        """When the metadata record was last written (a draining record is written by
        ``drain``; later rewrites only move this later: conservative).  PostgreSQL: the
        lease's drained_at (database clock)."""
        if self.pg:
            for _lease, (acc, rec, _t) in self.pg_store().leases().items():
                if acc.decode() == account:
                    return rec.get("drained_at")
            return None
        return self.gridmap_drained_at(account)

    def gridmap_drained_at(self, account):
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
        row = {"lease": _lat(lease), "account": _lat(account), "uid": uid,
               "dn": _lat(rec.get("dn")), "groups": [_lat(g) for g in rec.get("groups", ())],
               "mapcount": rec.get("mapcount", 0), "since": since, "since_iso": iso(since),
               "last_use": mtime, "last_use_iso": iso(mtime), "state": state,
               "by": rec.get("by"), "owner": _owner(rec.get("owner"))}
        if "nodes" in rec:            # PostgreSQL: where it was used, and when it was drained
            row["nodes"] = rec["nodes"]
            row["drained_at"] = rec["drained_at"]
        rows.append(row)
    rows.sort(key=lambda r: (r["account"], r["lease"]))
    return rows


def free_entries(ctx):
    """Runs as: root.  The pool entries that are free (a single link, no lease)."""
    if ctx.pg:
        pools = None if ctx.pools is None else [p.decode() for p in ctx.pools]
        return [a for _p, a, _n, state in ctx.pg_store().accounts(pools) if state == "free"]
    from glexec_py.core import leases as core
    pools = ctx.pool_names()
    return sorted(_lat(n) for n, _i, nlink, reg in ctx.store().snapshot()
                  if reg and nlink == 1 and any(core.pool_member(n, p) for p in pools))


def pg_confirmation(ctx, account, drained_at, grace):
    """Runs as: root (a database client).  ``plan.confirm_nodes`` for ``account``'s lease:
    the nodes it was used on and their confirmations in the database."""
    for _lease, (acc, rec, _t) in ctx.pg_store().leases().items():
        if acc.decode() == account:
            return plan_mod.confirm_nodes(rec["nodes"], ctx.pg_store().confirmations(account),
                                          drained_at, grace)
    return False, "lease vanished", {}


def post_confirmations(ctx, cb):
    """Runs as: root.  This node's prune-users and glexec-sweep records of every draining
    lease that was used here, as confirmations in the database.  A record counts only if
    it says "no processes" (this boot) / "no files"; its time (this node's clock) is moved
    to the database's clock by the offset measured now.  Returns one row per record."""
    store = ctx.pg_store()
    node = ctx.node()
    local = time.time()
    offset = store.clock() - local
    out = []
    for lease, (acc, rec, _t) in store.leases().items():
        account = acc.decode()
        if rec["state"] != "draining" or node not in rec["nodes"]:
            continue
        base = (ctx.state_dir or "").rstrip("/")
        pr = read_state_record(f"{base}/prune/{account}.json") if base else None
        sw = read_state_record(f"{base}/sweep/{account}.json") if base else None
        for kind, r, ok, t in (
                ("prune", pr, pr is not None and pr.get("result") == "no_processes"
                 and (not cb or pr.get("boot_id") == cb), _num(pr.get("time")) if pr else None),
                ("sweep", sw, sw is not None and sw.get("state") == "no_files",
                 _num(sw.get("swept_at_unix")) if sw else None)):
            row = {"account": account, "lease": _lat(lease), "kind": kind, "node": node}
            if not ok or t is None:
                out.append({**row, "posted": False, "why": f"no {kind} record saying idle"})
                continue
            store.confirm(account, node, kind, t + offset, r)
            out.append({**row, "posted": True, "observed_at": t + offset})
    return out


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


# --- PostgreSQL only: checks, schema, accounts, migration ---------------------------------

# What the database's constraints cannot say on their own (a deferred trigger covers the
# state <-> lease rule at commit; these find anything an administrator forced past it).
PG_CHECKS = (
    ("lease_without_account", "error", "a lease on no pool account of its pool and state",
     "SELECT l.account FROM lease l LEFT JOIN pool_account p ON p.account = l.account AND "
     "p.pool = l.pool AND p.state = l.state WHERE p.account IS NULL"),
    ("account_without_lease", "error", "a pool account leased or draining without a lease",
     "SELECT p.account FROM pool_account p LEFT JOIN lease l ON l.account = p.account "
     "WHERE p.state <> 'free' AND l.id IS NULL"),
    ("lease_unused", "warning", "a lease with no node it was used on (cannot be confirmed)",
     "SELECT l.account FROM lease l WHERE NOT EXISTS (SELECT 1 FROM lease_use u "
     "WHERE u.lease_id = l.id)"),
)


def pg_fsck(ctx):
    """Runs as: root (a database client).  core.leases.Finding per violated check."""
    from glexec_py.core.leases import Finding
    out = []
    for kind, severity, why, sql in PG_CHECKS:
        for (account,) in ctx.pg_store()._q(sql):
            out.append(Finding(kind, severity, (account.encode(),), None, why, "manual"))
    return out


SCHEMA_LATEST = 2


def schema_files():
    """[(version, path)]: schema-v1.sql installs version 1, each later file upgrades from
    the version before it."""
    d = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sql")
    return [(n, os.path.join(d, f"schema-v{n}.sql")) for n in range(1, SCHEMA_LATEST + 1)]


def db_init(ctx):
    """Runs as: root.  Install the schema into an empty database, or upgrade an older
    glexec schema to ``SCHEMA_LATEST``, in one transaction (under an advisory lock: two
    runs at once do it once).  Returns the version found (0: none), or None if it is
    current already."""
    from glexec_py.effects.pgclient import Connection, DbError
    from glexec_py.effects.pgleases import read_conninfo
    pg = ctx.pg_settings
    if not pg.get("conninfo_file"):
        raise front.ToolError("no lease database: use --postgresql CONNINFO_FILE or --config")
    files = schema_files()
    with Connection(read_conninfo(pg["conninfo_file"]), pg.get("connect_timeout", 2), 30) as db:
        db.query("BEGIN")
        try:
            db.query("SELECT pg_advisory_xact_lock(1329)")
            have = 0
            if db.query("SELECT to_regclass('glexec_schema')")[0][0] is not None:
                have = int(db.query("SELECT coalesce(max(version), 0) FROM glexec_schema")[0][0])
            if have > SCHEMA_LATEST:
                raise front.ToolError(f"the lease database has schema version {have}, newer than "
                                      f"this glexec-leases knows ({SCHEMA_LATEST})", EXIT_FAIL)
            if have == SCHEMA_LATEST:
                db.query("ROLLBACK")
                return None
            for _version, path in files[have:]:
                with open(path) as f:
                    for statement in _statements(f.read()):
                        db.query(statement)
            db.query("COMMIT")
        except DbError as e:
            raise front.ToolError(f"schema not installed: {e.message}", EXIT_FAIL) from None
    return have


def _statements(sql):
    """The schema file's statements (';' at a line end; $$ bodies kept whole)."""
    out, cur, body = [], [], False
    for line in sql.splitlines():
        if not body and (not line.strip() or line.lstrip().startswith("--")):
            continue
        cur.append(line)
        if line.count("$$") % 2:
            body = not body
        if not body and line.rstrip().endswith(";"):
            out.append("\n".join(cur))
            cur = []
    return out


def migrate_to_postgresql(ctx):
    """Runs as: root.  Move the gridmapdir's pool entries and leases into the database:
    one transaction inserts the accounts (readdir order = allocation order, as LCMAPS
    picks) and the leases (owner-less ones keyed by their name: never reused by an
    identity, as on the gridmapdir); after the commit the gridmapdir's leases are
    released.  Refused if the gridmapdir has fsck errors or the database already holds a
    lease of these pools.  Returns (accounts, leases moved)."""
    from glexec_py.core import leases as core
    from glexec_py.core.leases import groups_column, owner_column
    gd = ctx.gridmap_store()
    errors = [f for f in gd.fsck(ctx.pools) if f.severity == "error"]
    if errors:
        raise front.ToolError(f"the gridmapdir has {len(errors)} fsck error(s): repair it first", EXIT_FAIL)
    pools = ctx.gridmap_pool_names() if ctx.pools is None else ctx.pools
    members = {p: [n for n, _i, _l, reg in gd.snapshot() if reg and core.pool_member(n, p)] for p in pools}
    leases = gd.leases(pools)
    store = ctx.pg_store()
    node = ctx.node()
    pool_text = [p.decode() for p in pools]

    def body():
        if store._q("SELECT 1 FROM lease WHERE pool = ANY($1::text[]) LIMIT 1",
                    ("{" + ",".join(pool_text) + "}",)):
            raise front.ToolError("the database already holds leases of these pools", EXIT_FAIL)
        for p, names in members.items():
            store._q("INSERT INTO pool_account (account, pool, position) SELECT a, $1, "
                     "coalesce((SELECT max(position) + 1 FROM pool_account WHERE pool = $1), 0) + n - 1 "
                     "FROM unnest($2::text[]) WITH ORDINALITY AS t(a, n) ON CONFLICT DO NOTHING",
                     (p.decode(), "{" + ",".join(n.decode() for n in names) + "}"))
        for lease, (account, rec, mtime) in leases.items():
            rec = rec or {}
            pool = next(p for p in pools if core.pool_member(account, p)).decode()
            owner = rec.get("owner") or ["lcmaps", _lat(lease)]
            groups = tuple(rec.get("groups", ()))
            state = "draining" if rec.get("state") == "draining" else "leased"
            drained = ctx.gridmap_drained_at(os.fsdecode(account)) if state == "draining" else None
            got = store._q("UPDATE pool_account SET state = $2 WHERE account = $1 AND pool = $3 "
                           "AND state = 'free' RETURNING account", (account.decode(), state, pool))
            if not got:
                raise front.ToolError(f"pool account {account.decode()} is not free in the database", EXIT_FAIL)
            row = store._q(
                "INSERT INTO lease (account, pool, state, name, owner, groups, mapcount, dn, caller, "
                "made_by, node, since, last_use, drained_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, "
                "'migrated', $10, to_timestamp($11), to_timestamp($12), to_timestamp($13)) RETURNING id",
                (account.decode(), pool, state, lease, owner_column(owner), groups_column(groups),
                 int(rec.get("mapcount", 0) or 0),
                 rec.get("dn"), rec.get("caller"),
                 node, repr(float(rec.get("since") or mtime)), repr(float(mtime)),
                 None if drained is None else repr(float(drained))))
            store._q("INSERT INTO lease_use (lease_id, node, first_use, last_use) VALUES "
                     "($1, $2, to_timestamp($3), to_timestamp($3))", (row[0][0], node, repr(float(mtime))))
        return sum(len(v) for v in members.values()), len(leases)
    counts = store._txn(body)
    for lease in leases:
        gd.release(lease)
    return counts


def migrate_to_gridmapdir(ctx):
    """Runs as: root.  Move the database's leases of the pools into the gridmapdir (its
    pool entries must exist and be free): each lease is linked with its record
    (``GridmapDir.place``), then all are removed from the database in one transaction.
    Refused before any change if an entry is missing or taken.  Returns leases moved."""
    gd = ctx.gridmap_store()
    store = ctx.pg_store()
    pools = None if ctx.pools is None else [p.decode() for p in ctx.pools]
    leases = store.leases(pools)
    snap = {n: (nlink, reg) for n, _i, nlink, reg in gd.snapshot()}
    for lease, (account, rec, _t) in leases.items():
        if snap.get(account) != (1, True):
            raise front.ToolError(f"pool entry {account.decode()} is missing or not free in the gridmapdir",
                                  EXIT_FAIL)
        if lease in snap:
            raise front.ToolError(f"lease name {_lat(lease)} already exists in the gridmapdir", EXIT_FAIL)
    for lease, (account, rec, last_use) in leases.items():
        owner = rec["owner"] if rec["owner"] and rec["owner"][0] in ("x509", "jwt") else None
        gd.place(lease, account, dn=rec["dn"], groups=rec["groups"], mapcount=rec["mapcount"],
                 owner=owner, caller=rec["caller"], state=rec["state"], since=rec["since"],
                 last_use=last_use)

    def body():
        store._q("SELECT set_config('glexec.lease_end', 'migrated', true)")    # lease history
        for lease, (account, _rec, _t) in leases.items():
            store._q("DELETE FROM lease WHERE name = $1", (lease,))
            store._q("UPDATE pool_account SET state = 'free' WHERE account = $1", (account.decode(),))
        return len(leases)
    return store._txn(body)

