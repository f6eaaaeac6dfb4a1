"""A private PostgreSQL 15 for a test run: ``initdb`` as ``postgres`` into a throw-away
directory, ``pg_ctl`` on 127.0.0.1 (a free port) with a private unix socket directory,
stopped by its pid at the end.  Nothing listens on other addresses.

(A fixture of the same purpose is being written as tests/support/postgres.py on another
branch; this one is named apart so the two can be unified when merged.)
"""
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time

BIN = "/usr/lib/postgresql/15/bin"


class PgServer:
    """A running cluster; ``conninfo(db)`` for libpq/psycopg2 (TCP on 127.0.0.1)."""

    def __init__(self, base, port, pid):
        self.base, self.port, self.pid = base, port, pid
        self.socket_dir = os.path.join(base, "sock")

    def conninfo(self, db="postgres"):
        return f"host=127.0.0.1 port={self.port} dbname={db} user=postgres"

    def psql(self, sql, db="postgres"):
        r = subprocess.run([f"{BIN}/psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                            "-h", self.socket_dir, "-p", str(self.port), "-U", "postgres",
                            "-d", db, "-c", sql], capture_output=True, text=True, timeout=600)
        if r.returncode:
            raise RuntimeError(f"psql failed: {r.stderr.strip()}")
        return r.stdout

    def create_db(self, name):
        self.psql(f'CREATE DATABASE "{name}"')
        return self.conninfo(name)

    def stop(self):
        try:
            os.kill(self.pid, signal.SIGINT)         # "fast" shutdown
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        os.kill(self.pid, signal.SIGKILL)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def available():
    """None, or why PostgreSQL 15 cannot run here."""
    if not os.path.exists(f"{BIN}/initdb"):
        return "postgresql-15 is not installed"
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return "no postgres account"
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        return "python3-psycopg2 is not installed"
    return None


def start(base=None, fsync=False):
    """Runs as: root (initdb and the server run as ``postgres``).  A new cluster in a
    throw-away directory; ``fsync=False`` is for speed only (the data is thrown away)."""
    pg = pwd.getpwnam("postgres")
    base = base or tempfile.mkdtemp(prefix="gxt-pg-")
    os.chmod(base, 0o755)
    data, sock = os.path.join(base, "data"), os.path.join(base, "sock")
    os.mkdir(sock, 0o700)
    os.chown(sock, pg.pw_uid, pg.pw_gid)
    os.chown(base, pg.pw_uid, pg.pw_gid)
    subprocess.run([f"{BIN}/initdb", "-D", data, "-A", "trust", "--no-sync", "-U", "postgres"],
                   user="postgres", check=True, capture_output=True, timeout=120, cwd=base)
    port = free_port()
    opts = (f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={sock}"
            + ("" if fsync else " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"))
    subprocess.run([f"{BIN}/pg_ctl", "-D", data, "-l", os.path.join(base, "log"), "-w",
                    "-o", opts, "start"], user="postgres", check=True, capture_output=True,
                   timeout=120, cwd=base)
    with open(os.path.join(data, "postmaster.pid")) as f:
        pid = int(f.readline())
    return PgServer(base, port, pid)


def remove(server):
    server.stop()
    shutil.rmtree(server.base, ignore_errors=True)
