"""A private PostgreSQL 15 cluster for tests and benches (Debian's postgresql-15): initdb as
the ``postgres`` user into a throw-away directory, pg_ctl on 127.0.0.1 with a free port and
a private unix socket directory, stopped by its pid at the end.  Nothing listens elsewhere.
The one PostgreSQL fixture of the project (the lease store, the site index, the benches).

``Cluster.conninfo(db)``: libpq conninfo over the private socket (trust auth inside the
throw-away cluster); ``tcp_conninfo(db)``: the same over 127.0.0.1 (rsyslog's ompgsql, the
site index).  ``fresh_db()``: a new database with the current lease schema installed;
``create_db(name)``: an empty one, its TCP conninfo.

Module level, for fixtures of their own: ``available()`` (None or why not), ``start()``
(a running Cluster), ``remove(cluster)``, ``free_port()``; ``postgres`` is the session
fixture.
"""
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

from tests.support.skips import strict

BIN = "/usr/lib/postgresql/15/bin"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCHEMAS = [os.path.join(ROOT, "tools", "glexec_tools", "leases", "sql", f"schema-v{n}.sql")
           for n in (1, 2)]        # a new database: v1, then every upgrade in order


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    def __init__(self, fsync=False, base=None):
        self.fsync = fsync        # off for tests (throw-away data); bench/leases.py turns it on
        self.pw = pwd.getpwnam("postgres")
        self.base = base or tempfile.mkdtemp(prefix="glexec-pg-", dir="/var/tmp")
        os.chmod(self.base, 0o755)
        self.data = os.path.join(self.base, "data")
        self.sock = os.path.join(self.base, "sock")
        self.log = os.path.join(self.base, "log")
        os.mkdir(self.sock, 0o755)
        os.chown(self.base, self.pw.pw_uid, self.pw.pw_gid)
        os.chown(self.sock, self.pw.pw_uid, self.pw.pw_gid)
        self.port = free_port()
        self._n = 0
        self._as_postgres([f"{BIN}/initdb", "-D", self.data, "-A", "trust", "--no-sync", "-U", "postgres"])
        self.start()

    def _as_postgres(self, argv, **kw):
        def demote():
            os.setgid(self.pw.pw_gid)
            os.setgroups([])
            os.setuid(self.pw.pw_uid)
        return subprocess.run(argv, preexec_fn=demote, check=True, capture_output=True, cwd=self.base, **kw)

    def start(self):
        self._as_postgres([f"{BIN}/pg_ctl", "-D", self.data, "-l", self.log, "-w", "-o",
                           f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.sock} "
                           f"-c fsync={'on' if self.fsync else 'off'} -c max_connections=200", "start"])

    def pid(self):
        with open(os.path.join(self.data, "postmaster.pid")) as f:
            return int(f.readline())

    def stop(self, mode="fast"):
        """Stop the postmaster by its pid (SIGINT = fast, SIGQUIT = immediate) and wait."""
        try:
            pid = self.pid()
        except OSError:
            return
        os.kill(pid, signal.SIGQUIT if mode == "immediate" else signal.SIGINT)
        for _ in range(600):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)

    def restart(self, mode="immediate"):
        self.stop(mode)
        self.start()

    def conninfo(self, db="postgres"):
        return f"host={self.sock} port={self.port} user=postgres dbname={db}"

    def tcp_conninfo(self, db="postgres"):
        return f"hostaddr=127.0.0.1 port={self.port} user=postgres dbname={db}"

    def psql(self, sql, db="postgres"):
        out = subprocess.run([f"{BIN}/psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                              "-h", self.sock, "-p", str(self.port), "-U", "postgres", "-d", db, "-c", sql],
                             check=True, capture_output=True, text=True)
        return out.stdout.strip()

    def fresh_db(self, version=2):
        """A new database with the lease schema (up to ``version``); returns its name."""
        self._n += 1
        name = f"leases{self._n}"
        self.psql(f"CREATE DATABASE {name}")
        for schema in SCHEMAS[:version]:
            subprocess.run([f"{BIN}/psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", self.sock,
                            "-p", str(self.port), "-U", "postgres", "-d", name, "-f", schema],
                           check=True, capture_output=True)
        return name

    def create_db(self, name):
        """A new empty database ``name``; its conninfo over 127.0.0.1."""
        self.psql(f'CREATE DATABASE "{name}"')
        return self.tcp_conninfo(name)

    def start_pgbouncer(self, pool_mode="transaction"):
        """A private PgBouncer (Debian's pgbouncer) in front of this cluster, on a unix
        socket only (no TCP listener); returns its conninfo for ``db`` as a function.
        Stopped by pid in ``destroy``; started once per cluster."""
        d = os.path.join(self.base, "bouncer")
        if getattr(self, "bouncer_dir", None):
            return lambda db: f"host={d} port={self.bouncer_port} user=postgres dbname={db}"
        os.makedirs(d, exist_ok=True)
        os.chown(d, self.pw.pw_uid, self.pw.pw_gid)
        self.bouncer_port = free_port()
        with open(os.path.join(d, "users.txt"), "w") as f:
            f.write('"postgres" ""\n')
        with open(os.path.join(d, "pgbouncer.ini"), "w") as f:
            f.write(f"[databases]\n* = host={self.sock} port={self.port}\n[pgbouncer]\n"
                    f"listen_addr =\nlisten_port = {self.bouncer_port}\nunix_socket_dir = {d}\n"
                    f"auth_type = trust\nauth_file = {d}/users.txt\npool_mode = {pool_mode}\n"
                    f"max_client_conn = 400\ndefault_pool_size = 8\nlogfile = {d}/log\n"
                    f"pidfile = {d}/pid\n")
        self._as_postgres(["/usr/sbin/pgbouncer", "-d", os.path.join(d, "pgbouncer.ini")])
        for _ in range(100):
            if os.path.exists(os.path.join(d, f".s.PGSQL.{self.bouncer_port}")):
                break
            time.sleep(0.05)
        self.bouncer_dir = d
        return lambda db: f"host={d} port={self.bouncer_port} user=postgres dbname={db}"

    def destroy(self):
        bouncer = getattr(self, "bouncer_dir", None)
        if bouncer:
            try:
                with open(os.path.join(bouncer, "pid")) as f:
                    os.kill(int(f.read()), signal.SIGTERM)
            except (OSError, ValueError):
                pass
        self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)


def available(psycopg2=True):
    """None, or why PostgreSQL 15 (and, for the site index, psycopg2) cannot run here."""
    if os.geteuid() != 0:
        return "a private PostgreSQL cluster needs root (initdb as postgres)"
    if not os.path.exists(f"{BIN}/initdb"):
        return "postgresql-15 is not installed"
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return "no postgres user"
    if psycopg2:
        try:
            import psycopg2 as _  # noqa: F401    (the site index's write path)
        except ImportError:
            return "python3-psycopg2 is not installed"
    return None


def start(base=None, fsync=False):
    """Runs as: root (initdb and the server run as ``postgres``).  A running Cluster in
    ``base`` (default: a new directory under /var/tmp)."""
    return Cluster(fsync=fsync, base=base)


def remove(cluster):
    """Stop it (by pid) and remove its directory."""
    cluster.destroy()


def start_cluster():
    """A running Cluster, or a skip (a failure under CI=true) when PostgreSQL 15 is not
    installed or does not start."""
    why = available(psycopg2=False)       # the lease store needs libpq only
    if why:
        if strict():
            pytest.fail(why)
        pytest.skip(why)
    return Cluster()


@pytest.fixture(scope="session")
def postgres():
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        cluster.destroy()
