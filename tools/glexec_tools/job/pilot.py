"""glexec-job run / renew / recover: the pilot's side of a job.

Runs as: the pilot (an unprivileged account allowed to call glexec).  Everything that touches
the job directory runs AS THE TARGET through glexec (``inner.py``: mkjob, unpack, exec,
renew, sweep, du, collect, wipe); the pilot never enters the directory and the payload never
sees anything of the pilot's: glexec gets a fresh environment (PATH and GLEXEC_* only; the
job's declared variables travel in GLEXEC_ENV, core/envwrap.py), fds 0-2 only (stdin
/dev/null, stdout and stderr pipes the wrapper copies into the pilot's output directory).

The wrapper is a child subreaper (PR_SET_CHILD_SUBREAPER): a payload process that changes
session or double-forks is re-parented to it instead of init, so "the job's processes" are
exactly the target's processes below the wrapper, which ``inner sweep`` signals as the
target until none is left.  A job whose wrapper died (SIGKILL) is found on the next run by
its record in the pilot's state directory (``live/<id>.json``; the wrapper holds a lock on
``live/<id>.lock`` while it lives) and recovered: every process of its target swept, its
directory wiped, both recorded in ``jobs.jsonl``.
"""
import fcntl
import json
import os
import select
import signal
import subprocess
import time

from . import plan

BOOT = ("import sys, runpy; sys.path[:0] = %r; "
        "runpy.run_module('glexec_tools.job.inner', run_name='__main__', alter_sys=True)")
PR_SET_CHILD_SUBREAPER = 36
HELPER_TIMEOUT = 600
SIGKILL, SIGTERM = signal.SIGKILL, signal.SIGTERM


class JobError(Exception):
    """A step of the job failed; str() is one line."""


def libdirs():
    """The directories holding glexec_tools and glexec_py (one, root-owned, when installed;
    tools/ and the repository in a source tree), put first on the inner interpreter's
    sys.path (-I ignores PYTHONPATH)."""
    import glexec_py
    import glexec_tools
    out = []
    for pkg in (glexec_tools, glexec_py):
        d = os.path.dirname(os.path.dirname(os.path.abspath(pkg.__file__)))
        if d not in out:
            out.append(d)
    return out


def become_subreaper():
    """Runs as: the pilot.  True if orphaned descendants now come to this process."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


# --- the target, through glexec ---------------------------------------------------------------

class Target:
    """Runs ``inner`` actions as the account ``proxy`` maps to, through ``glexec``; keeps
    a record of every call (its pid is the ``caller.pid`` of glexec's audit records)."""

    def __init__(self, glexec, python, proxy, calls):
        self.glexec, self.python, self.proxy, self.calls = glexec, python, proxy, calls
        self.lib = libdirs()

    def argv(self, action, *args):
        return [self.glexec, self.python, "-I", "-c", BOOT % self.lib, action, *args]

    def env(self, target_proxy=None, wrapped=None):
        env = {"PATH": "/usr/bin:/bin", "GLEXEC_CLIENT_CERT": self.proxy,
               "GLEXEC_TARGET_PROXY": target_proxy or "/dev/null"}
        if wrapped is not None:
            env["GLEXEC_ENV"] = wrapped
        return env

    def call(self, action, *args, stdin=None, stdout=None, proxy=None, timeout=HELPER_TIMEOUT):
        """(exit code, last JSON line of stdout or None, last stderr line)."""
        env = self.env()
        if proxy:
            env["GLEXEC_CLIENT_CERT"] = proxy
        t0 = time.monotonic()
        p = subprocess.Popen(self.argv(action, *args), stdin=stdin if stdin is not None else subprocess.DEVNULL,
                             stdout=stdout if stdout is not None else subprocess.PIPE,
                             stderr=subprocess.PIPE, env=env, cwd="/", close_fds=True)
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
            err = (err or b"") + f"\n{action}: timed out after {timeout} s".encode()
        self.calls.append({"action": action, "glexec_pid": p.pid, "exit": p.returncode,
                           "seconds": round(time.monotonic() - t0, 3)})
        lines = (err or b"").strip().splitlines()
        last_err = lines[-1].decode("utf-8", "replace")[:300] if lines else ""
        result = None
        if out:
            try:
                result = json.loads(out.strip().splitlines()[-1])
            except (ValueError, IndexError):
                result = None
        return p.returncode, result, last_err, lines


# --- the pilot's state directory ----------------------------------------------------------

class StateDir:
    """``DIR/live/<id>.json`` (a job whose directory may exist), ``<id>.proxy`` (its proxy,
    for the wipe), ``<id>.lock`` (held by its wrapper), ``DIR/jobs.jsonl`` (one record per
    job, renewal and recovery).  The directory must be the pilot's and private."""

    def __init__(self, path):
        self.path = os.path.abspath(path)
        for d in (self.path, os.path.join(self.path, "live")):
            try:
                os.mkdir(d, 0o700)
            except FileExistsError:
                pass
            st = os.lstat(d)
            if not os.path.isdir(d) or os.path.islink(d) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
                raise JobError(f"{d}: the state directory must be a directory of the caller's, mode 0700")
        self.live = os.path.join(self.path, "live")

    def _file(self, job_id, ext):
        return os.path.join(self.live, f"{job_id}.{ext}")

    def write_atomic(self, path, data: bytes, mode=0o600):
        tmp = f"{path}.tmp{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)

    def register(self, record, proxy_bytes):
        """The job's record and proxy copy, written before its directory exists; returns
        the lock fd the wrapper holds until the job is wiped."""
        job_id = record["id"]
        lock = os.open(self._file(job_id, "lock"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.write_atomic(self._file(job_id, "proxy"), proxy_bytes)
        self.update(record)
        return lock

    def update(self, record):
        self.write_atomic(self._file(record["id"], "json"), json.dumps(record, sort_keys=True).encode() + b"\n")

    def proxy(self, job_id):
        return self._file(job_id, "proxy")

    def read(self, job_id):
        if not plan.valid_job_id(job_id):
            raise JobError(f"not a job id: {job_id[:80]!r}")
        try:
            with open(self._file(job_id, "json"), "rb") as f:
                return json.loads(f.read(1 << 20))
        except FileNotFoundError:
            raise JobError(f"no live job {job_id} in {self.live}") from None

    def forget(self, job_id, lock=None):
        for ext in ("json", "proxy", "lock"):
            try:
                os.unlink(self._file(job_id, ext))
            except FileNotFoundError:
                pass
        if lock is not None:
            os.close(lock)

    def live_ids(self):
        return sorted(n[:-5] for n in os.listdir(self.live) if n.endswith(".json") and plan.valid_job_id(n[:-5]))

    def is_alive(self, job_id):
        """Whether the job's wrapper still holds its lock (a lock fd closes with it)."""
        try:
            fd = os.open(self._file(job_id, "lock"), os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def log(self, record):
        """Runs as: the pilot.  Append one line to jobs.jsonl (the per-job audit record)."""
        line = json.dumps(record, sort_keys=True).encode() + b"\n"
        fd = os.open(os.path.join(self.path, "jobs.jsonl"),
                     os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            with _locked(fd):
                os.write(fd, line)
        finally:
            os.close(fd)


class _locked:
    def __init__(self, fd):
        self.fd = fd

    def __enter__(self):
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc):
        fcntl.flock(self.fd, fcntl.LOCK_UN)


def recover(state, cfg, glexec, exclude=()):
    """Runs as: the pilot.  Sweep and wipe every job in ``state`` whose wrapper is gone;
    returns their records.  A job stays listed (and is tried again) until its wipe is
    verified."""
    done = []
    guard = os.open(os.path.join(state.path, "recover.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        with _locked(guard):
            ids = [i for i in state.live_ids() if i not in exclude]
            alive = {i: state.is_alive(i) for i in ids}
            live_uids = set()
            for i in ids:
                if alive[i]:
                    try:
                        live_uids.add(state.read(i).get("target_uid"))
                    except (JobError, ValueError):
                        pass
            for i in ids:
                if alive[i]:
                    continue
                try:
                    rec = state.read(i)
                except (JobError, ValueError) as e:
                    done.append({"event": "recover_failed", "job": i, "reason": str(e)})
                    continue
                done.append(_recover_one(state, cfg, glexec, rec, live_uids))
    finally:
        os.close(guard)
    for r in done:
        state.log(r)
    return done


def _recover_one(state, cfg, glexec, rec, live_uids):
    calls = []
    t = Target(glexec, cfg.python, state.proxy(rec["id"]), calls)
    out = {"event": "recovered", "job": rec["id"], "job_dir": rec["job_dir"], "target_uid": rec.get("target_uid"),
           "time": time.time(), "glexec_calls": calls}
    if rec.get("target_uid") in live_uids:
        out["sweep"] = "skipped: another live job of this pilot runs as the same account"
    else:
        rc, res, err, _ = t.call("sweep", "--all", "--signal", str(int(SIGKILL)))
        out["sweep"] = res if rc == 0 else f"failed: {err}"
    rc, res, err, _ = t.call("wipe", "--dir", rec["job_dir"])
    out["wipe"] = res if rc == 0 else f"failed: {err}"
    if rc == 0 and res and res.get("gone"):
        state.forget(rec["id"])
    else:
        out["event"] = "recover_failed"
    return out


# --- /proc: the wrapper's descendants ----------------------------------------------------------

def descendants(root=None):
    """{pid: stat fields after the command} of the live (not zombie) processes below
    ``root`` (this process)."""
    root = root or os.getpid()
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                raw = f.read(4096)
        except OSError:
            continue
        table[int(name)] = raw[raw.rfind(b")") + 2:].split()
    out = {}
    for pid, rest in table.items():
        if rest[0] in (b"Z", b"X"):
            continue
        p, hops = pid, 0
        while p > 1 and hops < 4096:
            p, hops = int(table[p][1]) if p in table else 0, hops + 1
            if p == root:
                out[pid] = rest
                break
    return out


def cpu_of(procs):
    """CPU seconds of ``procs`` (descendants) and the children they reaped."""
    ticks = os.sysconf("SC_CLK_TCK")
    return sum(int(r[11]) + int(r[12]) + int(r[13]) + int(r[14]) for r in procs.values()) / ticks


def reap(pid):
    """Reap every finished child (orphans come to the subreaper); the wait status of
    ``pid`` if it was among them, else None."""
    status = None
    while True:
        try:
            p, st = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return status
        if p == 0:
            return status
        if p == pid:
            status = st


def reap_all(seconds):
    """Wait up to ``seconds`` for every child (the swept processes re-parented here) to be
    reaped, so none is left as a zombie for init."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            p, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if p == 0:
            time.sleep(0.02)


# --- the job --------------------------------------------------------------------------------

class Job:
    """One ``glexec-job run``: see the module docstring and docs/man/glexec-job.8."""

    def __init__(self, cfg, opts, glexec, state, limits):
        self.cfg, self.opts, self.glexec, self.state, self.limits = cfg, opts, glexec, state, limits
        self.id = plan.new_job_id(os.urandom(8))
        self.dir = os.path.join(cfg.scratch_root, plan.JOB_DIR_PREFIX + self.id)
        self.calls = []
        self.target = Target(glexec, cfg.python, state.proxy(self.id), self.calls)
        self.status = {"job": self.id, "job_dir": self.dir, "phase": "starting", "started": False,
                       "limit": None, "kind": None, "exit": None, "reason": None, "signal": None,
                       "wall": 0.0, "cpu": 0.0, "output_bytes": 0, "disk_bytes": 0, "inputs": [],
                       "outputs": None, "wipe": None, "processes_left": None, "target_uid": None,
                       "limits": limits, "subreaper": False, "glexec_calls": self.calls, "recovered": []}
        self.stop_signal = None
        self.never_made = False
        self.t_start = time.time()
        self.next_beat = 0.0

    # the status file and heartbeat
    def beat(self, force=False):
        now = time.monotonic()
        if not self.opts.status_file or (not force and now < self.next_beat):
            return
        self.next_beat = now + self.cfg.heartbeat
        self.status["heartbeat"] = time.time()
        data = json.dumps(self.status, sort_keys=True).encode() + b"\n"
        d, n = os.path.split(self.opts.status_file)
        self.state.write_atomic(os.path.join(d, n), data, 0o644)

    def phase(self, name):
        self.status["phase"] = name
        self.beat(force=True)

    def record(self):
        return {"id": self.id, "job_dir": self.dir, "wrapper_pid": os.getpid(), "started": self.t_start,
                "target_uid": self.status["target_uid"]}

    def run(self, command, env_entries, inputs, outputs, outdir, proxy_bytes):
        """The job's exit code (the payload's own once it ran); self.status says why."""
        from glexec_py.core import envwrap
        self.status["recovered"] = recover(self.state, self.cfg, self.glexec)
        self.status["subreaper"] = become_subreaper()
        lock = self.state.register(self.record(), proxy_bytes)
        infra, glexec_exit = None, None
        try:
            try:
                self.phase("mkjob")
                self.make_dir()
                self.phase("inputs")
                for path in inputs:
                    self.unpack(path)
                if self.stop_signal:
                    raise JobError(f"stopped ({self.stop_signal}) before the payload started")
                self.phase("running")
                glexec_exit = self.watch(command, envwrap.encode(env_entries), outdir)
            except JobError as e:
                infra = str(e)
        finally:
            # also after an unexpected error: no process, no file of the job may stay
            self.phase("cleanup")
            try:
                self.sweep_all()
            except Exception as e:      # noqa: BLE001 - recorded; the wipe must still run
                infra = infra or f"sweep failed: {type(e).__name__}: {e}"
            try:
                if outputs and self.status["target_uid"] is not None:
                    self.collect(outputs, outdir)
            except Exception as e:      # noqa: BLE001
                self.status["outputs"] = {"error": f"collect failed: {type(e).__name__}: {e}"}
            self.wipe()
            kind, code, reason = plan.job_outcome(self.status["started"], glexec_exit, self.status["limit"], infra)
            self.status.update(kind=kind, exit=code, reason=reason, phase="done")
            self.beat(force=True)
            if self.status["wipe"] and self.status["wipe"].get("gone"):
                self.state.forget(self.id, lock)
            else:
                os.close(lock)       # the next run recovers it
            self.state.log({"event": "job", "time": time.time(), **self.status})
        return code

    def make_dir(self):
        rc, res, err, _ = self.target.call("mkjob", "--dir", self.dir)
        if rc in plan.GLEXEC_REFUSALS:
            self.never_made = True           # glexec refused: nothing ran as the target
        if rc != 0 or not res:
            raise JobError(f"cannot make the job directory through glexec (exit {rc}): {err}")
        self.status["target_uid"] = res["uid"]
        self.state.update(self.record())

    def unpack(self, path):
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NOCTTY | os.O_CLOEXEC)
        try:
            rc, res, err, _ = self.target.call("unpack", "--dir", self.dir, "--archive", "-",
                                               "--max-total-bytes", str(self.cfg.max_input_bytes), stdin=fd)
        finally:
            os.close(fd)
        self.status["inputs"].append({"archive": path, "exit": rc, "result": res, "error": err or None})
        if rc != 0:
            raise JobError(f"input sandbox {os.path.basename(path)} not unpacked (exit {rc}): {err}")

    # the payload under the watchdog
    def watch(self, command, wrapped, outdir):
        t = self.target
        argv = t.argv("exec", "--dir", self.dir, "--", *command)
        env = t.env(target_proxy=os.path.join(self.dir, os.fsdecode(plan.JOB_PROXY_DIR),
                                              os.fsdecode(plan.JOB_PROXY_NAME)), wrapped=wrapped)
        sinks = {name: os.open(os.path.join(outdir, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                               | os.O_CLOEXEC, 0o600) for name in ("stdout", "stderr")}
        r_out, w_out = os.pipe()
        r_err, w_err = os.pipe()
        null = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        cpu0 = os.times()
        t0 = time.monotonic()
        try:
            pid = os.posix_spawn(argv[0], argv, env, file_actions=[
                (os.POSIX_SPAWN_DUP2, null, 0), (os.POSIX_SPAWN_DUP2, w_out, 1), (os.POSIX_SPAWN_DUP2, w_err, 2)])
        except OSError as e:
            for fd in (r_out, r_err, *sinks.values()):
                os.close(fd)
            raise JobError(f"cannot run {argv[0]}: {e.strerror}") from None
        finally:
            for fd in (w_out, w_err, null):
                os.close(fd)
        exec_call = {"action": "exec", "glexec_pid": pid, "exit": None}
        self.calls.append(exec_call)
        pump = _Pump({r_out: sinks["stdout"], r_err: sinks["stderr"]}, r_err, self.limits["max_output_bytes"])
        status, stop_at, killed = None, None, False
        next_disk = t0 + self.cfg.disk_check_interval
        next_cpu = t0
        try:
            while status is None:
                pump.run(0.2)
                status = reap(pid)
                if status is not None:
                    break
                now = time.monotonic()
                self.status["wall"] = round(now - t0, 3)
                if now >= next_cpu:
                    c = os.times()
                    self.status["cpu"] = round(cpu_of(descendants()) + (c.children_user - cpu0.children_user)
                                               + (c.children_system - cpu0.children_system), 3)
                    next_cpu = now + 1.0
                if now >= next_disk and self.limits["max_disk_bytes"]:
                    self.status["disk_bytes"] = self.disk_use()
                    next_disk = time.monotonic() + self.cfg.disk_check_interval
                self.status["output_bytes"] = pump.total
                self.status["started"] = pump.started
                over = self.stop_signal or (pump.over and "max_output_bytes") or plan.limit_reached(
                    self.limits, self.status["wall"], self.status["cpu"], pump.total, self.status["disk_bytes"])
                if over and stop_at is None:
                    self.status["limit"] = over
                    stop_at = now
                    _signal(pid, SIGTERM)          # glexec forwards it to the payload
                    self.sweep(SIGTERM)            # and the payload's daemons
                elif stop_at is not None and not killed and now - stop_at >= self.cfg.grace:
                    _signal(pid, SIGKILL)          # the payload dies with it (pdeathsig)
                    self.sweep(SIGKILL)
                    killed = True
                self.beat()
            self.status["phase"] = "ending"
            self.sweep_all(graceful=not killed, pump=pump)
            pump.drain(5.0)
        finally:
            for fd in list(pump.fds) + list(sinks.values()):
                os.close(fd)
        self.status["started"] = pump.started
        self.status["output_bytes"] = pump.total
        self.status["wall"] = round(time.monotonic() - t0, 3)
        c = os.times()
        self.status["cpu"] = max(self.status["cpu"], round((c.children_user - cpu0.children_user)
                                                           + (c.children_system - cpu0.children_system), 3))
        code = plan.exit_of_wait(status)
        self.status["signal"] = code - 128 if code > 128 and pump.started else None
        exec_call["exit"] = code
        return code

    def disk_use(self):
        rc, res, err, _ = self.target.call("du", "--dir", self.dir, timeout=max(30, self.cfg.disk_check_interval))
        if rc != 0 or not res:
            return self.limits["max_disk_bytes"] + 1       # cannot measure: over (fail closed)
        return res["bytes"] + (self.limits["max_disk_bytes"] + 1 if res.get("capped") else 0)

    def sweep(self, sig):
        """Signal the job's processes as the target: those below this wrapper (a subreaper
        sees them all), or, where it could not become one, every process of the target."""
        if self.status["subreaper"]:
            if descendants():
                return self.target.call("sweep", "--ancestor", str(os.getpid()), "--signal", str(int(sig)))
            return None
        return self.target.call("sweep", "--all", "--signal", str(int(sig)))

    def sweep_all(self, graceful=True, pump=None):
        """End every process of the job: SIGTERM, up to ``grace`` seconds, SIGKILL until
        none is left; then reap them.  Records how many are left (0)."""
        if self.status["target_uid"] is None:
            self.status["processes_left"] = len(descendants())
            return
        if not self.status["subreaper"]:
            if graceful:
                self.sweep(SIGTERM)
                time.sleep(min(self.cfg.grace, 2))
            rc, res, _, _ = self.sweep(SIGKILL)
            reap_all(2.0)
            self.status["processes_left"] = res["left"] if rc == 0 and res else None
            return
        if graceful and descendants():
            self.sweep(SIGTERM)
            end = time.monotonic() + self.cfg.grace
            while descendants() and time.monotonic() < end:
                if pump is not None:
                    pump.run(0.1)
                else:
                    time.sleep(0.1)
                reap(0)
        for _ in range(5):
            if not descendants():
                break
            self.sweep(SIGKILL)
            time.sleep(0.05)
            reap(0)
        reap_all(2.0)
        self.status["processes_left"] = len(descendants())

    def collect(self, outputs, outdir):
        tar = os.path.join(outdir, "outputs.tar")
        fd = os.open(tar, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            rc, _, err, lines = self.target.call("collect", "--dir", self.dir, "--out", "-", "--manifest-on-stderr",
                                                 "--max-bytes", str(self.cfg.max_collect_bytes), "--", *outputs,
                                                 stdout=fd)
        finally:
            os.close(fd)
        manifest = None
        if lines:
            try:
                manifest = json.loads(lines[-1])
            except ValueError:
                manifest = None
        if manifest is None:
            self.status["outputs"] = {"error": f"collect failed (exit {rc}): {err}"}
            return
        self.state.write_atomic(os.path.join(outdir, "manifest.json"),
                                json.dumps(manifest, sort_keys=True).encode() + b"\n")
        self.status["outputs"] = {"tar": tar, "manifest": os.path.join(outdir, "manifest.json"),
                                  "files": len(manifest.get("files", ())), "refused": len(manifest.get("refused", ())),
                                  "missing": len(manifest.get("missing", ()))}

    def wipe(self):
        """Always tried, also when mkjob did not report (the directory may exist all the same),
        unless glexec refused the mkjob call itself."""
        if self.never_made:
            self.status["wipe"] = {"gone": True, "removed": 0, "never_made": True}
            return
        rc, res, err, _ = self.target.call("wipe", "--dir", self.dir)
        self.status["wipe"] = res if rc == 0 and res else {"gone": False, "error": err}


def _signal(pid, sig):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


class _Pump:
    """Copies the payload's stdout and stderr into the pilot's files, counting bytes (the
    output limit) and taking the started marker off the front of stderr."""

    def __init__(self, sinks, marker_fd, limit):
        self.sinks, self.marker_fd, self.limit = sinks, marker_fd, limit
        self.fds = set(sinks)
        self.total, self.over, self.started = 0, False, False
        self.deciding = True      # the first stderr bytes: the marker, or glexec's own line
        self.head = b""
        self.poller = select.poll()
        for fd in self.fds:
            self.poller.register(fd, select.POLLIN)

    def run(self, seconds):
        for fd, _ in self.poller.poll(int(seconds * 1000)):
            try:
                data = os.read(fd, 1 << 16)
            except BlockingIOError:
                continue
            if not data:
                self.poller.unregister(fd)
                self.fds.discard(fd)
                os.close(fd)
                if fd == self.marker_fd and self.head:
                    self.deciding = False
                    self._write(fd, self.head)
                    self.head = b""
                continue
            if fd == self.marker_fd and self.deciding:
                data = self._marker(data)
            self._write(fd, data)

    def _marker(self, data):
        self.head += data
        m = plan.STARTED_MARKER
        if len(self.head) < len(m) and m.startswith(self.head):
            return b""
        data, self.head, self.deciding = self.head, b"", False
        if data.startswith(m):
            self.started = True
            return data[len(m):]
        return data                     # glexec's own message: the payload never started

    def _write(self, fd, data):
        room = self.limit - self.total if self.limit else len(data)
        if len(data) > room:
            self.over = True
            data = data[:max(room, 0)]
        self.total += len(data)
        view = memoryview(data)
        while view:
            view = view[os.write(self.sinks[fd], view):]

    def drain(self, seconds):
        end = time.monotonic() + seconds
        while self.fds and time.monotonic() < end:
            self.run(0.1)


def renew(state, cfg, glexec, job_id, new_proxy):
    """Runs as: the pilot.  The running job's proxy replaced, through glexec as its target
    (inner renew: temp file + rename in the job directory); then the pilot's copy for the
    job's remaining glexec calls.  Returns the result record."""
    rec = state.read(job_id)
    if not state.is_alive(job_id):
        raise JobError(f"job {job_id} is not running (its wrapper is gone)")
    fd = os.open(new_proxy, os.O_RDONLY | os.O_NOFOLLOW | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        data = os.read(fd, 1 << 20)
        os.lseek(fd, 0, os.SEEK_SET)
        calls = []
        t = Target(glexec, cfg.python, new_proxy, calls)
        rc, res, err, _ = t.call("renew", "--dir", rec["job_dir"], stdin=fd)
    finally:
        os.close(fd)
    out = {"event": "renew", "job": job_id, "time": time.time(), "exit": rc, "glexec_calls": calls,
           "result": res, "error": err or None}
    state.log(out)
    if rc != 0:
        raise JobError(f"proxy not renewed (exit {rc}): {err}")
    state.write_atomic(state.proxy(job_id), data)
    return out


def check_outdir(path):
    """The pilot's own output directory: exists, a real directory of the caller's that no
    one else may write (the outputs and the payload's stdout are handed over there)."""
    st = os.lstat(path)
    if not os.path.isdir(path) or os.path.islink(path) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise JobError(f"{path}: the output directory must be the caller's and not writable by group or others")
    for name in ("stdout", "stderr", "outputs.tar", "manifest.json"):
        if os.path.lexists(os.path.join(path, name)):
            raise JobError(f"{path}: already holds {name} (one job per output directory)")


def install_stop_handlers(job):
    """SIGTERM/SIGINT/SIGHUP to the wrapper (the batch system ending the pilot's slot): the
    job is stopped like an over-limit one, cleaned up and reported."""
    def handler(signum, _frame):
        job.stop_signal = f"signal {signal.Signals(signum).name}"
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, handler)

