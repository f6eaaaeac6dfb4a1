"""A private NFS-Ganesha server for tests (Debian: nfs-ganesha, nfs-ganesha-vfs): one VFS
export of a throw-away directory, NFSv4 only, TCP on 127.0.0.1 and a free port, in the
foreground (-F) with its own config, log, pid file and recovery directory; stopped by its
pid at the end.  Nothing listens elsewhere.

Why NFSv4 only and no rpcbind: with NFSv3 in ``Protocols`` Ganesha 4.3 must register with
rpcbind and exits without one ("Cannot register NFS V3 on TCP"); NFSv4 needs neither
rpcbind nor MOUNT, and libnfs reaches it with ``nfsport=``.  NLM, rquota and UDP are off.
``Graceless``: a fresh server refuses OPEN/LOCK for its grace period (90 s) otherwise.
``Only_Numeric_Owners``: owners go over the wire as "0", not "root@domain" (no idmapd).
The DBus errors in its log are expected without a system bus (DBus is only its admin
interface); with one, ``Dbus_Name_Prefix`` keeps it apart from a system Ganesha.

Root is needed: the VFS FSAL opens files by handle (open_by_handle_at, CAP_DAC_READ_SEARCH)
and the gridmapdir's files belong to root."""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

from tests.support.skips import strict

NFSD = "/usr/bin/ganesha.nfsd"
FSAL_DIR = "/usr/lib/x86_64-linux-gnu/ganesha"
EXPORT = "/gridmapdir"       # the pseudo path clients mount
LEASE_SECONDS = 5            # NFSv4 lease: a dead client's locks go after ~this long

CONFIG = """\
NFS_CORE_PARAM {{
  Bind_addr = 127.0.0.1;
  NFS_Port = {port};
  Protocols = 4;
  Enable_NLM = false;
  Enable_RQUOTA = false;
  Enable_UDP = false;
  Plugins_Dir = {fsal_dir};
  Dbus_Name_Prefix = glexectest{port};
}}
NFSV4 {{
  Graceless = true;
  Lease_Lifetime = {lease};
  Only_Numeric_Owners = true;
  RecoveryBackend = fs;
  RecoveryRoot = {base}/recovery;
}}
NFS_KRB5 {{ Active_krb5 = false; }}
EXPORT {{
  Export_Id = 1;
  Path = {base}/export;
  Pseudo = {export};
  Access_Type = RW;
  Squash = No_Root_Squash;
  SecType = sys;
  Protocols = 4;
  Transports = TCP;
  FSAL {{ Name = VFS; }}
}}
"""


def _die_with_parent():
    """In the child before exec: SIGTERM when the test process dies, however it dies
    (a crash in a client library must not leave the server running)."""
    import ctypes
    PR_SET_PDEATHSIG = 1
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM) != 0:
        os._exit(127)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self):
        self.base = tempfile.mkdtemp(prefix="glexec-ganesha-", dir="/var/tmp")
        self.export_dir = os.path.join(self.base, "export")
        os.mkdir(self.export_dir, 0o755)
        os.mkdir(os.path.join(self.base, "recovery"), 0o700)
        self.port = _free_port()
        self.conf = os.path.join(self.base, "ganesha.conf")
        self.log = os.path.join(self.base, "ganesha.log")
        with open(self.conf, "w") as f:
            f.write(CONFIG.format(port=self.port, fsal_dir=FSAL_DIR, lease=LEASE_SECONDS,
                                  base=self.base, export=EXPORT))
        self.proc = None
        self.start_seconds = None

    def start(self, timeout=30):
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [NFSD, "-F", "-f", self.conf, "-L", self.log, "-p", os.path.join(self.base, "pid"),
             "-N", "NIV_EVENT"], cwd=self.base, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ganesha.nfsd exited ({self.proc.returncode}): "
                                   + self.log_tail())
            if "NFS SERVER INITIALIZED" in self._log() and self._accepts():
                self.start_seconds = time.monotonic() - t0
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("ganesha.nfsd did not come up: " + self.log_tail())

    def _accepts(self):
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def _log(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def log_tail(self, n=5):
        return " | ".join(self._log().splitlines()[-n:])

    def stop(self):
        """SIGTERM by pid (a clean shutdown), SIGKILL after 20 s; waits for the exit."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def destroy(self):
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)


def start_server():
    """A running Server, or a skip (a failure under CI=true) when NFS-Ganesha, its VFS
    FSAL or libnfs is missing or the server does not start."""
    from tests.nfs import libnfs
    if os.geteuid() != 0:
        pytest.skip("NFS-Ganesha's VFS export needs root (open_by_handle_at)")
    why = None
    if not os.path.exists(NFSD):
        why = "nfs-ganesha is not installed"
    elif not os.path.exists(os.path.join(FSAL_DIR, "libfsalvfs.so")):
        why = "nfs-ganesha-vfs is not installed"
    elif libnfs.load() is None:
        why = "libnfs13 is not installed"
    if why:
        if strict():
            pytest.fail(why)
        pytest.skip(why)
    server = Server()
    try:
        server.start()
    except RuntimeError as e:
        server.destroy()
        if strict():
            pytest.fail(str(e))
        pytest.skip(str(e))
    return server
