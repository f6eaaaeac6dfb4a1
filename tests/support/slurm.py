"""A private one-node Slurm (Debian 12's 22.05) for tests, started by hand without systemd.

Recipe: ../shared/reference/batch.md section 2.  Everything lives in a fresh scratch dir
``S = mktemp -d`` (chmod 755, so slurm, munge and job users can traverse it): a private
munged with its own key and socket, ``S/slurm.conf`` with the node line taken from
``slurmd -C``, state/spool/log/pid files in S.  Nothing is written to /etc/slurm or
/run/munge.  Needs root.

    ensure_packages()                     # apt-get install ... if missing (about 20-30 s once)
    with SlurmCluster() as c:             # up in ~1-2 s
        j = c.submit("gxtbpilot", "#!/bin/sh\\nsleep 30\\n", cwd=workdir)
        c.wait_state(j, {"RUNNING"}, timeout=20)
        c.suspend(j); c.resume(j); c.cancel(j)
        c.listpids(j), c.sstat_cpu(j), c.env   # env: SLURM_CONF for client commands
    # down: cancels every job, scontrol shutdown, waits (KILL after 10 s), stops munged,
    # kills leftover slurmstepd of this cluster, removes the cgroup v1 dirs Slurm left.

proctrack/cgroup when a cgroup hierarchy Slurm can use exists (``cgroup_hierarchy``: v1 with a
freezer, or a unified cgroup2 /sys/fs/cgroup, used without systemd), otherwise
proctrack/linuxproc (with jobacct_gather/linux); ``c.proctrack`` says which.
Every poll is bounded by a timeout.  One cluster per machine at a time (flock).
"""
from __future__ import annotations

import fcntl
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["PACKAGES", "SlurmError", "ensure_packages", "packages_missing", "SlurmCluster",
           "cgroup_v1_available", "cgroup_hierarchy"]

# What CI must install (Debian 12): the daemons, the clients, munge, the Torque wrappers.
PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge", "slurm-wlm-torque")
SPANK_PBS = "/usr/lib/x86_64-linux-gnu/slurm-wlm/spank_pbs.so"
LOCK_FILE = Path("/var/lib/glexec-py-tests/.slurm.lock")
CLIENT_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


class SlurmError(RuntimeError):
    pass


def _run(cmd, *, timeout=30, check=True, env=None, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=timeout, env=env, **kw)
    if check and p.returncode != 0:
        raise SlurmError(f"{' '.join(map(str, cmd))} failed ({p.returncode}): "
                         f"{p.stderr.strip() or p.stdout.strip()}")
    return p


def packages_missing(packages=PACKAGES) -> list[str]:
    missing = []
    for p in packages:
        r = subprocess.run(["dpkg", "-s", p], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                           text=True)
        if r.returncode != 0 or "Status: install ok installed" not in r.stdout:
            missing.append(p)
    return missing


def ensure_packages(packages=PACKAGES, timeout: float = 600) -> list[str]:
    """Install the missing ones (``apt-get install -y --no-install-recommends``); return what
    was installed.  Raises SlurmError when apt fails (no network, no root, ...)."""
    missing = packages_missing(packages)
    if not missing:
        return []
    if os.geteuid() != 0:
        raise SlurmError(f"not installed and not root: {' '.join(missing)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    r = _run(["apt-get", "install", "-y", "--no-install-recommends", *missing], timeout=timeout,
             check=False, env=env)
    if r.returncode != 0:   # stale package lists: update once and retry
        _run(["apt-get", "update"], timeout=timeout, check=False, env=env)
        _run(["apt-get", "install", "-y", "--no-install-recommends", *missing],
             timeout=timeout, env=env)
    still = packages_missing(missing)
    if still:
        raise SlurmError(f"apt-get did not install: {' '.join(still)}")
    return missing


def cgroup_v1_available() -> bool:
    return os.path.isdir("/sys/fs/cgroup/freezer")


def cgroup_hierarchy():
    """What proctrack/cgroup can use here: ``(plugin, mount point, accounting ok)`` or None.

    cgroup v1 with a freezer hierarchy (batch.md's machine); else a cgroup2 hierarchy at
    /sys/fs/cgroup (Debian 12 with systemd: the unified layout), used by Slurm's cgroup/v2
    without systemd (``IgnoreSystemd``). A hybrid host's extra cgroup2 mount
    (/sys/fs/cgroup/unified) is no use: slurmd refuses "Hybrid mode is not supported"."""
    if cgroup_v1_available():
        return "cgroup/v1", "/sys/fs/cgroup", True
    return _cgroup2("/sys/fs/cgroup")


def _cgroup2(mount):
    try:
        with open(os.path.join(mount, "cgroup.controllers")) as f:
            controllers = set(f.read().split())
    except OSError:
        return None
    return "cgroup/v2", mount, {"cpu", "memory"} <= controllers


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _pick_port(preferred: int, avoid=()) -> int:
    if preferred not in avoid and _port_free(preferred):
        return preferred
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in avoid:
            return port
    raise SlurmError("no free TCP port for Slurm")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive for our purposes
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _wait_gone(pids, timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    left = [p for p in pids if p]
    while left and time.monotonic() < deadline:
        left = [p for p in left if _pid_alive(p)]
        if left:
            time.sleep(0.1)
    return [p for p in left if _pid_alive(p)]


class SlurmCluster:
    """Context manager: a private one-node Slurm (see module doc)."""

    def __init__(self, *, proctrack: str | None = None, ctld_port: int = 6817,
                 slurmd_port: int = 6818, kill_wait: int = 5, start_timeout: float = 30,
                 base_dir: str | None = None):
        self.cgroup = cgroup_hierarchy()
        if proctrack is None:
            proctrack = "cgroup" if self.cgroup else "linuxproc"
        if proctrack not in ("cgroup", "linuxproc") or (proctrack == "cgroup" and not self.cgroup):
            raise ValueError(proctrack)
        self.proctrack = proctrack
        # cgroup accounting needs the cpu and memory controllers (v1: always mounted here)
        self.jobacct = "cgroup" if proctrack == "cgroup" and self.cgroup[2] else "linux"
        self.kill_wait = kill_wait
        self.start_timeout = start_timeout
        self._ports = (ctld_port, slurmd_port)
        self._base_dir = base_dir
        self.dir: Path | None = None
        self.host = socket.gethostname().split(".")[0]
        self.env: dict[str, str] = {}
        self.timings: dict[str, float] = {}
        self._lock_fd = None
        self._pids: dict[str, int] = {}

    # --- life cycle ---------------------------------------------------------------------------

    def __enter__(self) -> "SlurmCluster":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()

    def _lock(self, timeout: float = 300):
        LOCK_FILE.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        fd = os.open(LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise SlurmError(f"another test Slurm holds {LOCK_FILE}")
                time.sleep(0.5)
        self._lock_fd = fd

    def start(self) -> None:
        if os.geteuid() != 0:
            raise SlurmError("starting a private Slurm needs root")
        missing = packages_missing()
        if missing:
            raise SlurmError(f"packages missing: {' '.join(missing)} (call ensure_packages())")
        t0 = time.monotonic()
        self._lock()
        self.dir = S = Path(tempfile.mkdtemp(prefix="glexec-slurm-", dir=self._base_dir)).resolve()
        os.chmod(S, 0o755)
        slurm = pwd.getpwnam("slurm")
        munge = pwd.getpwnam("munge")
        for name, owner, mode in (("munge", munge, 0o711), ("state", slurm, 0o755),
                                  ("log", slurm, 0o755), ("run", slurm, 0o755),
                                  ("spool", None, 0o755)):
            d = S / name
            d.mkdir(mode=mode)
            if owner is not None:
                os.chown(d, owner.pw_uid, owner.pw_gid)
            os.chmod(d, mode)

        # step 1: private munged
        key = S / "munge" / "munge.key"
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
        os.write(fd, os.urandom(1024))
        os.close(fd)
        os.chown(key, munge.pw_uid, munge.pw_gid)
        self.munge_socket = S / "munge" / "sock"
        _run(["runuser", "-u", "munge", "--", "/usr/sbin/munged",
              f"--socket={self.munge_socket}", f"--key-file={key}",
              f"--pid-file={S}/munge/munged.pid", f"--log-file={S}/munge/munged.log",
              f"--seed-file={S}/munge/seed"], timeout=15)
        self._pids["munged"] = _read_pid(S / "munge" / "munged.pid")
        enc = _run(["munge", "-S", str(self.munge_socket), "-n"], timeout=10)
        dec = _run(["unmunge", "-S", str(self.munge_socket)], input=enc.stdout, timeout=10)
        if "STATUS:" not in dec.stdout or "Success" not in dec.stdout:
            raise SlurmError(f"munge self-test failed: {dec.stdout}")
        self.timings["munge"] = time.monotonic() - t0

        # step 2: config
        avoid = set()
        ctld = _pick_port(self._ports[0])
        avoid.add(ctld)
        slurmd_port = _pick_port(self._ports[1], avoid)
        node_line = _run(["slurmd", "-C"], timeout=15).stdout.splitlines()[0].strip()
        if not node_line.startswith("NodeName="):
            raise SlurmError(f"unexpected `slurmd -C` output: {node_line!r}")
        self.node = node_line.split()[0].split("=", 1)[1]
        pt = f"proctrack/{self.proctrack}"
        conf = [
            "ClusterName=ci",
            f"SlurmctldHost={self.host}(127.0.0.1)",
            "SlurmUser=slurm",
            f"SlurmctldPort={ctld}",
            f"SlurmdPort={slurmd_port}",
            "AuthType=auth/munge",
            f"AuthInfo=socket={self.munge_socket}",
            "CredType=cred/munge",
            f"StateSaveLocation={S}/state",
            f"SlurmdSpoolDir={S}/spool",
            f"SlurmctldPidFile={S}/run/slurmctld.pid",
            f"SlurmdPidFile={S}/run/slurmd.pid",
            f"SlurmctldLogFile={S}/log/slurmctld.log",
            f"SlurmdLogFile={S}/log/slurmd.log",
            f"ProctrackType={pt}",
            "TaskPlugin=task/none",
            f"JobAcctGatherType=jobacct_gather/{self.jobacct}",
            "JobAcctGatherFrequency=task=2",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/filetxt",
            f"JobCompLoc={S}/log/jobcomp.txt",
            "MpiDefault=none",
            "ReturnToService=2",
            f"KillWait={self.kill_wait}",
            "MinJobAge=300",
            "SchedulerParameters=batch_sched_delay=0,sched_min_interval=0",
            f"PlugStackConfig={S}/plugstack.conf",
            f"{node_line} NodeAddr=127.0.0.1 State=UNKNOWN",
            f"PartitionName=debug Nodes={self.node} Default=YES MaxTime=INFINITE State=UP "
            "OverSubscribe=FORCE:4",
        ]
        (S / "slurm.conf").write_text("\n".join(conf) + "\n")
        if self.proctrack == "cgroup":
            plugin, mount, _ = self.cgroup
            lines = [f"CgroupPlugin={plugin}", f"CgroupMountpoint={mount}"]
            # v2 without systemd: slurmd makes its own scope cgroup and enables controllers
            lines += ["IgnoreSystemd=yes", "CgroupAutomount=yes"] if plugin == "cgroup/v2" \
                else ["CgroupAutomount=no"]
            (S / "cgroup.conf").write_text("\n".join(lines) + "\n")
        (S / "plugstack.conf").write_text(
            f"optional {SPANK_PBS}\n" if os.path.exists(SPANK_PBS) else "")
        for f in ("slurm.conf", "cgroup.conf", "plugstack.conf"):
            if (S / f).exists():
                os.chmod(S / f, 0o644)
        self.conf = S / "slurm.conf"
        self.env = {"SLURM_CONF": str(self.conf)}

        # step 4: start and wait for the node
        t1 = time.monotonic()
        _run(["slurmctld", "-f", str(self.conf)], env=self._client_env(), timeout=30)
        _run(["slurmd", "-f", str(self.conf), "-N", self.node], env=self._client_env(), timeout=30)
        deadline = time.monotonic() + self.start_timeout
        state = ""
        while time.monotonic() < deadline:
            r = self.client(["sinfo", "-h", "-N", "-o", "%t"], check=False, timeout=5)
            state = r.stdout.strip()
            if state == "idle":
                break
            time.sleep(0.1)
        else:
            raise SlurmError(f"node not idle after {self.start_timeout} s (sinfo: {state!r}); "
                             f"logs in {S}/log:\n{self.log_tail()}")
        self._pids["slurmctld"] = _read_pid(S / "run" / "slurmctld.pid")
        self._pids["slurmd"] = _read_pid(S / "run" / "slurmd.pid")
        self.timings["daemons"] = time.monotonic() - t1
        self.timings["start"] = time.monotonic() - t0

    def log_tail(self, n: int = 20) -> str:
        out = []
        for f in ("slurmctld.log", "slurmd.log"):
            p = (self.dir or Path("/nonexistent")) / "log" / f
            if p.exists():
                out.append(f"--- {f}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-n:]))
        return "\n".join(out)

    def _stepds(self) -> list[int]:
        """slurmstepd processes of this cluster (their cmdline or environment names our conf
        only indirectly, so match on the spool dir they hold open as cwd)."""
        found = []
        if self.dir is None:
            return found
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                if (d / "comm").read_text().strip() != "slurmstepd":
                    continue
                cwd = os.readlink(d / "cwd")
            except OSError:
                continue
            if cwd.startswith(str(self.dir)) or cwd == "/":
                # slurmstepd chdirs to the spool dir; "/" when that failed: still ours if the
                # only cluster (we hold the machine-wide lock)
                found.append(int(d.name))
        return found

    def stop(self) -> None:
        """Batch.md step 5: cancel all jobs and wait, shutdown (KILL after 10 s), munged --stop,
        kill leftover slurmstepd, remove cgroup v1 dirs, remove the scratch dir."""
        if self.dir is None:
            self._unlock()
            return
        t0 = time.monotonic()
        S = self.dir
        try:
            if self.env:
                r = self.client(["squeue", "-h", "-o", "%i"], check=False, timeout=10)
                jobs = r.stdout.split()
                if jobs:
                    self.client(["scancel", *jobs], check=False, timeout=10)
                    deadline = time.monotonic() + self.kill_wait + 15
                    while time.monotonic() < deadline:
                        # squeue lists pending, running and completing jobs only
                        r = self.client(["squeue", "-h", "-o", "%i %T"], check=False, timeout=5)
                        if r.returncode != 0 or not r.stdout.strip():
                            break
                        time.sleep(0.2)
                pids = [_read_pid(S / "run" / "slurmctld.pid") or self._pids.get("slurmctld"),
                        _read_pid(S / "run" / "slurmd.pid") or self._pids.get("slurmd")]
                self.client(["scontrol", "shutdown"], check=False, timeout=10)
                left = _wait_gone(pids, 10)
                for p in left:
                    try:
                        os.kill(p, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                _wait_gone(left, 5)
            stepds = self._stepds()
            for p in stepds:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            _wait_gone(stepds, 5)
            munged = _read_pid(S / "munge" / "munged.pid") or self._pids.get("munged")
            if munged:
                subprocess.run(["runuser", "-u", "munge", "--", "/usr/sbin/munged",
                                f"--socket={S}/munge/sock", "--stop"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=15)
                if _wait_gone([munged], 10):
                    try:
                        os.kill(munged, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            self._remove_cgroups()
        finally:
            self.timings["stop"] = time.monotonic() - t0
            if os.environ.get("GLEXEC_KEEP_SLURM_DIR") != "1":
                shutil.rmtree(S, ignore_errors=True)
            self.dir = None
            self._unlock()

    def _remove_cgroups(self) -> None:
        root = Path("/sys/fs/cgroup")
        if not root.is_dir():
            return
        tops = [ctl / f"slurm_{self.node}" for ctl in root.iterdir()] if hasattr(self, "node") else []
        if self.cgroup and self.cgroup[0] == "cgroup/v2":
            # cgroup/v2 with IgnoreSystemd: slurmd makes its scope under system.slice
            tops += list(Path(self.cgroup[1], "system.slice").glob("*slurmstepd.scope"))
        for top in tops:
            if not top.is_dir() or top.is_symlink():
                continue
            for dirpath, dirnames, _ in sorted(os.walk(top, topdown=False), key=lambda x: -len(x[0])):
                try:
                    os.rmdir(dirpath)
                except OSError:
                    pass

    def _unlock(self):
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    # --- client commands ------------------------------------------------------------------------

    def _client_env(self, extra=None) -> dict:
        env = {"PATH": CLIENT_PATH, "LC_ALL": "C", **self.env}
        if extra:
            env.update(extra)
        return env

    def client(self, argv, *, user=None, env=None, check=True, timeout=30, cwd=None,
               input=None) -> subprocess.CompletedProcess:
        """Run a Slurm client command (as root, or as ``user`` with that account's groups)."""
        kw = {}
        if user is not None:
            pw = pwd.getpwnam(user)
            kw = dict(user=pw.pw_uid, group=pw.pw_gid,
                      extra_groups=sorted(set(os.getgrouplist(pw.pw_name, pw.pw_gid))))
        return _run(list(argv), env=self._client_env(env), check=check, timeout=timeout,
                    cwd=cwd, input=input, **kw)

    def submit(self, user: str, script: str, env: dict | None = None, *, cwd=None,
               args=()) -> str:
        """sbatch ``script`` (text) as ``user``; returns the job id.  The script is written to
        ``cwd`` (default: a fresh dir in the scratch dir owned by ``user``)."""
        pw = pwd.getpwnam(user)
        if cwd is None:
            cwd = Path(tempfile.mkdtemp(prefix=f"work-{user}-", dir=self.dir))
            os.chown(cwd, pw.pw_uid, pw.pw_gid)
            os.chmod(cwd, 0o755)
        cwd = Path(cwd)
        fd, path = tempfile.mkstemp(prefix="job-", suffix=".sh", dir=cwd)
        os.write(fd, script.encode())
        os.fchown(fd, pw.pw_uid, pw.pw_gid)
        os.fchmod(fd, 0o755)
        os.close(fd)
        r = self.client(["sbatch", "--parsable", "-D", str(cwd), *args, path], user=user,
                        env=env, cwd=cwd, timeout=30)
        return r.stdout.strip().split(";")[0]

    def state(self, jobid: str) -> str:
        r = self.client(["squeue", "-h", "-j", str(jobid), "-o", "%T"], check=False, timeout=10)
        if r.returncode == 0 and r.stdout.strip():
            return r.stdout.strip()
        r = self.client(["scontrol", "-o", "show", "job", str(jobid)], check=False, timeout=10)
        for tok in r.stdout.split():
            if tok.startswith("JobState="):
                return tok.split("=", 1)[1]
        return "UNKNOWN"

    def wait_state(self, jobid: str, states, timeout: float = 30) -> str:
        states = {states} if isinstance(states, str) else set(states)
        deadline = time.monotonic() + timeout
        st = ""
        while time.monotonic() < deadline:
            st = self.state(jobid)
            if st in states:
                return st
            time.sleep(0.1)
        raise SlurmError(f"job {jobid} not in {sorted(states)} after {timeout} s (state {st})")

    def suspend(self, jobid: str) -> None:
        self.client(["scontrol", "suspend", str(jobid)])

    def resume(self, jobid: str) -> None:
        self.client(["scontrol", "resume", str(jobid)])

    def cancel(self, jobid: str, user: str | None = None) -> None:
        self.client(["scancel", str(jobid)], user=user)

    def listpids(self, jobid: str) -> list[int]:
        r = self.client(["scontrol", "listpids", str(jobid)], check=False, timeout=10)
        pids = []
        for line in r.stdout.splitlines()[1:]:
            f = line.split()
            if f and f[0].isdigit():
                pids.append(int(f[0]))
        return pids

    def sstat_cpu(self, jobid: str, step: str = "batch") -> float | None:
        """AveCPU of step ``jobid.step`` in seconds (None when sstat has nothing yet)."""
        r = self.client(["sstat", "-n", "-P", "-j", f"{jobid}.{step}", "-o", "AveCPU"],
                        check=False, timeout=10)
        text = r.stdout.strip().splitlines()
        if r.returncode != 0 or not text:
            return None
        return parse_duration(text[0].strip())


def parse_duration(text: str) -> float | None:
    """Slurm's ``[D-][HH:]MM:SS[.fff]`` as seconds."""
    if not text:
        return None
    days = 0
    if "-" in text:
        d, text = text.split("-", 1)
        days = int(d)
    parts = text.split(":")
    try:
        nums = [float(p) for p in parts]
    except ValueError:
        return None
    secs = 0.0
    for n in nums:
        secs = secs * 60 + n
    return days * 86400 + secs
