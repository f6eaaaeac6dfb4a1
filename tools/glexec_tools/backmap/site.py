"""The site-wide back-mapping index: audit records shipped by every node -> PostgreSQL.

Runs as: root (the tool), as a PostgreSQL role that owns these tables.

Feed (packaging/rsyslog/): each node ships every audit record as one ``glexec-audit``
syslog message (``glexec_py.effects.auditlog.ship``) over RELP with a disk-assisted queue;
the collector's rsyslog inserts each message as it is (``ompgsql``) into the staging table
``glexec_audit_inbox``.  ``ingest`` moves the staged rows into ``site_lines``:

* de-duplicated: at-least-once delivery repeats messages; a line is known by (host, its
  sha256), so a repeat is dropped and counted, never a second record;
* verified: a message whose record does not hash to the sha256 its sender wrote, or whose
  host is not the host rsyslog received it from, is refused into ``site_rejects`` (its
  absence then shows as a gap in that host's chain);
* then the history of every host that got lines is rebuilt from its lines, each audit
  chain (one audit file, known by the sha256 of its first line) in ``seq`` order, chains
  in the order of their first record: a ``seq`` that skips is a ``shipping_gap`` flag over
  the time between the records around it ("unknown" there, as a damaged record is in the
  per-node index), a record that does not chain to its predecessor (edited, or a second,
  different record with the same ``seq``) is a ``chain_break`` -- the semantics of
  ``glexec_tools.backmap.plan``, per host instead of per file.

The answers come from the same tables and queries as the per-node SQLite index
(``apply.Index``): this class only stores differently.

Second source: the PostgreSQL lease backend (``mapping.lease_store: postgresql``).
``refresh_leases`` reads its leases (to now) and, with schema 2, its lease history (to
each lease's end; leases rolled back by a refused call held nothing and are left out), one
"lease" occupation per node a lease was used on (``lease_occupation(source="lease_db")``),
and ``plan.records_first`` decides where they meet the records: the records win, a
lease-only answer says so.  The lease's times are on the database's clock, the records'
on their nodes' (NTP).  A lease's uid: the account's on this host, else the one the
records of any node show for it (a site's shared pool accounts); neither: left out.
"""
from glexec_tools.backmap import plan as bm
from glexec_tools.backmap.apply import LONG_SPAN, Index, _b, _refs_text
from glexec_py.errors import SystemFault

SCHEMA = """
CREATE TABLE IF NOT EXISTS glexec_audit_inbox(id bigserial PRIMARY KEY,
    received timestamptz DEFAULT now(), fromhost text, hostname text, msg text);
CREATE TABLE IF NOT EXISTS site_meta(key text PRIMARY KEY, value bigint);
CREATE TABLE IF NOT EXISTS site_lines(host text, sha256 text, chain text, seq bigint,
    time bigint, boot_id text, line bytea, received timestamptz DEFAULT now(),
    PRIMARY KEY(host, sha256));
CREATE INDEX IF NOT EXISTS site_lines_order ON site_lines(host, chain, seq);
CREATE TABLE IF NOT EXISTS site_chains(id bigserial PRIMARY KEY, host text, chain text,
    UNIQUE(host, chain));
CREATE TABLE IF NOT EXISTS site_rejects(id bigserial PRIMARY KEY,
    received timestamptz DEFAULT now(), fromhost text, hostname text, why text, msg text);
CREATE TABLE IF NOT EXISTS hosts(id bigserial PRIMARY KEY, name bytea UNIQUE);
CREATE TABLE IF NOT EXISTS identities(id bigserial PRIMARY KEY, dn bytea, issuer bytea,
    fqans bytea, UNIQUE NULLS NOT DISTINCT (dn, issuer, fqans));
CREATE TABLE IF NOT EXISTS callers(id bigserial PRIMARY KEY, uid bigint, gid bigint,
    "user" bytea, grp bytea, groups text, UNIQUE NULLS NOT DISTINCT (uid, gid, "user", grp, groups));
CREATE TABLE IF NOT EXISTS occupations(id bigserial PRIMARY KEY, kind text, host_id bigint,
    uid bigint, account bytea, identity_id bigint, caller_id bigint, caller_pid bigint,
    caller_ppid bigint, caller_sid bigint, caller_pgid bigint, engine_pid bigint,
    start bigint, "end" bigint, cut bigint, lo bigint, hi bigint, payload_pid bigint,
    status bigint, notes text, evidence text);
CREATE TABLE IF NOT EXISTS flags(id bigserial PRIMARY KEY, kind text, host bytea, lo bigint,
    hi bigint, series_id bigint, evidence text, why bytea);
"""
INDEXES = f"""
CREATE INDEX IF NOT EXISTS occ_uid ON occupations(uid, lo, hi);
CREATE INDEX IF NOT EXISTS occ_uid_long ON occupations(uid, lo) WHERE lo < hi - {LONG_SPAN};
CREATE INDEX IF NOT EXISTS occ_account_long ON occupations(account, lo) WHERE lo < hi - {LONG_SPAN};
CREATE INDEX IF NOT EXISTS occ_lo ON occupations(lo);
CREATE INDEX IF NOT EXISTS occ_lo_long ON occupations(lo) WHERE lo < hi - {LONG_SPAN};
CREATE INDEX IF NOT EXISTS occ_account ON occupations(account, lo);
CREATE INDEX IF NOT EXISTS occ_identity ON occupations(identity_id, lo);
CREATE INDEX IF NOT EXISTS occ_payload ON occupations(payload_pid);
CREATE INDEX IF NOT EXISTS occ_host ON occupations(host_id);
CREATE INDEX IF NOT EXISTS ident_dn ON identities(dn);
CREATE INDEX IF NOT EXISTS flags_lo ON flags(lo, hi);
CREATE INDEX IF NOT EXISTS flags_host ON flags(host);
"""
INGEST_BATCH = 20_000

LEASE_SCAN_MAX_AGE = 60 * 1_000_000    # µs: a query rereads the lease database after this


class SiteDbError(Exception):
    """A database call of the query path failed (the message is libpq's first line)."""


def database_error():
    """The exception classes a failing database call raises (for ``except``)."""
    try:
        import psycopg2
        return (psycopg2.Error, SiteDbError)
    except ImportError:
        return SiteDbError


class _Rows(list):
    """A result as a list of tuples, with the two cursor calls ``apply.Index`` makes."""

    def fetchone(self):
        return self[0] if self else None

    def fetchall(self):
        return list(self)


class _Libpq:
    """The query path's connection: libpq itself through ctypes.  ``import psycopg2`` costs
    a fresh process 35-100 ms (it loads ssl, json, decimal, datetime ...), loading libpq
    ~15 ms, which is what keeps a query from a new process within its 50 ms.  Read-only
    use: one REPEATABLE READ transaction (the whole answer sees one snapshot), parameters
    sent apart from the SQL text (PQexecParams), values typed by their column's type."""

    _INT, _BYTEA, _BOOL = (20, 21, 23, 26), 17, 16

    def __init__(self, conninfo):
        import ctypes
        from ctypes import c_char_p, c_int, c_void_p, POINTER
        try:
            pq = ctypes.CDLL("libpq.so.5")
        except OSError:
            raise SystemFault("backmap_site", "glexec-backmap: the site index needs libpq5") from None
        for name, res, args in (
                ("PQconnectdbParams", c_void_p, [POINTER(c_char_p), POINTER(c_char_p), c_int]),
                ("PQstatus", c_int, [c_void_p]), ("PQexec", c_void_p, [c_void_p, c_char_p]),
                ("PQerrorMessage", c_char_p, [c_void_p]), ("PQfinish", None, [c_void_p]),
                ("PQexecParams", c_void_p, [c_void_p, c_char_p, c_int, c_void_p,
                                            POINTER(c_char_p), c_void_p, c_void_p, c_int]),
                ("PQresultStatus", c_int, [c_void_p]), ("PQntuples", c_int, [c_void_p]),
                ("PQnfields", c_int, [c_void_p]), ("PQftype", ctypes.c_uint, [c_void_p, c_int]),
                ("PQgetvalue", c_void_p, [c_void_p, c_int, c_int]),
                ("PQgetlength", c_int, [c_void_p, c_int, c_int]),
                ("PQgetisnull", c_int, [c_void_p, c_int, c_int]),
                ("PQresultErrorMessage", c_char_p, [c_void_p]), ("PQclear", None, [c_void_p])):
            f = getattr(pq, name)
            f.restype, f.argtypes = res, args
        self.pq, self.ctypes = pq, ctypes
        # Our defaults first: the site's connection string (expanded from "dbname", last)
        # overrides any of them.  Notices would go to stderr, which carries one line at
        # most.  gssencmode: "prefer" initialises Kerberos in every new process (up to
        # ~10 ms here) to try an encryption "prefer" would give up silently anyway; a site
        # that wants it says gssencmode=require (or sslmode=verify-full) in its string.
        words = (ctypes.c_char_p * 6)(b"connect_timeout", b"application_name", b"options",
                                      b"gssencmode", b"dbname", None)
        values = (ctypes.c_char_p * 6)(b"10", b"glexec-backmap", b"-c client_min_messages=error",
                                       b"disable", conninfo.encode(), None)
        self.conn = pq.PQconnectdbParams(words, values, 1)
        if not self.conn or pq.PQstatus(self.conn) != 0:        # CONNECTION_OK
            why = pq.PQerrorMessage(self.conn) if self.conn else b"out of memory"
            self.close()
            raise SystemFault("backmap_site", "glexec-backmap: cannot reach the site index: "
                              + _first_line(why))
        self.schema = None
        self.begin()

    def begin(self):
        """A new read snapshot, and in the same round trip what every query needs first:
        ``schema`` (the tables are there), ``pending`` (records staged for ingest) and
        ``coverage`` (first and last record time)."""
        pq = self.pq
        res = pq.PQexec(self.conn, (b"COMMIT; " if self.schema else b"")
                        + b"BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; "
                        b"SELECT EXISTS (SELECT 1 FROM glexec_audit_inbox), "
                        b"(SELECT value FROM site_meta WHERE key = 'first_time'), "
                        b"(SELECT value FROM site_meta WHERE key = 'last_time'), "
                        b"(SELECT value FROM site_meta WHERE key = 'lease_scan')")
        try:
            if not res or pq.PQresultStatus(res) != 2:
                if res and pq.PQresultStatus(res) == 7 and self.schema is None:
                    self.schema, self.pending, self.coverage = False, False, (None, None)
                    self.lease_scan = None
                    self.execute("ROLLBACK")       # a new database: no tables yet
                    return
                raise SiteDbError(_first_line(pq.PQerrorMessage(self.conn)))
            value = [None if pq.PQgetisnull(res, 0, c) else
                     self.ctypes.string_at(pq.PQgetvalue(res, 0, c)) for c in range(4)]
            self.schema, self.pending = True, value[0] == b"t"
            self.coverage = tuple(None if v is None else int(v) for v in value[1:3])
            self.lease_scan = None if value[3] is None else int(value[3])
        finally:
            if res:
                pq.PQclear(res)

    def close(self):
        if self.conn:
            self.pq.PQfinish(self.conn)
            self.conn = None

    @staticmethod
    def _param(v):
        if v is None:
            return None
        if isinstance(v, (bytes, bytearray, memoryview)):
            return b"\\x" + bytes(v).hex().encode()
        return str(v).encode("utf-8", "surrogatepass")

    def execute(self, sql, args=()):
        pq, ct = self.pq, self.ctypes
        parts = sql.split("?")
        if len(parts) - 1 != len(args):
            raise SiteDbError("internal: parameter count")
        text = parts[0] + "".join(f"${i}{p}" for i, p in enumerate(parts[1:], 1))
        values = (ct.c_char_p * max(len(args), 1))(*[self._param(a) for a in args])
        res = pq.PQexecParams(self.conn, text.encode(), len(args), None, values, None, None, 0)
        try:
            status = pq.PQresultStatus(res) if res else 7
            if status not in (1, 2):                  # PGRES_COMMAND_OK, PGRES_TUPLES_OK
                raise SiteDbError(_first_line(pq.PQresultErrorMessage(res) if res else
                                              pq.PQerrorMessage(self.conn)))
            rows, cols = pq.PQntuples(res), pq.PQnfields(res)
            kinds = [pq.PQftype(res, c) for c in range(cols)]
            out = _Rows()
            for r in range(rows):
                row = []
                for c in range(cols):
                    if pq.PQgetisnull(res, r, c):
                        row.append(None)
                        continue
                    raw = ct.string_at(pq.PQgetvalue(res, r, c), pq.PQgetlength(res, r, c))
                    k = kinds[c]
                    row.append(int(raw) if k in self._INT else bytes.fromhex(raw[2:].decode())
                               if k == self._BYTEA else raw == b"t" if k == self._BOOL
                               else raw.decode("utf-8", "surrogateescape"))
                out.append(tuple(row))
            return out
        finally:
            if res:
                pq.PQclear(res)


def _first_line(raw):
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return (text.strip().splitlines() or ["database error"])[0]


class _Pg:
    """``apply.Index``'s two write calls on psycopg2 (the ingest path)."""

    def __init__(self, conn):
        self.conn = conn

    def execute(self, sql, args=()):
        cur = self.conn.cursor()
        cur.execute(sql.replace("?", "%s"), args)
        return cur

    def executemany(self, sql, rows):
        from psycopg2.extras import execute_values
        if rows:
            execute_values(self.conn.cursor(), sql, rows, page_size=5000)


def connect(conninfo, what="the site index"):
    """Runs as: any user.  A psycopg2 connection (the ingest path); SystemFault (one
    line) if it fails."""
    try:
        import psycopg2
    except ImportError:
        raise SystemFault("backmap_site", "glexec-backmap: the site index needs python3-psycopg2") from None
    try:
        return psycopg2.connect(conninfo, connect_timeout=10,
                                application_name="glexec-backmap")
    except psycopg2.Error as e:
        raise SystemFault("backmap_site", f"glexec-backmap: cannot reach {what}: "
                          f"{_first_line(str(e))}") from None


_US = "(extract(epoch FROM {}) * 1000000)::bigint"
LEASES_NOW = ("SELECT u.node, l.account, l.dn, " + _US.format("l.since") + ", l.id "
              "FROM lease l JOIN lease_use u ON u.lease_id = l.id")
LEASES_ENDED = ("SELECT account, dn, " + _US.format("since") + ", " + _US.format("ended")
                + ", nodes, lease_id FROM lease_history WHERE ended_by <> 'rollback'")


def lease_evidence(conninfo):
    """Runs as: root (a read-only client of the lease database).  ([(node, account, dn,
    since_us, until_us, ended, lease id)], read_at_us): every lease now (until = when read)
    and, where the schema has it (version 2), every lease that ended (until = its end),
    once per node it was used on.  One snapshot; times on the database's clock."""
    conn = connect(conninfo, "the lease database")
    try:
        conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
        cur = conn.cursor()
        cur.execute("SELECT " + _US.format("clock_timestamp()") + ", "
                    "to_regclass('lease_history') IS NOT NULL")
        now, history = cur.fetchone()
        out = []
        cur.execute(LEASES_NOW)
        for node, account, dn, since, lease_id in cur.fetchall():
            out.append((node, account, _dn(dn), since, max(since, now), False, lease_id))
        if history:
            import json
            cur.execute(LEASES_ENDED)
            for account, dn, since, ended, nodes, lease_id in cur.fetchall():
                for node in sorted(json.loads(nodes)):
                    out.append((node, account, _dn(dn), since, ended, True, -lease_id))
        conn.rollback()
        return out, now
    finally:
        conn.close()


def _dn(raw):
    return None if raw is None else bytes(raw).decode("utf-8", "surrogateescape")


class SiteIndex(Index):
    """Runs as: root.  ``SiteIndex(conninfo)``; ``ingest()``; ``refresh_leases(conninfo)``;
    then ``apply.Index``'s queries."""

    RECORDS_WIN = True

    def __init__(self, conninfo, *, create=True):
        self.conninfo, self._conn, self.path = conninfo, None, "site"
        self.db = _Libpq(conninfo)              # queries; the writes go through ``conn``
        if create:
            self.create_schema()
        self._host_ids, self._ident_ids, self._caller_ids = {}, {}, {}
        self.stats = {"received": 0, "stored": 0, "duplicates": 0, "rejected": 0}

    @property
    def conn(self):
        """The psycopg2 connection of the write path, made on first use."""
        if self._conn is None:
            self._conn = connect(self.conninfo)
        return self._conn

    def create_schema(self, indexes=True):
        """The tables (and indexes), unless they are there: a query costs no DDL."""
        if self.db.schema:
            return
        cur = self.conn.cursor()
        cur.execute("SELECT pg_advisory_xact_lock(1330)")    # two first runs at once
        cur.execute(SCHEMA + (INDEXES if indexes else ""))
        self.conn.commit()
        self._fresh_snapshot()

    def _fresh_snapshot(self):
        """The query connection's snapshot after a write of this process."""
        self.db.begin()

    def pending(self):
        """Staged records wait for ingest (as of the query side's snapshot)."""
        return self.db.pending

    def close(self):
        self.db.close()
        if self._conn is not None:
            self._conn.close()

    def _intern(self, cache, table, cols, values):
        key = tuple(values)
        found = cache.get(key)
        if found is None:
            quoted = [f'"{c}"' for c in cols]
            where = " AND ".join(f"{c} IS NOT DISTINCT FROM %s" for c in quoted)
            cur = self.conn.cursor()
            cur.execute(f"SELECT id FROM {table} WHERE {where}", key)
            row = cur.fetchone()
            if row is None:
                cur.execute(f"INSERT INTO {table}({','.join(quoted)}) VALUES "
                            f"({','.join(['%s'] * len(cols))}) ON CONFLICT DO NOTHING RETURNING id", key)
                row = cur.fetchone()
                if row is None:                            # inserted meanwhile by another ingest
                    cur.execute(f"SELECT id FROM {table} WHERE {where}", key)
                    row = cur.fetchone()
            found = cache[key] = row[0]
        return found

    def _store_rows(self, occs, flags=()):
        rows = []
        for o in occs:
            c = o.caller or (None,) * 9
            rows.append((o.kind, self._host_id(o.host), o.uid, _b(o.account),
                         self._identity_id(o.identity), self._caller_id(o.caller),
                         c[4], c[5], c[6], c[7], o.engine_pid, o.start, o.end, o.cut, o.lo, o.hi,
                         o.payload_pid, o.status, ",".join(o.notes), _refs_text(o.evidence)))
        pgdb = _Pg(self.conn)
        pgdb.executemany('INSERT INTO occupations(kind, host_id, uid, account, identity_id, '
                         'caller_id, caller_pid, caller_ppid, caller_sid, caller_pgid, '
                         'engine_pid, start, "end", cut, lo, hi, payload_pid, status, notes, '
                         'evidence) VALUES %s', rows)
        frows = [(f.kind, _b(f.host), f.lo, f.hi, f.series, _refs_text([f.ref]) if f.ref else "",
                  _b(f.why)) for f in {id(f): f for f in flags}.values()]
        pgdb.executemany("INSERT INTO flags(kind, host, lo, hi, series_id, evidence, why) "
                            "VALUES %s", frows)

    # -- feeding ------------------------------------------------------------------------
    def ingest(self, progress=None):
        """Move every staged message into the index and rebuild the hosts that got lines.
        One transaction: an interrupted ingest leaves the staged rows staged."""
        from psycopg2.extras import execute_values
        cur = self.conn.cursor()
        cur.execute("SELECT pg_advisory_xact_lock(1331)")     # one ingest at a time
        touched = set()
        while True:
            cur.execute("DELETE FROM glexec_audit_inbox WHERE id IN (SELECT id FROM "
                        "glexec_audit_inbox ORDER BY id LIMIT %s) RETURNING fromhost, hostname, msg",
                        (INGEST_BATCH,))
            staged = cur.fetchall()
            if not staged:
                break
            lines, rejects = {}, []
            for fromhost, hostname, msg in staged:
                item = bm.parse_shipped(msg.encode("utf-8", "surrogateescape"), hostname or None)
                if isinstance(item, str):
                    rejects.append((fromhost, hostname, item, msg))
                    continue
                lines.setdefault((item.host, item.sha256), (
                    item.host, item.sha256, item.chain, item.seq, item.time, item.boot_id, item.line))
            stored = execute_values(cur, "INSERT INTO site_lines(host, sha256, chain, seq, time, "
                                    "boot_id, line) VALUES %s ON CONFLICT DO NOTHING RETURNING host",
                                    list(lines.values()), page_size=5000, fetch=True)
            if rejects:
                execute_values(cur, "INSERT INTO site_rejects(fromhost, hostname, why, msg) VALUES %s",
                               rejects)
            execute_values(cur, "INSERT INTO site_chains(host, chain) VALUES %s ON CONFLICT DO NOTHING",
                           list({(h, c) for h, _s256, c, *_rest in lines.values()}))
            touched.update(h for (h,) in stored)
            self.stats["received"] += len(staged)
            self.stats["stored"] += len(stored)
            self.stats["rejected"] += len(rejects)
            self.stats["duplicates"] += len(staged) - len(rejects) - len(stored)
            if progress is not None:
                progress(self.stats["received"], None, "shipped records ingested")
        for host in sorted(touched):
            self._rebuild_host(host)
        if touched:
            cur.execute("SELECT min(time), max(time) FROM site_lines")
            lo, hi = cur.fetchone()
            cur.execute("INSERT INTO site_meta VALUES ('first_time', %s), ('last_time', %s) "
                        "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (lo, hi))
        self.conn.commit()
        self._fresh_snapshot()
        if progress is not None and hasattr(progress, "done"):
            progress.done()
        return dict(self.stats)

    def _rebuild_host(self, host):
        """The host's history from all its lines (a late line may fill an earlier gap)."""
        hid = self._host_id(host)
        cur = self.conn.cursor()
        cur.execute("DELETE FROM occupations WHERE host_id=%s AND kind <> 'lease'", (hid,))
        cur.execute("DELETE FROM flags WHERE host=%s", (_b(host),))
        cur.execute("SELECT c.id, l.seq, l.time, l.line FROM site_lines l JOIN site_chains c "
                    "ON c.host = l.host AND c.chain = l.chain WHERE l.host=%s "
                    "ORDER BY min(l.time) OVER (PARTITION BY l.chain), l.chain, l.seq, l.time",
                    (host,))
        from glexec_py.core.audit import Chain
        builder = bm.HistoryBuilder()
        series, chain_id, chain, expected, last_time = hid, None, None, None, None
        for cid, seq, t, line in cur:
            line = bytes(line)
            ref = bm.Ref(cid, seq or 0, seq or 0)
            if cid != chain_id:
                chain_id, chain, expected = cid, Chain(), 1
            item = bm.parse_record(line, ref)
            why = chain.step(line)
            if seq is not None and expected is not None and seq > expected:
                # Lost (or not yet delivered): nothing proves what happened in between.
                lo = last_time if last_time is not None else bm.NEVER
                builder.flag_region("shipping_gap", host, lo, bm.FOREVER if t is None else max(t, lo),
                                    ref, bm.chain_gap(expected, seq), series=series)
                why = None
            builder.feed(series, item, why)
            expected = None if seq is None else seq + 1
            if t is not None:
                last_time = t if last_time is None else max(last_time, t)
        occs, flags = builder.take_dirty()
        for f in flags:
            if f.host is None:
                f.host = host          # a damaged or broken record speaks for its host only
        self._store_rows(occs, flags)

    def lease_scan_due(self, now):
        """The lease database was not read in the last ``LEASE_SCAN_MAX_AGE``."""
        last = self.db.lease_scan
        return last is None or not 0 <= now - last < LEASE_SCAN_MAX_AGE

    def refresh_leases(self, lease_conninfo):
        """Runs as: root (reads the lease database, writes this index).  The PostgreSQL
        lease backend's leases and lease history become this index's "lease" occupations
        (``lease_evidence``).  Returns (occupations stored, leases left out: no uid)."""
        rows, seen = lease_evidence(lease_conninfo)
        uids, kept, unplaced = {}, [], set()
        for node, account, dn, start, end, ended, lease_id in rows:
            if account not in uids:
                uids[account] = self._lease_uid(account)
            if uids[account] is None:
                unplaced.add(lease_id)
                continue
            kept.append((node, uids[account], account, dn, start, end, ended))
        self.add_leases(kept, seen)
        return len(kept), len(unplaced)

    def _lease_uid(self, account):
        """The account's uid here, else the one uid the records of the site show for it."""
        import pwd
        try:
            return pwd.getpwnam(account).pw_uid
        except KeyError:
            pass
        cur = self.conn.cursor()
        cur.execute("SELECT DISTINCT uid FROM occupations WHERE account = %s AND kind <> 'lease' "
                    "AND uid IS NOT NULL LIMIT 2", (_b(account),))
        found = cur.fetchall()
        return found[0][0] if len(found) == 1 else None

    def add_leases(self, leases, seen):
        """The second source: [(host, uid, account, dn, held_since_us, until_us, ended)]
        -> "lease" occupations, replacing the previous scan's, read at ``seen`` (µs)."""
        cur = self.conn.cursor()
        cur.execute("SELECT pg_advisory_xact_lock(1332)")     # one lease scan at a time
        cur.execute("DELETE FROM occupations WHERE kind = 'lease'")
        self._store_rows([bm.lease_occupation(host, uid, account, dn, start, end,
                                              source="lease_db", ended=ended)
                          for host, uid, account, dn, start, end, ended in leases])
        cur.execute("INSERT INTO site_meta VALUES ('lease_scan', %s) ON CONFLICT (key) "
                    "DO UPDATE SET value = excluded.value", (seen,))
        self.conn.commit()
        self._fresh_snapshot()

    # -- what the queries need beyond apply.Index ---------------------------------------
    def coverage(self):
        return self.db.coverage

    def read_to_end(self):
        return False        # records may still be in flight: "now" is never settled here

    def describe_source(self, source_id):
        row = self.db.execute("SELECT host, chain FROM site_chains WHERE id=?", (source_id,)).fetchone()
        return (f"site:{row[0]}", row[1]) if row else (None, None)
