"""The back-mapping index: audit records -> SQLite, incrementally.

Runs as: root.  The index holds DN history (admin-only data) and is trusted to answer
incident questions, so it lives at a root-only path (default ``<state_dir>/backmap.sqlite``,
mode 0600, every ancestor directory root-owned and not writable by others), and it reads
only audit files that are root-owned and not writable by others.

Incremental: a source file is known by the sha256 of its first line, so a file renamed to
``.1`` or compressed to ``.2.gz`` by logrotate is recognised and only its unread tail is
read; a file truncated in place (copytruncate) gets a new first line and is a new source.
Each source remembers (dev, ino, size, mtime) of the last physical file it was read from, so
an unchanged file is skipped without being opened.  A source that no file holds any more (a
rotated segment deleted, the active file emptied without a copy) forces a rebuild from what
is left: its records are no evidence once they are gone, so the span it covered answers
"unknown" (outside the history, or a flagged gap), never from the index alone.  Cost: the
first query after logrotate drops the oldest segment re-reads the retained files.  The semantics (what an occupation is,
when an answer is unknown) live in ``glexec_tools.backmap.plan``; this module only stores.

Second source (pool leases, later): a gridmapdir scan yields occupations of ``kind``
"lease" (account, uid, identity decoded from the lease name, start = lease creation as far
as known, end = release, mtime = last use as evidence) stored in the same ``occupations``
table under their own series; the queries and the answer rules need no change.
"""
import os
import stat

# Imported where an SQLite index is opened (the site index, site.py, never needs it).
# The C module itself, not the ``sqlite3`` package: its dbapi2 layer imports datetime and
# collections.abc for adapters this index never uses -- two thirds of the 6 ms ``import
# sqlite3`` costs every query (the engine uses the builtin ``_sha256`` for the same reason).

from glexec_tools.backmap import plan as bm
from glexec_py.effects import trust
from glexec_py.errors import SystemFault

SCHEMA_VERSION = "3"
FLUSH_EVERY = 200_000       # records per write batch (bounded memory)
PROGRESS_EVERY = 20_000     # records between progress calls (FLUSH_EVERY is a multiple)

_TABLES = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value);
CREATE TABLE IF NOT EXISTS series(id INTEGER PRIMARY KEY, path BLOB UNIQUE, last_time INTEGER,
    before_last INTEGER, last_occ INTEGER, last_clock BLOB);
CREATE TABLE IF NOT EXISTS sources(id INTEGER PRIMARY KEY, fp TEXT UNIQUE, series_id INTEGER,
    read_offset INTEGER, lines INTEGER, first_time INTEGER, last_time INTEGER, path BLOB,
    dev INTEGER, ino INTEGER, size INTEGER, mtime_ns INTEGER, at_eof INTEGER,
    chain_seq INTEGER, chain_digest BLOB);
CREATE TABLE IF NOT EXISTS hosts(id INTEGER PRIMARY KEY, name BLOB UNIQUE);
CREATE TABLE IF NOT EXISTS identities(id INTEGER PRIMARY KEY, dn BLOB, issuer BLOB, fqans BLOB,
    UNIQUE(dn, issuer, fqans));
CREATE TABLE IF NOT EXISTS callers(id INTEGER PRIMARY KEY, uid INTEGER, gid INTEGER, user BLOB,
    grp BLOB, groups TEXT, UNIQUE(uid, gid, user, grp, groups));
CREATE TABLE IF NOT EXISTS occupations(id INTEGER PRIMARY KEY, kind TEXT, host_id INTEGER,
    uid INTEGER, account BLOB, identity_id INTEGER, caller_id INTEGER, caller_pid INTEGER,
    caller_ppid INTEGER, caller_sid INTEGER, caller_pgid INTEGER, engine_pid INTEGER,
    start INTEGER, end INTEGER, cut INTEGER, lo INTEGER, hi INTEGER, payload_pid INTEGER,
    status INTEGER, notes TEXT, evidence TEXT);
CREATE TABLE IF NOT EXISTS flags(id INTEGER PRIMARY KEY, kind TEXT, host BLOB, lo INTEGER,
    hi INTEGER, series_id INTEGER, evidence TEXT, why BLOB);
"""
# lo is the start of the span in which an occupation is a candidate (= the grant time for
# an ordinary grant): "(uid, start)" in the design is (uid, lo, hi) here, covering the query.
# A question at t reads the (uid, lo) range [t - LONG_SPAN, t] plus the few occupations
# longer than LONG_SPAN (open grants, starts not recorded) from a partial index: the rows
# read are a week's grants of the uid, not all its grants before t (``covering``).
LONG_SPAN = 7 * 86400 * 1_000_000
_INDEXES = f"""
CREATE INDEX IF NOT EXISTS occ_uid ON occupations(uid, lo, hi);
CREATE INDEX IF NOT EXISTS occ_account ON occupations(account, lo);
CREATE INDEX IF NOT EXISTS occ_identity ON occupations(identity_id, lo);
CREATE INDEX IF NOT EXISTS occ_payload ON occupations(payload_pid);
CREATE INDEX IF NOT EXISTS occ_lo ON occupations(lo);
CREATE INDEX IF NOT EXISTS occ_uid_long ON occupations(uid, lo) WHERE lo < hi - {LONG_SPAN};
CREATE INDEX IF NOT EXISTS occ_account_long ON occupations(account, lo) WHERE lo < hi - {LONG_SPAN};
CREATE INDEX IF NOT EXISTS occ_lo_long ON occupations(lo) WHERE lo < hi - {LONG_SPAN};
CREATE INDEX IF NOT EXISTS occ_open_engine ON occupations(host_id, engine_pid) WHERE end IS NULL;
CREATE INDEX IF NOT EXISTS occ_open_uid ON occupations(uid, host_id) WHERE end IS NULL AND cut IS NULL;
CREATE INDEX IF NOT EXISTS ident_dn ON identities(dn);
CREATE INDEX IF NOT EXISTS flags_lo ON flags(lo);
"""
_INDEX_NAMES = [line.split()[5] for line in _INDEXES.strip().splitlines()]


_NO_CALLER = (None,) * 9


def _b(s):
    """Text to a BLOB: record strings may hold lone surrogates (undecodable bytes)."""
    return None if s is None else s.encode("utf-8", "surrogatepass")


def _s(b):
    return None if b is None else bytes(b).decode("utf-8", "surrogatepass")


def _clock(blob):
    """A series' stored last clock ("offset boot_id host") -> ``Event.clock()`` form."""
    if blob is None:
        return None
    offset, boot, host = _s(blob).split(" ", 2)
    return host, boot, int(offset)


def _refs_text(refs):
    return ";".join("%d,%d,%d" % tuple(r) for r in refs)


def _refs(text):
    return [bm.Ref(*map(int, part.split(","))) for part in text.split(";") if part] if text else []


def open_private_file(path):
    """Runs as: root.  Create (0600) or check the index file: a regular root-owned file,
    private to root, one link, in a trusted directory chain.  SystemFault otherwise."""
    directory = os.path.dirname(path) or "/"
    try:
        trust.check_dir_chain(directory)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise SystemFault("backmap_index", f"glexec-backmap: cannot open the index {path}: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o077 or st.st_nlink != 1:
            raise SystemFault("backmap_index", f"glexec-backmap: {path} is not a private root-owned file")
    finally:
        os.close(fd)


class Index:
    """Runs as: root.  ``Index(path)``; ``refresh(audit_paths)``; then the queries."""

    _progress = None           # refresh(progress=...): a callback while records are read
    RECORDS_WIN = False        # plan.records_first: the site index's rule, not this one's

    def __init__(self, path):
        open_private_file(path)
        self.path = path
        import _sqlite3 as sqlite3
        self.db = sqlite3.connect(path, timeout=60, isolation_level=None)
        # A rollback journal, not WAL: every connection to a WAL database sets up its -wal and
        # -shm files again (~4 ms, the largest part of a query after start-up), and every
        # query refreshes first, under the write lock, so WAL's concurrent readers buy nothing.
        if self.db.execute("PRAGMA journal_mode").fetchone()[0] != "delete":
            self.db.execute("PRAGMA journal_mode=DELETE")
        self.db.execute("PRAGMA synchronous=FULL")     # fsyncs only when a refresh writes
        if self._stale_schema():
            # Another version's layout: the index is only a cache of the audit files.
            self.db.execute("BEGIN IMMEDIATE")
            for (table,) in self.db.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall():
                self.db.execute(f'DROP TABLE "{table}"')
            self.db.execute("COMMIT")
        self.db.executescript(_TABLES)
        self._host_ids, self._ident_ids, self._caller_ids = {}, {}, {}
        self._source_cache = None

    def close(self):
        self.db.close()

    # -- small helpers --------------------------------------------------------------------
    def _stale_schema(self):
        try:
            return self._meta("schema") not in (None, SCHEMA_VERSION)
        except __import__("_sqlite3").OperationalError:
            return False                    # a new file: no meta table yet

    def _meta(self, key, default=None):
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return default if row is None else row[0]

    def _set_meta(self, key, value):
        self.db.execute("INSERT OR REPLACE INTO meta VALUES(?, ?)", (key, value))

    def _intern(self, cache, table, cols, values):
        key = tuple(values)
        found = cache.get(key)
        if found is None:
            where = " AND ".join(f"{c} IS ?" for c in cols)
            row = self.db.execute(f"SELECT id FROM {table} WHERE {where}", key).fetchone()
            if row is None:
                row = (self.db.execute(f"INSERT INTO {table}({','.join(cols)}) VALUES "
                                       f"({','.join('?' * len(cols))})", key).lastrowid,)
            found = cache[key] = row[0]
        return found

    # The caches are keyed by the Python values, so the hot path skips the encoding.
    def _host_id(self, host):
        found = self._host_ids.get(host)
        if found is None:
            found = self._host_ids[host] = self._intern({}, "hosts", ("name",), (_b(host),))
        return found

    def _identity_id(self, ident):
        if ident is None:
            return None
        found = self._ident_ids.get(ident)
        if found is None:
            found = self._ident_ids[ident] = self._intern(
                {}, "identities", ("dn", "issuer", "fqans"),
                (_b(ident.dn), _b(ident.issuer), _b("\n".join(ident.fqans))))
        return found

    def _caller_id(self, c):
        if c is None:
            return None
        key = (c[0], c[1], c[2], c[3], c[8])
        found = self._caller_ids.get(key)
        if found is None:
            found = self._caller_ids[key] = self._intern(
                {}, "callers", ("uid", "gid", "user", "grp", "groups"),
                (c.uid, c.gid, _b(c.user), _b(c.group), ",".join(map(str, c.groups))))
        return found

    # -- storing --------------------------------------------------------------------------
    def _next_ids(self):
        o = self.db.execute("SELECT coalesce(max(id), 0) FROM occupations").fetchone()[0]
        f = self.db.execute("SELECT coalesce(max(id), 0) FROM flags").fetchone()[0]
        return [o + 1, f + 1]

    def _store(self, builder):
        occs, flags = builder.take_dirty()
        self._store_rows(occs, flags)
        builder.forget_settled(occs)

    def _store_rows(self, occs, flags=()):
        rows = []
        for o in occs:
            if o.row_id is None:
                o.row_id, self._ids[0] = self._ids[0], self._ids[0] + 1
            c = o.caller or _NO_CALLER
            rows.append((o.row_id, o.kind, self._host_id(o.host), o.uid, _b(o.account),
                         self._identity_id(o.identity), self._caller_id(o.caller),
                         c[4], c[5], c[6], c[7], o.engine_pid, o.start, o.end, o.cut, o.lo, o.hi,
                         o.payload_pid, o.status, ",".join(o.notes), _refs_text(o.evidence)))
        self.db.executemany("INSERT OR REPLACE INTO occupations VALUES"
                            "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
        frows = []
        for f in {id(f): f for f in flags}.values():
            if f.row_id is None:
                f.row_id, self._ids[1] = self._ids[1], self._ids[1] + 1
            frows.append((f.row_id, f.kind, _b(f.host), f.lo, f.hi,
                          f.series,
                          _refs_text([f.ref]) if f.ref else "", _b(f.why)))
        self.db.executemany("INSERT OR REPLACE INTO flags VALUES(?,?,?,?,?,?,?,?)", frows)

    # -- loading (for the builder's callbacks and the queries) ---------------------------
    _OCC_SELECT = ("SELECT o.id, o.kind, h.name, o.uid, o.account, i.dn, i.issuer, i.fqans, "
                   "c.uid, c.gid, c.user, c.grp, c.groups, o.caller_pid, o.caller_ppid, "
                   "o.caller_sid, o.caller_pgid, o.engine_pid, o.start, o.end, o.cut, "
                   "o.payload_pid, o.status, o.notes, o.evidence FROM occupations o "
                   "JOIN hosts h ON h.id = o.host_id LEFT JOIN identities i ON i.id = o.identity_id "
                   "LEFT JOIN callers c ON c.id = o.caller_id ")

    @staticmethod
    def _occupation(row):
        (rid, kind, host, uid, account, dn, issuer, fqans, cuid, cgid, cuser, cgrp, cgroups,
         cpid, cppid, csid, cpgid, epid, start, end, cut, ppid, status, notes, evidence) = row
        ident = None if dn is None else bm.Identity(_s(dn), _s(issuer),
                                                    tuple(x for x in _s(fqans).split("\n") if x))
        caller = None if cuid is None and cuser is None else bm.Caller(
            cuid, cgid, _s(cuser), _s(cgrp), cpid, cppid, csid, cpgid,
            tuple(int(g) for g in cgroups.split(",") if g))
        return bm.Occupation(kind, _s(host), uid, _s(account), ident, caller, epid, start, end,
                             cut, ppid, status, _refs(evidence),
                             [n for n in notes.split(",") if n], row_id=rid)

    def _select(self, where, args):
        return [self._occupation(r) for r in self.db.execute(self._OCC_SELECT + where, args)]

    def _builder(self):
        hid = self._host_id
        return bm.HistoryBuilder(
            open_by_engine=lambda host, pid: self._select(
                "WHERE o.host_id=? AND o.engine_pid=? AND o.end IS NULL", (hid(host), pid)),
            open_by_uid=lambda host, uid: self._select(
                "WHERE o.uid=? AND o.host_id=? AND o.end IS NULL AND o.cut IS NULL", (uid, hid(host))),
            open_by_host=lambda host: self._select(
                "WHERE o.host_id=? AND o.end IS NULL", (hid(host),)))

    # -- refreshing -------------------------------------------------------------------------
    def refresh(self, audit_paths, *, rebuild=False, gridmapdir=None, progress=None):
        """Runs as: root.  Read what is new in each audit series (the file and its rotated
        ``.N`` / ``.N.gz`` siblings, oldest first).  A file older than what is already
        indexed appearing later forces a rebuild, so log order is always respected.
        ``gridmapdir``: also record the pool leases it holds now (``refresh_leases``).
        ``progress(records_read, total, what)``: called every ``FLUSH_EVERY`` records
        (e.g. ``front.Progress``: a line on a terminal), and ``progress.done()`` at the end."""
        self._progress, self._records_read = progress, 0
        try:
            self._refresh_audit(audit_paths, rebuild)
        finally:
            if progress is not None and hasattr(progress, "done"):
                progress.done()
        if gridmapdir is not None:
            self.refresh_leases(gridmapdir)

    LEASE_SCAN_MAX_AGE = 60 * 1_000_000     # µs: rescan an unchanged gridmapdir after this

    def refresh_leases(self, gridmapdir, now=None):
        """Runs as: root (reads the gridmapdir and its lease records, no lock).  Every lease
        seen now becomes (or extends) a "lease" occupation [held since, now] of its account's
        uid on this host (``glexec_tools.backmap.plan.lease_occupation``).  Skipped while the directory is
        unchanged and the last scan is younger than a minute: a later scan only extends what
        the earlier one proved."""
        import time
        now = int(time.time() * 1_000_000) if now is None else now
        st = os.stat(gridmapdir)
        stamp = f"{os.fsdecode(gridmapdir)}:{st.st_ino}:{st.st_mtime_ns}:{st.st_ctime_ns}"
        last = self._meta("lease_scan")
        if last is not None:
            last_stamp, _, last_time = last.rpartition("|")
            if last_stamp == stamp and 0 <= now - int(last_time) < self.LEASE_SCAN_MAX_AGE:
                return
        import pwd
        from glexec_py.effects.gridmapdir import GridmapDir
        with GridmapDir(gridmapdir, lock="none", index=False) as gd:
            leases = gd.leases()
        host = os.uname().nodename
        self.db.execute("BEGIN IMMEDIATE")
        try:
            fresh = []
            for name, (account, record, mtime) in leases.items():
                account = os.fsdecode(account)
                try:
                    uid = pwd.getpwnam(account).pw_uid
                except KeyError:
                    continue                            # no such account here: not a holding
                dn, start = None, int(mtime * 1_000_000) if mtime is not None else now
                if record and record.get("lease") == name and record.get("dn") is not None:
                    dn = record["dn"].decode("utf-8", "surrogateescape")
                    if record.get("state") == "leased" and isinstance(record.get("since"), (int, float)):
                        start = int(record["since"] * 1_000_000)
                occ = bm.lease_occupation(host, uid, account, dn, start, now)
                row = self.db.execute("SELECT id FROM occupations WHERE kind='lease' AND uid=? AND "
                                      "account=? AND start=? AND identity_id IS ?",
                                      (uid, _b(account), occ.start, self._identity_id(occ.identity))).fetchone()
                occ.row_id = row[0] if row else None
                fresh.append(occ)
            self._ids = self._next_ids()
            self._store_rows(fresh)
            self._set_meta("lease_scan", f"{stamp}|{now}")
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            self._host_ids, self._ident_ids, self._caller_ids = {}, {}, {}
            raise

    def _refresh_audit(self, audit_paths, rebuild):
        if not rebuild and self._unchanged(audit_paths):
            return                      # the common case for a query: no write, no fsync
        self.db.execute("BEGIN IMMEDIATE")     # one writer; decisions below see its state
        try:
            if rebuild or self._needs_rebuild(audit_paths):
                self._clear()
            fresh = self.db.execute("SELECT 1 FROM occupations LIMIT 1").fetchone() is None
            if fresh:
                # Bulk load: indexes are built once at the end; nothing stored needs looking up.
                for name in _INDEX_NAMES:
                    self.db.execute(f"DROP INDEX IF EXISTS {name}")
            self._ids = self._next_ids()
            builder = bm.HistoryBuilder() if fresh else self._builder()
            for path in audit_paths:
                self._refresh_series(builder, path)
            self._update_coverage()
            self._set_meta("schema", SCHEMA_VERSION)
            for statement in filter(str.strip, _INDEXES.split(";")):
                self.db.execute(statement)
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            self._host_ids, self._ident_ids, self._caller_ids = {}, {}, {}
            raise

    def _clear(self):
        for table in ("occupations", "flags", "sources", "series", "meta", "hosts", "identities",
                      "callers"):
            self.db.execute(f"DELETE FROM {table}")       # inside the caller's transaction
        self._host_ids, self._ident_ids, self._caller_ids = {}, {}, {}

    def _unchanged(self, audit_paths):
        """Every file of every series was read to its end and has not changed since, and
        no file the index read is gone."""
        for path in audit_paths:
            row = self.db.execute("SELECT id FROM series WHERE path=?", (_b(path),)).fetchone()
            if row is None:
                return False
            present = set()
            for _pos, name in series_files(path):
                source = self._source_by_stat(name)
                if source is None:
                    return False
                present.add(source[1])
            if self._vanished(row[0], present):
                return False
        return True

    def _vanished(self, series_id, present_fps):
        """A source of the series (known by its first line) that no file holds any more: a
        rotated segment deleted, or the active file emptied in place."""
        return any(fp not in present_fps for (fp,) in self.db.execute(
            "SELECT fp FROM sources WHERE series_id=?", (series_id,)))

    def _needs_rebuild(self, audit_paths):
        """An older, unseen file appeared (log order), or a file that was read is gone: its
        records must not be answered from the index as if they were still there.  The
        rebuild reads what is left, so the span it covered becomes "outside the history"
        (oldest file deleted) or a flagged gap (a middle one), i.e. unknown."""
        for path in audit_paths:
            known_seen, present = False, set()
            for _pos, name in reversed(series_files(path)):      # newest first
                fp = self._peek_fingerprint(name)
                present.add(fp)
                known = fp is not None and self.db.execute(
                    "SELECT 1 FROM sources WHERE fp=?", (fp,)).fetchone() is not None
                if known:
                    known_seen = True
                elif known_seen and fp is not None:
                    return True                                 # an older, unseen file
            row = self.db.execute("SELECT id FROM series WHERE path=?", (_b(path),)).fetchone()
            if row is not None and self._vanished(row[0], present):
                return True
        return False

    def _peek_fingerprint(self, name):
        row = self._source_by_stat(name)
        if row is not None:
            return row[1]
        try:
            with _open_audit(name) as f:
                line = f.readline()
        except (OSError, SystemFault, EOFError):     # gzip.BadGzipFile is an OSError
            return None
        return bm.first_line_fingerprint(line) if line else None

    def _source_by_stat(self, name):
        try:
            st = os.stat(name, follow_symlinks=False)
        except OSError:
            return None
        return self.db.execute("SELECT id, fp FROM sources WHERE dev=? AND ino=? AND size=? AND "
                               "mtime_ns=? AND at_eof=1", (st.st_dev, st.st_ino, st.st_size,
                                                           st.st_mtime_ns)).fetchone()

    def _series(self, path):
        """(id, last_time, before_last, last_occ row id, last_clock) of a series, created if new."""
        row = self.db.execute("SELECT id, last_time, before_last, last_occ, last_clock FROM series WHERE path=?",
                              (_b(path),)).fetchone()
        if row is None:
            return self.db.execute("INSERT INTO series(path) VALUES(?)", (_b(path),)).lastrowid, None, None, None, None
        return row

    def _refresh_series(self, builder, path):
        series_id, last_time, before_last, last_occ, last_clock = self._series(path)
        pending = [bm.Flag(k, _s(h), lo, hi, (_refs(ev) or [None])[0], _s(why), row_id=i)
                   for i, k, h, lo, hi, ev, why in self.db.execute(
                       "SELECT id, kind, host, lo, hi, evidence, why FROM flags WHERE series_id=? "
                       "AND kind='damaged' AND hi=?", (series_id, bm.FOREVER))]
        for f in pending:
            f.series = series_id
        last_occ = self._select("WHERE o.id=?", (last_occ,)) if last_occ is not None else ()
        builder.resume_series(series_id, last_time, pending, before_last, last_occ[0] if last_occ else None,
                              _clock(last_clock))
        files = series_files(path)
        for position, name in files:
            self._read_file(builder, series_id, name, active=(position == 0))
        self._store(builder)
        state = builder.series[series_id]
        clock = state["clock"]
        self.db.execute("UPDATE series SET last_time=?, before_last=?, last_occ=?, last_clock=? WHERE id=?",
                        (state["last"], state["before_last"],
                         state["last_occ"].row_id if state["last_occ"] is not None else None,
                         None if clock is None else _b("%d %s %s" % (clock[2], clock[1], clock[0])), series_id))
        self._flag_missing_files(builder, series_id, path, files)

    def _read_file(self, builder, series_id, name, active):
        if self._source_by_stat(name) is not None:
            return                                   # unchanged since read to the end
        try:
            f = _open_audit(name)
        except SystemFault as fault:
            builder.flag_region("untrusted_file", None, bm.NEVER, bm.FOREVER, None,
                                fault.message.removeprefix("glexec: "), series=series_id)
            return
        except OSError:
            return                                   # vanished between listing and open
        with f:
            st = os.fstat(getattr(f, "myfileobj", f).fileno())     # a GzipFile: its file
            first = f.readline()
            if not first or (active and not first.endswith(b"\n")):
                return                               # empty, or its first line is being written
            fp = bm.first_line_fingerprint(first)
            source_id, offset, lines, first_time, last_time, seq, digest = self._source(fp, series_id)
            from glexec_py.core.audit import Chain     # only when there is something to read
            chain = Chain(seq, digest or b"")
            f.seek(offset)
            offset, lines, first_time, last_time, at_eof = self._read_lines(
                builder, series_id, f, source_id, offset, lines, first_time, last_time, active, chain)
        self.db.execute("UPDATE sources SET read_offset=?, lines=?, first_time=?, last_time=?, "
                        "path=?, dev=?, ino=?, size=?, mtime_ns=?, at_eof=?, chain_seq=?, "
                        "chain_digest=? WHERE id=?",
                        (offset, lines, first_time, last_time, _b(name), st.st_dev, st.st_ino,
                         st.st_size, st.st_mtime_ns, int(at_eof), chain.seq, chain.digest, source_id))

    def _source(self, fp, series_id):
        row = self.db.execute("SELECT id, read_offset, lines, first_time, last_time, chain_seq, "
                              "chain_digest FROM sources WHERE fp=?", (fp,)).fetchone()
        if row is None:
            sid = self.db.execute("INSERT INTO sources(fp, series_id, read_offset, lines) "
                                  "VALUES(?, ?, 0, 0)", (fp, series_id)).lastrowid
            return sid, 0, 0, None, None, None, b""
        return row

    def _read_lines(self, builder, series_id, f, source_id, offset, lines, first_time,
                    last_time, active, chain):
        feed, parse, Ref, Damaged, step = builder.feed, bm.parse_record, bm.Ref, bm.Damaged, chain.step
        count = 0
        for line in f:
            if not line.endswith(b"\n"):
                if active:
                    return offset, lines, first_time, last_time, False   # still being written
                item = Damaged(Ref(source_id, offset, lines + 1), "torn last line")
            else:
                item = parse(line, Ref(source_id, offset, lines + 1))
            lines += 1
            offset += len(line)
            if type(item) is not Damaged:
                t = item.time
                first_time = t if first_time is None else first_time
                last_time = t if last_time is None else max(last_time, t)
            feed(series_id, item, step(line.rstrip(b"\n")))
            count += 1
            if count % PROGRESS_EVERY == 0:
                if count % FLUSH_EVERY == 0:
                    self._store(builder)
                if self._progress is not None:
                    self._records_read += PROGRESS_EVERY
                    self._progress(self._records_read, None, "audit records indexed")
        return offset, lines, first_time, last_time, True

    def _flag_missing_files(self, builder, series_id, path, files):
        """A hole in the rotation numbers is a gap, unless the index already holds a source
        (read before it disappeared) that fills it."""
        self.db.execute("DELETE FROM flags WHERE series_id=? AND kind='missing_file'", (series_id,))
        positions = [p for p, _ in files]
        times = {p: self._file_times(n) for p, n in files}
        for older, newer in zip(positions, positions[1:]):
            if older - newer <= 1:
                continue
            lo, hi = times[older][1], times[newer][0]
            if lo is None or hi is None:
                continue
            filled = self.db.execute("SELECT 1 FROM sources WHERE series_id=? AND first_time>=? "
                                     "AND last_time<=? LIMIT 1", (series_id, lo, hi)).fetchone()
            if not filled:
                missing = ", ".join(f".{n}" for n in range(newer + 1, older))
                builder.flag_region("missing_file", None, lo, hi, None,
                                    f"{path}{missing} missing from the rotated series",
                                    series=series_id)
        self._store(builder)

    def _file_times(self, name):
        row = self._source_by_stat(name)
        if row is None:
            return None, None
        return self.db.execute("SELECT first_time, last_time FROM sources WHERE id=?",
                               (row[0],)).fetchone()

    def _update_coverage(self):
        lo, hi = self.db.execute("SELECT min(first_time), max(last_time) FROM sources").fetchone()
        self._set_meta("first_time", lo)
        self._set_meta("last_time", hi)

    # -- queries ------------------------------------------------------------------------------
    def read_to_end(self):
        """Every indexed audit file was read to its last complete line (none was being
        written at the last refresh)."""
        return self.db.execute("SELECT 1 FROM sources WHERE at_eof=0 LIMIT 1").fetchone() is None

    def coverage(self):
        return self._meta("first_time"), self._meta("last_time")

    def _flags(self, t1, t2):
        rows = self.db.execute("SELECT id, kind, host, lo, hi, evidence, why FROM flags "
                               "WHERE lo<=? AND hi>=?", (t2, t1))
        return [bm.Flag(k, _s(h), lo, hi, (_refs(ev) or [None])[0], _s(why), row_id=i)
                for i, k, h, lo, hi, ev, why in rows]

    def covering(self, column, value, t1, t2):
        """The occupations (of ``column`` = ``value``, or all when ``column`` is None)
        overlapping [t1, t2], in two disjoint parts that each read a narrow index range:
        those starting within LONG_SPAN before t1 (or later, up to t2), and the long ones
        starting earlier (a partial index).  Exact: one that starts before t1 - LONG_SPAN
        and reaches t1 is longer than LONG_SPAN.  ``lo < hi - LONG_SPAN``, not ``hi - lo``:
        that overflows 64 bits for NEVER..FOREVER.  UNION ALL, not OR: the planner would
        factor the shared clauses out of an OR and scan all of the uid's earlier grants."""
        key, args = (f"o.{column}=? AND ", (value,)) if column else ("", ())
        edge = max(t1 - LONG_SPAN, bm.NEVER)
        recent = self._OCC_SELECT + f"WHERE {key}o.lo BETWEEN ? AND ? AND o.hi>=?"
        long = self._OCC_SELECT + f"WHERE {key}o.lo < ? AND o.lo < o.hi - {LONG_SPAN} AND o.hi>=?"
        rows = self.db.execute(recent + " UNION ALL " + long,
                               args + (edge, t2, t1) + args + (edge, t1))
        return [self._occupation(r) for r in rows]

    def uid_between(self, uid, t1, t2, host=None):
        occs = self.covering("uid", uid, t1, t2)
        return bm.answer_range({"uid": uid, "from": bm.format_time(t1), "to": bm.format_time(t2)},
                               t1, t2, occs, self._flags(t1, t2), self.coverage(), host,
                               self.RECORDS_WIN)

    def uid_at(self, uid, t, host=None):
        occs = self.covering("uid", uid, t, t)
        return bm.answer_at({"uid": uid, "at": bm.format_time(t)}, t, occs,
                            self._flags(t, t), self.coverage(), host, self.RECORDS_WIN)

    def account_between(self, account, t1, t2, host=None):
        occs = self.covering("account", _b(account), t1, t2)
        question = {"account": account, "from": bm.format_time(t1), "to": bm.format_time(t2)}
        if t1 == t2:
            question = {"account": account, "at": bm.format_time(t1)}
        return bm.answer_range(question, t1, t2, occs, self._flags(t1, t2), self.coverage(), host,
                               self.RECORDS_WIN)

    def all_between(self, t1, t2, host=None):
        occs = self.covering(None, None, t1, t2)
        return bm.answer_range({"from": bm.format_time(t1), "to": bm.format_time(t2)}, t1, t2,
                               occs, self._flags(t1, t2), self.coverage(), host, self.RECORDS_WIN)

    def by_dn(self, dn):
        occs = self._select("WHERE o.identity_id IN (SELECT id FROM identities WHERE dn=?)",
                            (_b(dn),))
        return bm.answer_listing({"dn": dn}, occs, self._flags(bm.NEVER, bm.FOREVER), self.coverage())

    def by_payload_pid(self, pid, t=None):
        occs = self._select("WHERE o.payload_pid=?", (pid,))
        if t is not None:
            occs = [o for o in occs if o.covers(t)]
        return bm.answer_listing({"payload_pid": pid, "at": bm.format_time(t)}, occs,
                                 self._flags(bm.NEVER, bm.FOREVER) if t is None else self._flags(t, t),
                                 self.coverage())

    def describe_source(self, source_id):
        row = self.db.execute("SELECT path, fp FROM sources WHERE id=?", (source_id,)).fetchone()
        return (_s(row[0]), row[1]) if row else (None, None)


def _rotation_number(suffix):
    """``.N`` or ``.N.gz`` (N: 1-6 digits) -> N; anything else -> None."""
    number = suffix[1:-3] if suffix.endswith(".gz") else suffix[1:]
    if suffix[:1] == "." and 1 <= len(number) <= 6 and number.isascii() and number.isdigit():
        return int(number)
    return None


def series_files(path):
    """Runs as: root (lists one directory).  [(position, file)], oldest first: ``.N.gz``/``.N``
    by descending N, the active file (position 0) last."""
    directory, base = os.path.split(path)
    found = []
    try:
        names = os.listdir(directory or ".")
    except OSError:
        return []
    for name in names:
        if name == base:
            found.append((0, path))
        elif name.startswith(base + "."):
            number = _rotation_number(name[len(base):])
            if number is not None:
                found.append((number, os.path.join(directory, name)))
    return sorted(found, key=lambda pn: -pn[0])


def _open_audit(name):
    """Runs as: root.  An audit file opened for reading: regular, root-owned, not writable by
    others (records a user could edit are no evidence); ``.gz`` decompressed."""
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o002:
        os.close(fd)
        raise SystemFault("untrusted_audit_file",
                          f"glexec: audit file {name!a} is not a root-owned file private from others")
    raw = os.fdopen(fd, "rb", buffering=1 << 20)
    if name.endswith(".gz"):
        import gzip         # only for rotated files: not on a query's start-up path
        gz = gzip.GzipFile(fileobj=raw, mode="rb")
        gz.myfileobj = raw          # closed with it
        return gz
    return raw
