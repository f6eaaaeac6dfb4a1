"""A PostgreSQL connection over libpq's non-blocking API (glexec_py._native_pq), with a
deadline on every step: connecting waits at most ``connect_timeout`` seconds, every
statement at most ``timeout`` seconds (also set as the server's ``statement_timeout`` and
``lock_timeout``).  A database that is down, unreachable or slow is a ``SystemFault``
(202, retryable) within that time, never a hang: the connection is dropped, and the open
transaction with it (the server rolls it back).

Parameters go as text (``bytes`` as bytea hex), results come back as text (None = NULL).
"""
import select
import time

from glexec_py.errors import SystemFault


class DbError(Exception):
    """The server refused a statement: ``sqlstate`` (e.g. 23505 unique violation,
    40001 serialization failure, 40P01 deadlock) and its message."""

    def __init__(self, sqlstate, message):
        super().__init__(message)
        self.sqlstate = sqlstate
        self.message = message


def _lib():
    try:
        from glexec_py import _native_pq
    except ImportError as e:
        raise SystemFault("lease_db_driver", "glexec: the PostgreSQL lease store needs "
                          "glexec_py._native_pq (libpq)", cause=str(e)) from None
    from glexec_py.effects import trust
    trust.check_file(_native_pq.__file__)   # loaded after the engine's start-up module check
    return _native_pq.ffi, _native_pq.lib


def _unavailable(what, message, **detail):
    return SystemFault("lease_db", f"glexec: lease database {what}: {message}"[:400], **detail)


def bytea(raw):
    """Runs as: anyone (pure).  A ``bytes`` parameter in bytea's text form."""
    return "\\x" + bytes(raw).hex()


def from_bytea(text):
    """Runs as: anyone (pure).  bytea output (hex form) -> bytes."""
    if text is None:
        return None
    if not text.startswith("\\x"):
        raise _unavailable("reply", "bytea output is not in hex form")
    return bytes.fromhex(text[2:])


class Connection:
    """Runs as: the engine or a site tool (root); a client socket to the database only.

    ``Connection(conninfo, connect_timeout=2.0, timeout=2.0)``: libpq's conninfo text
    (keyword=value or URI); use a numeric ``hostaddr`` or a unix socket, since the name
    lookup before connecting is the one step libpq cannot bound."""

    def __init__(self, conninfo, connect_timeout=2.0, timeout=2.0):
        self.ffi, self.lib = _lib()
        self.timeout = float(timeout)
        self.conn = None
        deadline = time.monotonic() + float(connect_timeout)
        conn = self.lib.PQconnectStart(conninfo.encode("utf-8"))
        if conn == self.ffi.NULL:
            raise _unavailable("connect", "out of memory")
        self.conn = conn
        self.lib.gx_pq_quiet(conn)          # server notices never reach the caller's stderr
        try:
            self._connect(deadline)
            ms = str(max(1, int(self.timeout * 1000)))
            self.query("SELECT set_config('statement_timeout', $1, false), "
                       "set_config('lock_timeout', $1, false), "
                       "set_config('idle_in_transaction_session_timeout', $2, false)",
                       (ms, str(max(1000, int(self.timeout * 4000)))),
                       deadline=deadline + self.timeout)
        except BaseException:
            self.close()
            raise

    def _connect(self, deadline):
        lib = self.lib
        state = lib.PGRES_POLLING_WRITING
        while True:
            if state == lib.PGRES_POLLING_OK:
                break
            if state == lib.PGRES_POLLING_FAILED:
                raise _unavailable("connect", self._error())
            self._wait(state == lib.PGRES_POLLING_READING, deadline, "connect")
            state = lib.PQconnectPoll(self.conn)
        if lib.PQstatus(self.conn) != lib.CONNECTION_OK:
            raise _unavailable("connect", self._error())
        if lib.PQsetnonblocking(self.conn, 1) != 0:
            raise _unavailable("connect", self._error())

    def _error(self):
        msg = self.ffi.string(self.lib.PQerrorMessage(self.conn)).decode("utf-8", "replace")
        return " ".join(msg.split()) or "connection failed"

    def _wait(self, readable, deadline, step):
        fd = self.lib.PQsocket(self.conn)
        if fd < 0:
            raise _unavailable(step, self._error())
        left = deadline - time.monotonic()
        if left <= 0:
            raise _unavailable(step, "timed out", timeout=self.timeout)
        p = select.poll()
        p.register(fd, select.POLLIN if readable else select.POLLOUT)
        if not p.poll(max(1, int(left * 1000))):
            raise _unavailable(step, "timed out", timeout=self.timeout)

    def query(self, sql, params=(), deadline=None):
        """Runs as: the caller (a client socket).  Run one statement; its rows as tuples of text/None.  ``DbError`` if the server
        refused it, ``SystemFault`` if the server cannot be reached in time (the
        connection is then closed)."""
        if self.conn is None:
            raise _unavailable("query", "connection closed")
        ffi, lib = self.ffi, self.lib
        if deadline is None:
            deadline = time.monotonic() + self.timeout
        keep = [ffi.NULL if p is None else ffi.new("char[]", (bytea(p) if isinstance(p, (bytes, bytearray))
                                                               else str(p)).encode("utf-8"))
                for p in params]
        values = ffi.new("char *[]", keep) if keep else ffi.NULL
        try:
            if not lib.PQsendQueryParams(self.conn, sql.encode("utf-8"), len(keep), ffi.NULL,
                                         values, ffi.NULL, ffi.NULL, 0):
                raise _unavailable("query", self._error())
            while True:
                flushed = lib.PQflush(self.conn)
                if flushed == 0:
                    break
                if flushed < 0:
                    raise _unavailable("query", self._error())
                self._wait(False, deadline, "query")
            rows, error = None, None
            while True:
                while lib.PQisBusy(self.conn):
                    self._wait(True, deadline, "query")
                    if not lib.PQconsumeInput(self.conn):
                        raise _unavailable("query", self._error())
                res = lib.PQgetResult(self.conn)
                if res == ffi.NULL:
                    break
                try:
                    got = self._result(res)
                finally:
                    lib.PQclear(res)
                if isinstance(got, DbError):
                    error = error or got
                else:
                    rows = got
        except SystemFault:
            self.close()
            raise
        if error is not None:
            raise error
        return rows or []

    def _result(self, res):
        ffi, lib = self.ffi, self.lib
        status = lib.PQresultStatus(res)
        if status == lib.PGRES_TUPLES_OK:
            n, m = lib.PQntuples(res), lib.PQnfields(res)
            return [tuple(None if lib.PQgetisnull(res, i, j)
                          else ffi.string(lib.PQgetvalue(res, i, j), lib.PQgetlength(res, i, j)).decode("utf-8")
                          for j in range(m)) for i in range(n)]
        if status in (lib.PGRES_COMMAND_OK, lib.PGRES_EMPTY_QUERY):
            return []
        code = lib.PQresultErrorField(res, lib.PG_DIAG_SQLSTATE)
        sqlstate = ffi.string(code).decode("ascii", "replace") if code != ffi.NULL else ""
        msg = ffi.string(lib.PQresultErrorMessage(res)).decode("utf-8", "replace")
        if sqlstate.startswith("08") or sqlstate in ("57P01", "57P02", "57P03", "57014", "55P03") \
                or not sqlstate:
            # connection trouble, shutdown, statement/lock timeout: the database is not usable now
            raise _unavailable("query", " ".join(msg.split()) or "failed", sqlstate=sqlstate)
        return DbError(sqlstate, " ".join(msg.split()))

    def close(self):
        """Runs as: the caller. Closes the connection (an open transaction is rolled back
        by the server)."""
        if self.conn is not None:
            conn, self.conn = self.conn, None
            self.lib.PQfinish(conn)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
