"""Pool-account leases in PostgreSQL: one lease authority for many nodes (docs/leases.md,
"PostgreSQL backend"; schema tools/glexec_tools/leases/sql/schema-v1.sql, -v2.sql).

The same methods the engine and the tools call on ``GridmapDir`` (``acquire``,
``rollback``, ``release``, ``drain``, ``leases``, ``hold_unleased``), with the same
owner rule (``core.leases``: a lease is reused only by its recorded owner key, groups and
mapcount; a new one takes the LCMAPS name when no other lease has it, else the owner's
alternate name), the same per-caller limit and the same refusals.

Concurrency: READ COMMITTED transactions with explicit locks, not SERIALIZABLE.  Every
acquire first takes a transaction-scoped advisory lock on its identity (so two processes of
one identity, on any node, queue instead of both allocating), a new lease takes the first
free pool account with ``FOR UPDATE SKIP LOCKED`` (grants of different identities never
wait for each other and never fail with a serialization error that would have to be
retried), and the per-caller count runs under an advisory lock on (pool, caller).  The
database's unique constraints and foreign key are the backstop: if code ever raced, the
commit fails and nothing is granted.  SERIALIZABLE would give the same safety from the
constraints alone, but turns every contended grant into a 40001 retry loop.

Failure: any database trouble (unreachable, restarted, slow past ``timeout``) is a
``SystemFault`` (202), and the transaction is rolled back by the server when the connection
drops; nothing is ever granted without a commit, and nothing falls back to another store.
"""
from glexec_py.core import leanjson
from glexec_py.core import leases as core
from glexec_py.core.leases import groups_column, owner_column
from glexec_py.effects.pgclient import Connection, DbError, from_bytea
from glexec_py.errors import NotAuthorized, SystemFault

SCHEMA_VERSION = 2
# The versions this engine works on: 2 only adds the lease history, which the database
# writes itself (a trigger), so a node not yet upgraded keeps working on an upgraded database.
SCHEMA_VERSIONS = ("1", "2")
_RETRYABLE = ("23505", "40001", "40P01")   # unique violation (a backstop fired), serialization, deadlock


def _lat(b):
    return bytes(b).decode("latin-1")


def read_conninfo(path):
    """Runs as: root.  The conninfo text from a root-owned file nobody else can read (it may
    hold a password): trusted directory chain, mode without group/other bits."""
    import os
    from glexec_py.effects import trust
    try:
        trust.check_file(path)
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        raise SystemFault("lease_db_conninfo", f"glexec: cannot read postgresql.conninfo_file: "
                          f"{e.strerror}", path=path) from None
    try:
        st = os.fstat(fd)
        if st.st_uid != 0 or st.st_mode & 0o077:
            raise SystemFault("lease_db_conninfo", "glexec: postgresql.conninfo_file must be "
                              "owned by root and private (mode 0600 or 0400)", path=path,
                              mode=oct(st.st_mode & 0o7777))
        text = os.read(fd, 8192).decode("utf-8", "replace").strip()
    finally:
        os.close(fd)
    if not text or "\n" in text:
        raise SystemFault("lease_db_conninfo", "glexec: postgresql.conninfo_file must hold one "
                          "line of libpq conninfo", path=path)
    return text


class PgLeaseStore:
    """Runs as: the engine or a site tool (root); talks to the lease database only.

    ``PgLeaseStore(conninfo, *, node, connect_timeout=2.0, timeout=2.0)``: ``node`` is this
    node's name, recorded with every lease it makes or uses (confirmations for expiry
    must come from each such node)."""

    def __init__(self, conninfo, *, node, connect_timeout=2.0, timeout=2.0):
        if not node or len(node) > 255:
            raise SystemFault("lease_db_node", "glexec: postgresql node name must be 1-255 characters")
        self.node = node
        self.db = Connection(conninfo, connect_timeout, timeout)
        self.adopted = False
        self.created = None
        try:
            got = self._q("SELECT max(version) FROM glexec_schema")
        except DbError as e:
            self.close()
            raise SystemFault("lease_db_schema", "glexec: the lease database has no glexec schema "
                              "(glexec-leases db init)", cause=e.message) from None
        if not got or got[0][0] not in SCHEMA_VERSIONS:
            self.close()
            raise SystemFault("lease_db_schema", "glexec: the lease database has schema version "
                              f"{got[0][0] if got else None}, this glexec needs one of {', '.join(SCHEMA_VERSIONS)}")

    def close(self):
        """Runs as: the caller. Closes the connection."""
        self.db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def _q(self, sql, params=()):
        return self.db.query(sql, params)

    def _txn(self, body):
        """``body()`` inside BEGIN ... COMMIT; rolled back on any exception.  A refused
        commit by a constraint, serialization failure or deadlock: retried (a few times)
        from the top -- the state it decided on changed underneath."""
        for _ in range(8):
            self._q("BEGIN")
            try:
                out = body()
                self._q("COMMIT")
                return out
            except DbError as e:
                self._abort()
                if e.sqlstate not in _RETRYABLE:
                    raise SystemFault("lease_db", f"glexec: lease database refused: {e.message}"[:400],
                                      sqlstate=e.sqlstate) from None
            except BaseException:
                self._abort()
                raise
        raise SystemFault("lease_unstable", "glexec: lease database keeps changing; giving up")

    def _abort(self):
        if self.db.conn is not None:
            try:
                self._q("ROLLBACK")
            except (DbError, SystemFault):
                self.db.close()

    # --- the engine's calls ----------------------------------------------------------

    def acquire(self, dn_oneline, pool, groups=(), mapcount=0, account_check=None, owner=None,
                before_link=None, caller=None, caller_limit=0, entry_filter=None):
        """Runs as: root (a client of the database).  ``GridmapDir.acquire``'s contract:
        returns ``(account, lease_name, reused)`` (bytes, bytes, bool); refusals
        ``lease_draining``, ``wrong_pool``, ``caller_lease_limit``, ``pool_exhausted``,
        ``lease_collision``, ``lease_name`` (203); database trouble 202.  ``owner`` None
        (tools, tests): the LCMAPS name is the owner (LCMAPS's by-name reuse)."""
        dn = bytes(dn_oneline)
        pool = pool.decode("ascii") if isinstance(pool, (bytes, bytearray)) else str(pool)
        groups = tuple(bytes(g) for g in groups)
        if not pool or not all(0x20 < ord(c) < 0x7F and c != "/" for c in pool):
            raise SystemFault("pool_name", "glexec: invalid pool name", pool=pool)
        lcmaps = core.lease_name(dn, groups, mapcount)
        if len(lcmaps) > 255 or b"/" in lcmaps:
            raise NotAuthorized("lease_name", "glexec: identity too long for a pool lease", lease=lcmaps)
        key = owner.key if owner is not None else ("lcmaps", _lat(lcmaps))
        who = (pool, owner_column(key), groups_column(groups), int(mapcount))
        self.created = None
        intended = set()

        def body():
            # one identity (whatever the pool) at a time, on every node
            self._q("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                    ("glexec-identity\0" + "\0".join(map(str, who[1:])),))
            got = self._q("SELECT id, account, name, state, pool FROM lease WHERE owner = $2 AND "
                          "groups = $3 AND mapcount = $4 ORDER BY pool <> $1 LIMIT 1", who)
            if got:
                return self._reuse(got[0], pool, account_check)
            name = self._new_name(lcmaps, key, groups, mapcount)
            if caller is not None and caller_limit:
                self._check_caller_limit(pool, caller, caller_limit, name)
            account = self._choose(pool, account_check, entry_filter, name)
            if before_link is not None and name not in intended:
                before_link(name)          # once per name, even if this transaction is retried
                intended.add(name)
            self._q("UPDATE pool_account SET state = 'leased' WHERE account = $1 AND state = 'free'",
                    (account,))
            row = self._q("INSERT INTO lease (account, pool, state, name, owner, groups, mapcount, dn, "
                          "caller, made_by, node) VALUES ($1, $2, 'leased', $3, $4, $5, $6, $7, $8, "
                          "'glexec-py', $9) RETURNING id",
                          (account, pool, name, who[1], who[2], who[3], dn, caller, self.node))
            lease_id = int(row[0][0])
            self._q("INSERT INTO lease_use (lease_id, node) VALUES ($1, $2)", (lease_id, self.node))
            return account, name, False, lease_id

        account, name, reused, lease_id = self._txn(body)
        if not reused:
            self.created = (lease_id, account, name)
        return account.encode("ascii"), name, reused

    def _reuse(self, row, pool, account_check):
        lease_id, account, name, state, held_pool = row
        name = from_bytea(name)
        if held_pool != pool:
            raise NotAuthorized("wrong_pool", "glexec: existing lease points into another pool",
                                lease=name, entry=account, pool=pool)
        if state == "draining":
            raise NotAuthorized("lease_draining", "glexec: pool account is being drained; retry later",
                                account=account, lease=name)
        if account_check is not None:
            account_check(account)
        self._q("UPDATE lease SET last_use = now(), uses = uses + 1 WHERE id = $1", (lease_id,))
        first_here = self._q("INSERT INTO lease_use (lease_id, node) VALUES ($1, $2) ON CONFLICT "
                             "(lease_id, node) DO UPDATE SET last_use = now() RETURNING xmax = 0",
                             (lease_id, self.node))[0][0] == "t"
        if not first_here:
            # Only times move: losing them in a database crash makes the lease look idle
            # earlier, never forgets a node that must confirm before expiry.  The commit
            # then skips its WAL flush (~4 ms here).
            self._q("SET LOCAL synchronous_commit = off")
        return account, name, True, int(lease_id)

    def _new_name(self, lcmaps, key, groups, mapcount):
        """The LCMAPS name if no lease has it, else the owner's alternate name."""
        if not self._q("SELECT 1 FROM lease WHERE name = $1", (lcmaps,)):
            return lcmaps
        alt = core.alternate_name(lcmaps, core.owner_digest(key, groups, mapcount))
        if len(alt) > 255:
            raise NotAuthorized("lease_name", "glexec: identity too long for a pool lease", lease=alt)
        if self._q("SELECT 1 FROM lease WHERE name = $1", (alt,)):
            raise NotAuthorized("lease_collision", "glexec: the pool lease for this identity is held "
                                "by another identity", lease=alt)
        return alt

    def _check_caller_limit(self, pool, caller, setting, name):
        size = int(self._q("SELECT count(*) FROM pool_account WHERE pool = $1", (pool,))[0][0])
        limit = core.caller_limit(setting, size)
        if limit is None:
            return
        self._q("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                (f"glexec-caller\0{pool}\0{int(caller)}",))
        live = int(self._q("SELECT count(*) FROM lease WHERE pool = $1 AND caller = $2 AND "
                           "state = 'leased'", (pool, caller))[0][0])
        if live >= limit:
            raise NotAuthorized("caller_lease_limit",
                                f"glexec: this caller already holds {live} leases in pool {pool} "
                                f"(limit {limit})", pool=pool, caller=caller, limit=limit, live=live,
                                lease=name)

    def _choose(self, pool, account_check, entry_filter, name):
        """The first free account of the pool (position order) that passes the checks,
        row-locked.  Accounts locked by concurrent grants are skipped; "exhausted" is only
        answered after a pass that waited for them."""
        skipped = []
        for wait in (False, True):
            while True:
                got = self._q("SELECT account FROM pool_account WHERE pool = $1 AND state = 'free' "
                              "AND account <> ALL($2::text[]) ORDER BY position LIMIT 1 FOR UPDATE"
                              + ("" if wait else " SKIP LOCKED"), (pool, _text_array(skipped)))
                if not got:
                    break
                account = got[0][0]
                if account_check is not None:
                    account_check(account)
                if entry_filter is not None and not entry_filter(account):
                    skipped.append(account)
                    continue
                return account
        raise NotAuthorized("pool_exhausted", "glexec: no free pool account (pool exhausted)",
                            pool=pool, lease=name)

    def rollback(self, created):
        """Runs as: root.  Undo a lease this process made whose call was refused, only if
        nobody used it since (``uses`` still 1).  Returns True if released."""
        lease_id, account, _name = created

        def body():
            # the lease history (schema 2) says why it ended: never used, no holder to name
            self._q("SELECT set_config('glexec.lease_end', 'rollback', true)")
            gone = self._q("DELETE FROM lease WHERE id = $1 AND uses = 1 RETURNING account", (lease_id,))
            if not gone:
                return False
            self._q("UPDATE pool_account SET state = 'free' WHERE account = $1", (account,))
            return True
        return self._txn(body)

    # --- the tools' calls -----------------------------------------------------------

    def release(self, lease_name):
        """Runs as: root.  Remove a lease (the account becomes free).  Returns the account
        (bytes) or None.  Checking processes and files is the caller's job."""
        lease = bytes(lease_name)

        def body():
            gone = self._q("DELETE FROM lease WHERE name = $1 RETURNING account", (lease,))
            if not gone:
                return None
            self._q("UPDATE pool_account SET state = 'free' WHERE account = $1", gone[0])
            return gone[0][0].encode("ascii")
        return self._txn(body)

    def drain(self, lease_name):
        """Runs as: root.  Mark a lease draining (kept, refused to its identity, the
        account handed to nobody).  Returns the account or None."""
        lease = bytes(lease_name)

        def body():
            got = self._q("UPDATE lease SET state = 'draining', drained_at = coalesce(drained_at, now()) "
                          "WHERE name = $1 RETURNING account", (lease,))
            if not got:
                return None
            self._q("UPDATE pool_account SET state = 'draining' WHERE account = $1", got[0])
            return got[0][0].encode("ascii")
        return self._txn(body)

    def hold_unleased(self, account, *, draining_ok=True):
        """Runs as: root.  For glexec-sweep: a context manager that row-locks the account
        and yields whether it is free (or draining, with ``draining_ok``).  While held, no
        grant can take the account (grants skip locked rows)."""
        return _Held(self, account.decode("ascii") if isinstance(account, bytes) else account, draining_ok)

    def leases(self, pools=None):
        """Runs as: root.  ``{lease: (account, record, last_use)}`` like ``GridmapDir.leases``
        (bytes for lease, account, dn and groups, as ``GridmapDir`` reads its records);
        the record has the gridmapdir record's fields plus ``nodes`` ({node: last use}),
        ``drained_at`` and ``made_on`` (all times Unix seconds on the database's clock)."""
        rows = self._q(
            "SELECT l.name, l.account, l.dn, l.groups, l.mapcount, extract(epoch FROM l.since), "
            "l.state, l.made_by, l.owner, l.caller, extract(epoch FROM l.last_use), "
            "extract(epoch FROM l.drained_at), l.node, l.id, "
            "(SELECT coalesce(json_object_agg(u.node, extract(epoch FROM u.last_use)), '{}') "
            " FROM lease_use u WHERE u.lease_id = l.id) "
            "FROM lease l WHERE $1::text[] IS NULL OR l.pool = ANY($1::text[])",
            (None if pools is None else _text_array([_str(p) for p in pools]),))
        out = {}
        for (name, account, dn, groups, mapcount, since, state, made_by, owner, caller,
             last_use, drained_at, node, lease_id, nodes) in rows:
            rec = {"account": account.encode("ascii"), "lease": from_bytea(name),
                   "dn": from_bytea(dn), "groups": tuple(g.encode("latin-1") for g in leanjson.loads(groups)),
                   "mapcount": int(mapcount), "state": state,
                   "since": float(since), "by": made_by, "owner": leanjson.loads(owner),
                   "caller": None if caller is None else int(caller), "id": int(lease_id),
                   "drained_at": None if drained_at is None else float(drained_at),
                   "made_on": node, "nodes": {k: float(v) for k, v in leanjson.loads(nodes).items()}}
            out[from_bytea(name)] = (account.encode("ascii"), rec, float(last_use))
        return out

    def clock(self):
        """Runs as: root.  The database's time (Unix seconds): expiry compares every time
        on this clock."""
        return float(self._q("SELECT extract(epoch FROM clock_timestamp())")[0][0])

    def confirm(self, account, node, kind, observed_at, evidence):
        """Runs as: root.  Record that ``node`` saw ``account`` idle (``kind`` "prune": no
        processes, "sweep": no files) at ``observed_at`` (database clock); a newer
        confirmation replaces an older one."""
        self._txn(lambda: self._q(
            "INSERT INTO confirmation (account, node, kind, observed_at, evidence) VALUES "
            "($1, $2, $3, to_timestamp($4), $5) ON CONFLICT (account, node, kind) DO UPDATE SET "
            "observed_at = excluded.observed_at, evidence = excluded.evidence "
            "WHERE confirmation.observed_at < excluded.observed_at",
            (_str(account), node, kind, repr(float(observed_at)), leanjson.dumps(evidence, sort_keys=True))))

    def confirmations(self, account):
        """Runs as: root.  ``{(node, kind): observed_at}`` for ``account``."""
        return {(n, k): float(t) for n, k, t in self._q(
            "SELECT node, kind, extract(epoch FROM observed_at) FROM confirmation WHERE account = $1",
            (_str(account),))}

    def accounts(self, pools=None):
        """Runs as: root.  ``[(pool, account, position, state)]`` in allocation order."""
        return [(p, a, int(n), s) for p, a, n, s in self._q(
            "SELECT pool, account, position, state FROM pool_account WHERE $1::text[] IS NULL "
            "OR pool = ANY($1::text[]) ORDER BY pool, position",
            (None if pools is None else _text_array([_str(p) for p in pools]),))]

    def add_accounts(self, pool, accounts):
        """Runs as: root.  Append pool accounts (free) after the pool's last position;
        existing ones are left as they are.  Returns how many were added."""
        pool = _str(pool)

        def body():
            self._q("LOCK TABLE pool_account IN SHARE ROW EXCLUSIVE MODE")
            start = int(self._q("SELECT coalesce(max(position) + 1, 0) FROM pool_account WHERE pool = $1",
                                (pool,))[0][0])
            added = self._q("INSERT INTO pool_account (account, pool, position) SELECT a, $1, $2 + n - 1 "
                            "FROM unnest($3::text[]) WITH ORDINALITY AS t(a, n) ON CONFLICT DO NOTHING "
                            "RETURNING account", (pool, start, _text_array([_str(a) for a in accounts])))
            return len(added)
        return self._txn(body)


def _str(x):
    return x.decode("ascii") if isinstance(x, (bytes, bytearray)) else str(x)


def _text_array(items):
    """A text[] literal: every element double-quoted with \\ and " escaped."""
    return "{" + ",".join('"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"' for s in items) + "}"


class _Held:
    def __init__(self, store, account, draining_ok):
        self.store, self.account, self.draining_ok = store, account, draining_ok

    def __enter__(self):
        self.store._q("BEGIN")
        try:
            got = self.store._q("SELECT state FROM pool_account WHERE account = $1 FOR UPDATE",
                                (self.account,))
        except BaseException:
            self.store._abort()
            raise
        state = got[0][0] if got else "free"
        return state == "free" or (self.draining_ok and state == "draining")

    def __exit__(self, *exc):
        self.store._abort()
        return False
