"""A private NFS-Ganesha server for tests (Debian: nfs-ganesha, nfs-ganesha-vfs): one VFS
export of a throw-away directory, TCP on 127.0.0.1, in the foreground (-F) with its own
config, log, pid file and recovery directory; stopped at the end.  Nothing listens elsewhere.

Two ways, because NFSv3 needs rpcbind:

- ``Server()``: NFSv4 only, on a free port of the host's 127.0.0.1, no rpcbind.  With
  NFSv3 in ``Protocols`` Ganesha 4.3 must register with rpcbind and exits without one
  ("Cannot register NFS V3 on TCP"); NFSv4 needs neither rpcbind nor MOUNT, and libnfs
  reaches it with ``nfsport=``.
- ``Server(nfs3=True)``: NFSv3 + NFSv4 in a private network, mount and PID namespace
  (``unshare``) with its own rpcbind and a tmpfs on /run for rpcbind's socket: rpcbind's
  port 111 and the server exist only there.  Clients run in that network namespace
  (``nsenter --net``, ``Server.prefix``).  The namespace's lo gets a second address
  (10.254.0.1/32) only because glibc's AI_ADDRCONFIG ignores 127/8 and Ganesha's
  getaddrinfo("127.0.0.1") finds nothing otherwise.  Its PID namespace dies with it.

NLM, rquota and UDP are off.  ``Graceless``: a fresh server refuses OPEN/LOCK for its grace
period (90 s) otherwise.  ``Only_Numeric_Owners``: owners go over the wire as "0", not
"root@domain" (no idmapd).  The DBus errors in its log are expected without a system bus
(DBus is only its admin interface); with one, ``Dbus_Name_Prefix`` keeps it apart from a
system Ganesha.

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
RPCBIND = "/usr/sbin/rpcbind"
FSAL_DIR = "/usr/lib/x86_64-linux-gnu/ganesha"
EXPORT = "/gridmapdir"       # the NFSv4 pseudo path clients mount
LEASE_SECONDS = 5            # NFSv4 lease: a dead client's locks go after ~this long
NS_PORT, NS_MOUNT_PORT = 2049, 20048     # inside the private namespace: nothing else there

CONFIG = """\
NFS_CORE_PARAM {{
  Bind_addr = 127.0.0.1;
  NFS_Port = {port};
  MNT_Port = {mount_port};
  Protocols = {protocols};
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
  Protocols = {protocols};
  Transports = TCP;
  FSAL {{ Name = VFS; }}
}}
"""

# pid 1 of the private namespaces: rpcbind, then Ganesha once rpcbind's socket exists;
# SIGTERM (from unshare --kill-child) stops both cleanly.
NAMESPACE_INIT = """\
set -e
ip link set lo up
ip addr add 10.254.0.1/32 dev lo
mount -t tmpfs -o mode=0755 tmpfs /run
{rpcbind} -f -w & r=$!
while [ ! -S /run/rpcbind.sock ]; do sleep 0.02; done
{nfsd} & g=$!
trap 'kill -TERM $g; wait $g; kill -TERM $r; wait $r; exit 0' TERM
wait $g
"""


def _die_with_parent(sig):
    """For the child before exec: ``sig`` when the test process dies, however it dies (a
    crash in a client library must not leave the server running)."""
    def arm():
        import ctypes
        PR_SET_PDEATHSIG = 1
        if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, sig) != 0:
            os._exit(127)
    return arm


def _ppid(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rpartition(")")[2].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, nfs3=False):
        self.nfs3 = nfs3
        self.base = tempfile.mkdtemp(prefix="glexec-ganesha-", dir="/var/tmp")
        self.export_dir = os.path.join(self.base, "export")
        os.mkdir(self.export_dir, 0o755)
        os.mkdir(os.path.join(self.base, "recovery"), 0o700)
        self.port = NS_PORT if nfs3 else _free_port()
        self.conf = os.path.join(self.base, "ganesha.conf")
        self.log = os.path.join(self.base, "ganesha.log")
        with open(self.conf, "w") as f:
            f.write(CONFIG.format(port=self.port, mount_port=NS_MOUNT_PORT if nfs3 else 0,
                                  protocols="3, 4" if nfs3 else "4", fsal_dir=FSAL_DIR,
                                  lease=LEASE_SECONDS, base=self.base, export=EXPORT))
        # NFSv3 mounts the export's real path (mount_path_pseudo is false)
        self.target = (f"3,{self.port},{NS_MOUNT_PORT},{self.export_dir}" if nfs3
                       else f"4,{self.port},0,{EXPORT}")
        self.proc = None
        self.prefix = []             # argv prefix that runs a client where the server is
        self.start_seconds = None

    def _nfsd_argv(self):
        return [NFSD, "-F", "-f", self.conf, "-L", self.log,
                "-p", os.path.join(self.base, "pid"), "-N", "NIV_EVENT"]

    def start(self, timeout=30):
        t0 = time.monotonic()
        if self.nfs3:
            # unshare ignores SIGTERM while it waits: SIGKILL it, and its --kill-child
            # SIGTERM stops the namespace's init cleanly
            init = NAMESPACE_INIT.format(rpcbind=RPCBIND, nfsd=" ".join(self._nfsd_argv()))
            argv = ["unshare", "--net", "--mount", "--propagation", "private", "--pid",
                    "--fork", "--kill-child=SIGTERM", "sh", "-c", init]
            orphaned = signal.SIGKILL
        else:
            argv, orphaned = self._nfsd_argv(), signal.SIGTERM
        self.proc = subprocess.Popen(argv, cwd=self.base, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     preexec_fn=_die_with_parent(orphaned))
        if self.nfs3:
            self.prefix = ["nsenter", f"--net=/proc/{self.proc.pid}/ns/net"]
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
        if self.nfs3:
            probe = "import socket; socket.create_connection(('127.0.0.1', %d), 1).close()"
            return subprocess.run(self.prefix + ["python3", "-c", probe % self.port],
                                  capture_output=True).returncode == 0
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
        """SIGTERM by pid (a clean shutdown), SIGKILL after 20 s; waits for the exit.  In
        the namespace the SIGTERM goes to its init (unshare --fork ignores SIGTERM while it
        waits), which stops Ganesha and rpcbind; then waits until no process is left."""
        if self.proc is None or self.proc.poll() is not None:
            return
        netns = os.readlink(f"/proc/{self.proc.pid}/ns/net") if self.nfs3 else None
        if netns:
            for pid in self.namespace_pids(netns):
                if pid != self.proc.pid and _ppid(pid) == self.proc.pid:
                    os.kill(pid, signal.SIGTERM)
        else:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        deadline = time.monotonic() + 20
        while netns and self.namespace_pids(netns) and time.monotonic() < deadline:
            time.sleep(0.05)

    @staticmethod
    def namespace_pids(netns):
        """Pids of the processes in the network namespace ``netns`` ("net:[inode]")."""
        out = []
        for pid in os.listdir("/proc"):
            try:
                if pid.isdigit() and os.readlink(f"/proc/{pid}/ns/net") == netns:
                    out.append(int(pid))
            except OSError:
                pass
        return out

    def destroy(self):
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)


def start_server(nfs3=False):
    """A running Server, or a skip (a failure under CI=true) when NFS-Ganesha, its VFS
    FSAL, rpcbind (NFSv3) or libnfs is missing or the server does not start."""
    from tests.nfs import libnfs
    if os.geteuid() != 0:
        pytest.skip("NFS-Ganesha's VFS export needs root (open_by_handle_at)")
    why = None
    if not os.path.exists(NFSD):
        why = "nfs-ganesha is not installed"
    elif not os.path.exists(os.path.join(FSAL_DIR, "libfsalvfs.so")):
        why = "nfs-ganesha-vfs is not installed"
    elif nfs3 and not os.path.exists(RPCBIND):
        why = "rpcbind is not installed"
    elif libnfs.load() is None:
        why = "libnfs13 is not installed"
    if why:
        if strict():
            pytest.fail(why)
        pytest.skip(why)
    server = Server(nfs3=nfs3)
    try:
        server.start()
    except RuntimeError as e:
        server.destroy()
        if strict():
            pytest.fail(str(e))
        pytest.skip(str(e))
    return server
