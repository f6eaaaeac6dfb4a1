"""glexec-sutest: does the batch system still suspend, resume, kill and account a payload that
glexec switched to another account?  (Checks and verdicts: ``glexec_tools.sutest.plan``.)

Runs on a worker node of the batch system (it watches the payload in /proc), as root (needed
for suspend/resume; jobs are then submitted as ``--pilot``) or as the pilot itself (suspend and
resume are skipped).  Submits up to three jobs whose scripts call glexec:

  main        two payloads through glexec: a plain CPU burner, and one that catches SIGTSTP,
              ignores SIGTERM and forks a burning child  -> identity, suspend, resume, kill
  escape      a payload that leaves a setsid'd daemon and a double-forked one -> escape
  accounting  a payload that burns N s of CPU -> accounting (sstat AveCPU of J.batch)

Exit: 0 no check failed (warn/skip allowed); 1 a check failed; 2 usage or setup error.
"""
from __future__ import annotations

import json
import os
import pwd
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from glexec_tools import front
from glexec_tools.sutest import plan as core

PROG = "glexec-sutest"

PYTHON = "/usr/bin/python3.11"
CLIENT_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"

# The payload (run as the mapped account through glexec; also as the pilot for "job").
# Every process prints one "SUTEST {json}" line about itself and ends by itself after --max s.
PAYLOAD = r'''
import json, os, signal, sys, time

def start():
    with open("/proc/self/stat") as f:
        return int(f.read().rpartition(")")[2].split()[19])

def rec(**kw):
    kw.setdefault("pid", os.getpid())
    os.write(1, ("SUTEST " + json.dumps(kw, sort_keys=True) + "\n").encode())

def me(ev, tag, role, **kw):
    rec(ev=ev, tag=tag, role=role, ppid=os.getppid(), sid=os.getsid(0), pgid=os.getpgid(0),
        uid=list(os.getresuid()), gid=list(os.getresgid()), groups=sorted(os.getgroups()),
        start=start(), **kw)

def opt(name, default=None):
    a = sys.argv
    return a[a.index(name) + 1] if name in a else default

def burn_until(deadline, cpu=None):
    while time.monotonic() < deadline:
        for _ in range(20000):
            pass
        if cpu is not None and time.process_time() >= cpu:
            return True
    return False

mode = sys.argv[1]
wall = float(opt("--max", "120"))
deadline = time.monotonic() + wall
if mode == "job":
    me("job", "job", "job")
elif mode == "burn":
    tag = opt("--tag", "burn")
    if "--catch-tstp" in sys.argv:
        signal.signal(signal.SIGTSTP, lambda *a: rec(ev="tstp", tag=tag))
    if "--ignore-term" in sys.argv:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    role = "main"
    if "--fork" in sys.argv and os.fork() == 0:
        role = "child"
    me("proc", tag, role, catches_tstp="--catch-tstp" in sys.argv,
       ignores_term="--ignore-term" in sys.argv)
    cpu = opt("--cpu")
    if cpu is not None and burn_until(deadline, float(cpu)):
        t = os.times()
        rec(ev="burned", tag=tag, cpu=t.user + t.system)
        while time.monotonic() < deadline:
            time.sleep(0.5)
    else:
        burn_until(deadline)
    os._exit(0)
elif mode == "daemon":
    if os.fork() == 0:                       # like setsid -f: new session, parent goes away
        os.setsid()
        me("daemon", "setsid", "daemon")
        while time.monotonic() < deadline:
            time.sleep(0.2)
        os._exit(0)
    pid = os.fork()                          # double fork: the grandchild reparents to init
    if pid == 0:
        if os.fork() == 0:
            time.sleep(0.3)
            me("daemon", "doublefork", "daemon")
            while time.monotonic() < deadline:
                time.sleep(0.2)
            os._exit(0)
        os._exit(0)
    os.waitpid(pid, 0)
    rec(ev="daemonized")
'''


class SetupError(Exception):
    pass


# --- running commands ----------------------------------------------------------------------------

class Runner:
    """Runs batch client commands as the invoker, or as the pilot (root with --pilot)."""

    def __init__(self, pilot: pwd.struct_passwd | None):
        self.pilot = pilot
        self.env = {"PATH": CLIENT_PATH, "LC_ALL": "C"}
        for k in ("SLURM_CONF", "PBS_DEFAULT"):
            if os.environ.get(k):
                self.env[k] = os.environ[k]

    def run(self, argv, *, as_pilot=False, timeout=30, cwd=None, check=True):
        kw = {}
        if as_pilot and self.pilot is not None and self.pilot.pw_uid != os.geteuid():
            kw = dict(user=self.pilot.pw_uid, group=self.pilot.pw_gid,
                      extra_groups=sorted(set(os.getgrouplist(self.pilot.pw_name,
                                                              self.pilot.pw_gid))))
        try:
            p = subprocess.run(list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, timeout=timeout, env=self.env, cwd=cwd, **kw)
        except subprocess.TimeoutExpired:
            raise SetupError(f"{' '.join(argv)}: no answer within {timeout} s")
        except OSError as e:
            raise SetupError(f"{argv[0]}: {e.strerror or e}")
        if check and p.returncode != 0:
            raise SetupError(f"{' '.join(argv)} failed ({p.returncode}): "
                             f"{(p.stderr or p.stdout).strip()[:500]}")
        return p


# States a job can be in once it has run: a job that fails fast (glexec refuses its payload)
# may pass through RUNNING between two polls, or leave the queue altogether (GONE).
ENDED_AFTER_START = ("COMPLETING", "COMPLETED", "FAILED", "TIMEOUT", "GONE")


class Slurm:
    """Slurm (sbatch/scancel), or its Torque wrappers (qsub/qdel) with ``torque=True``.
    Suspend/resume always through scontrol (Torque has no portable suspend; Slurm's wrappers
    have no qsig)."""

    def __init__(self, runner: Runner, *, torque=False, node=None, partition=None):
        self.r = runner
        self.torque = torque
        self.node = node
        self.partition = partition
        self.name = "torque (Slurm's qsub/qdel)" if torque else "slurm"
        self.config = self.r.run(["scontrol", "show", "config"], timeout=15).stdout
        self.proctrack = core.parse_config_value(self.config, "ProctrackType")
        self.jobacct = core.parse_config_value(self.config, "JobAcctGatherType")
        self.kill_wait = core.parse_kill_wait(self.config)
        self.version = core.parse_config_value(self.config, "SLURM_VERSION")

    def submit(self, script: str, out: str, err: str, name: str, cwd: str) -> str:
        if self.torque:
            argv = ["qsub", "-N", name, "-o", out, "-e", err, "-l", "walltime=00:05:00", script]
        else:
            argv = ["sbatch", "--parsable", "-J", name, "-o", out, "-e", err, "-D", cwd,
                    "-t", "5", "-n", "1"]
            if self.node:
                argv += ["-w", self.node]
            if self.partition:
                argv += ["-p", self.partition]
            argv.append(script)
        p = self.r.run(argv, as_pilot=True, cwd=cwd)
        jobid = p.stdout.strip().split(";")[0].split(".")[0]
        if not jobid.isdigit():
            raise SetupError(f"{argv[0]} printed no job id: {p.stdout!r} {p.stderr!r}")
        return jobid

    def state(self, jobid: str) -> str:
        p = self.r.run(["squeue", "-h", "-j", jobid, "-o", "%T"], check=False, timeout=10)
        if p.returncode == 0 and p.stdout.strip():
            return p.stdout.strip()
        p = self.r.run(["scontrol", "-o", "show", "job", jobid], check=False, timeout=10)
        for tok in p.stdout.split():
            if tok.startswith("JobState="):
                return tok.split("=", 1)[1]
        return "GONE"

    def wait_state(self, jobid, states, timeout) -> str:
        deadline = time.monotonic() + timeout
        st = ""
        while time.monotonic() < deadline:
            st = self.state(jobid)
            if st in states:
                return st
            if st in ("FAILED", "CANCELLED", "COMPLETED", "TIMEOUT", "NODE_FAIL", "GONE") \
                    and st not in states:
                raise SetupError(f"job {jobid} ended ({st}) before reaching {sorted(states)}")
            time.sleep(0.1)
        raise SetupError(f"job {jobid} not {'/'.join(sorted(states))} after {timeout} s "
                         f"(state {st})")

    def cancel(self, jobid):
        """Cancel; a job that has already ended is not an error (a refused payload ends fast)."""
        p = self.r.run(["qdel" if self.torque else "scancel", jobid], as_pilot=True, check=False)
        if p.returncode != 0 and self.state(jobid) not in ENDED_AFTER_START:
            raise SetupError(f"cannot cancel job {jobid} ({p.returncode}): {(p.stderr or p.stdout).strip()[:300]}")

    @property
    def cancel_how(self):
        return "qdel" if self.torque else "scancel"

    def suspend(self, jobid):
        self.r.run(["scontrol", "suspend", jobid])

    def resume(self, jobid):
        self.r.run(["scontrol", "resume", jobid])

    def listpids(self, jobid):
        p = self.r.run(["scontrol", "listpids", jobid], check=False, timeout=10)
        if p.returncode != 0:
            return None
        pids = []
        for line in p.stdout.splitlines()[1:]:
            f = line.split()
            if f and f[0].isdigit():
                pids.append(int(f[0]))
        return pids

    def cpu_seen(self, jobid):
        p = self.r.run(["sstat", "-n", "-P", "-j", f"{jobid}.batch", "-o", "AveCPU"],
                       as_pilot=True, check=False, timeout=10)
        lines = p.stdout.strip().splitlines()
        return core.parse_duration(lines[0]) if p.returncode == 0 and lines else None


# --- /proc observation ---------------------------------------------------------------------------

def read_stat(pid: int):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return core.parse_stat(f.read())
    except (OSError, ValueError):
        return None


class Proc:
    """A payload process known by (pid, starttime): never confused with a reused pid."""

    def __init__(self, rec: dict):
        self.rec = rec
        self.pid = rec["pid"]
        self.start = rec.get("start")
        self.tag = f"{rec.get('tag')}/{rec.get('role')}"

    def stat(self):
        st = read_stat(self.pid)
        if st is None or st.starttime != self.start or st.state in ("Z", "X"):
            return None
        return st

    def alive(self) -> bool:
        return self.stat() is not None


def ticks(procs):
    out = {}
    for p in procs:
        st = p.stat()
        out[p.pid] = st.ticks if st else None
    return out


def kill_leftovers(procs, runner, glexec, proxy, cwd) -> list[str]:
    """Remove payload processes that outlived the check: directly as root (pidfd after the
    starttime check), else through glexec as the mapped account."""
    notes = []
    left = [p for p in procs if p.alive()]
    if not left:
        return notes
    if os.geteuid() == 0:
        for p in left:
            try:
                fd = os.pidfd_open(p.pid)
            except OSError:
                continue
            try:
                if p.alive():
                    signal.pidfd_send_signal(fd, signal.SIGKILL)
                    notes.append(f"killed leftover pid {p.pid} ({p.tag})")
            except OSError:
                pass
            finally:
                os.close(fd)
    else:
        r = runner.run([glexec, "/bin/kill", "-KILL", *[str(p.pid) for p in left]],
                       check=False, cwd=cwd, timeout=30)
        notes.append(f"asked glexec to kill leftovers {[p.pid for p in left]}: rc {r.returncode}")
    return notes


# --- the checker --------------------------------------------------------------------------------

class Sutest:
    def __init__(self, args, batch: Slurm, runner: Runner, workdir: str, proxy: str,
                 tracking, expect_uid, expect_groups):
        self.a = args
        self.b = batch
        self.r = runner
        self.w = workdir
        self.proxy = proxy
        self.tracking = tracking
        self.expect_uid = expect_uid
        self.expect_groups = expect_groups
        self.payload = os.path.join(workdir, "payload.py")
        self.timings = {}
        self.jobs = {}
        self.notes = []
        self.pilot_uid = runner.pilot.pw_uid if runner.pilot else os.getuid()

    # job plumbing
    def _write(self, name, text, mode):
        path = os.path.join(self.w, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        if self.r.pilot is not None and os.geteuid() == 0:
            os.chown(path, self.r.pilot.pw_uid, self.r.pilot.pw_gid)
        os.chmod(path, mode)
        return path

    def _glexec(self, *args) -> str:
        return " ".join(shlex.quote(x) for x in (self.a.glexec, PYTHON, "-I", "-S",
                                                  self.payload, *args))

    def submit(self, name, body_lines):
        q = shlex.quote
        script = "\n".join([
            "#!/bin/sh",
            f"# glexec-sutest job: {name}",
            "PATH=/usr/bin:/bin; export PATH",
            f"GLEXEC_CLIENT_CERT={q(self.proxy)}; export GLEXEC_CLIENT_CERT",
            f"GLEXEC_TARGET_PROXY={q(self.a.target_proxy)}; export GLEXEC_TARGET_PROXY",
            f"{PYTHON} -I -S {q(self.payload)} job",
            *body_lines, ""])
        path = self._write(f"job-{name}.sh", script, 0o755)
        out = os.path.join(self.w, f"job-{name}.out")
        err = os.path.join(self.w, f"job-{name}.err")
        t0 = time.monotonic()
        jobid = self.b.submit(path, out, err, f"sutest-{name}", self.w)
        self.jobs[name] = {"id": jobid, "out": out, "err": err}
        state = self.b.wait_state(jobid, {"RUNNING", *ENDED_AFTER_START}, self.a.start_timeout)
        # Over already: it ran only if its first line (``payload.py job``) left its record.
        if state != "RUNNING" and not any(r.get("ev") == "job" for r in core.parse_records(self.output(name))):
            raise SetupError(f"job {jobid} ended ({state}) without running its first line")
        self.jobs[name]["start_s"] = round(time.monotonic() - t0, 2)
        self.jobs[name]["state_seen"] = state
        return jobid

    def output(self, name) -> str:
        text = []
        for k in ("out", "err"):
            try:
                with open(self.jobs[name][k], errors="replace") as f:
                    text.append(f.read())
            except OSError:
                pass
        return "\n".join(text)

    def wait_records(self, name, pred, timeout):
        deadline = time.monotonic() + timeout
        while True:
            recs = core.parse_records(self.output(name))
            if pred(recs) or time.monotonic() > deadline:
                return recs
            time.sleep(0.1)

    def _tail(self, name, n=15):
        lines = [ln for ln in self.output(name).splitlines()
                 if not ln.startswith(core.RECORD_PREFIX)]
        return lines[-n:]

    def _wait_gone(self, procs, limit, jobid=None):
        """Seconds until each process is gone (None: still alive at ``limit``).  With
        ``jobid``: stop waiting 1.5 s after the job left the system (nothing kills later)."""
        t0 = time.monotonic()
        gone = {}
        job_done_at = None
        while True:
            now = time.monotonic() - t0
            for p in procs:
                if p.pid not in gone and not p.alive():
                    gone[p.pid] = round(now, 2)
            if len(gone) == len(procs) or now > limit:
                break
            if jobid is not None and job_done_at is None:
                if self.b.state(jobid) not in ("RUNNING", "COMPLETING", "SUSPENDED",
                                               "CONFIGURING", "PENDING"):
                    job_done_at = now
            if job_done_at is not None and now > job_done_at + 1.5:
                break
            time.sleep(0.1)
        return {p.pid: gone.get(p.pid) for p in procs}

    # main job: identity, suspend, resume, kill
    def run_main(self, want):
        out = {}
        n = "main"
        jobid = self.submit(n, [
            self._glexec("burn", "--tag", "A", "--max", "120") + " &",
            self._glexec("burn", "--tag", "B", "--catch-tstp", "--ignore-term", "--fork",
                         "--max", "120") + " &",
            "wait"])
        recs = self.wait_records(n, lambda rs: sum(r.get("ev") == "proc" for r in rs) >= 3
                                 and any(r.get("ev") == "job" for r in rs),
                                 self.a.record_timeout)
        job = next((r for r in recs if r.get("ev") == "job"), None)
        payloads = [r for r in recs if r.get("ev") == "proc"]
        procs = [Proc(r) for r in payloads]
        tracked = self.b.listpids(jobid)
        v = core.judge_identity(job, payloads, pilot_uid=self.pilot_uid,
                                expect_uid=self.expect_uid, expect_groups=self.expect_groups,
                                tracking=self.tracking, tracked_pids=tracked, expected_count=3)
        v.evidence["job_id"] = jobid
        if len(payloads) < 3:
            v.evidence["job_output_tail"] = self._tail(n)
        out["identity"] = v
        if not procs:
            for c in ("suspend", "resume", "kill"):
                out[c] = core.Verdict(c, core.FAIL, "no payload process to observe (see "
                                      "identity)", {"job_output_tail": self._tail(n)})
            self.b.cancel(jobid)
            return out
        time.sleep(0.5)
        before = ticks(procs)
        time.sleep(0.5)
        after = ticks(procs)
        running = {p.pid: (after[p.pid] or 0) - (before[p.pid] or 0) for p in procs}
        if "suspend" in want or "resume" in want:
            if os.geteuid() != 0:
                for c in ("suspend", "resume"):
                    out[c] = core.skipped(c, "needs root (scontrol suspend/resume)")
            else:
                out.update(self._suspend_resume(jobid, procs, running, n))
        if "kill" in want:
            t0 = time.monotonic()
            self.b.cancel(jobid)
            gone = self._wait_gone(procs, (self.b.kill_wait or 30) + self.a.kill_margin)
            self.timings["kill"] = round(time.monotonic() - t0, 2)
            info = {p.pid: {"tag": p.tag, "gone_after": gone[p.pid],
                            "ignores_term": p.rec.get("ignores_term", False)} for p in procs}
            out["kill"] = core.judge_kill(info, kill_wait=self.b.kill_wait,
                                          margin=self.a.kill_margin, how=self.b.cancel_how)
            out["kill"].evidence["job_id"] = jobid
        else:
            self.b.cancel(jobid)
        self.notes += kill_leftovers(procs, self.r, self.a.glexec, self.proxy, self.w)
        return out

    def _suspend_resume(self, jobid, procs, running, n):
        out = {}
        t0 = time.monotonic()
        self.b.suspend(jobid)
        stopped = {}
        deadline = t0 + self.a.suspend_timeout
        last = {}
        while time.monotonic() < deadline and len(stopped) < len(procs):
            for p in procs:
                st = p.stat()
                last[p.pid] = st.state if st else "gone"
                if p.pid not in stopped and st is not None and st.state in ("T", "t", "D"):
                    stopped[p.pid] = round(time.monotonic() - t0, 2)
            time.sleep(0.05)
        time.sleep(0.3)
        window = self.a.frozen_window
        a = ticks(procs)
        time.sleep(window)
        b = ticks(procs)
        states = {p.pid: (p.stat().state if p.stat() else "gone") for p in procs}
        recs = core.parse_records(self.output(n))
        tstp = {}
        for r in recs:
            if r.get("ev") == "tstp":
                tstp[r.get("pid")] = tstp.get(r.get("pid"), 0) + 1
        info = {p.pid: {"tag": p.tag, "stopped_after": stopped.get(p.pid),
                        "state": states[p.pid] if p.pid in stopped else last.get(p.pid),
                        "ticks_running": running[p.pid],
                        "ticks_delta": (None if a[p.pid] is None or b[p.pid] is None
                                        else b[p.pid] - a[p.pid]),
                        "window": window, "catches_tstp": p.rec.get("catches_tstp", False),
                        "tstp_caught": tstp.get(p.pid, 0)} for p in procs}
        out["suspend"] = core.judge_suspend(info, timeout=self.a.suspend_timeout)
        out["suspend"].evidence["job_state"] = self.b.state(jobid)
        out["suspend"].evidence["job_id"] = jobid
        self.timings["suspend"] = round(time.monotonic() - t0, 2)
        t1 = time.monotonic()
        self.b.resume(jobid)
        deadline = t1 + self.a.suspend_timeout
        while time.monotonic() < deadline:
            sts = [p.stat() for p in procs]
            if all(s is not None and s.state not in ("T", "t", "D") for s in sts):
                break
            time.sleep(0.05)
        a = ticks(procs)
        time.sleep(1.0)
        b = ticks(procs)
        info = {p.pid: {"tag": p.tag, "state": (p.stat().state if p.stat() else None),
                        "ticks_delta": (None if a[p.pid] is None or b[p.pid] is None
                                        else b[p.pid] - a[p.pid]), "window": 1.0}
                for p in procs}
        out["resume"] = core.judge_resume(info)
        out["resume"].evidence["job_state"] = self.b.state(jobid)
        self.timings["resume"] = round(time.monotonic() - t1, 2)
        return out

    def run_escape(self):
        n = "escape"
        jobid = self.submit(n, [self._glexec("daemon", "--max", "90"),
                                f"{PYTHON} -I -S -c 'import time; time.sleep(120)'"])
        recs = self.wait_records(n, lambda rs: sum(r.get("ev") == "daemon" for r in rs) >= 2,
                                 self.a.record_timeout)
        daemons = [Proc(r) for r in recs if r.get("ev") == "daemon"]
        job = next((r for r in recs if r.get("ev") == "job"), None)
        tracked = self.b.listpids(jobid)
        time.sleep(0.3)
        info = {}
        for p in daemons:
            st = p.stat()
            info[p.pid] = {"tag": p.tag, "sid": p.rec.get("sid"), "uid": p.rec.get("uid"),
                           "ppid_now": st.ppid if st else None,
                           "listed_by_batch_system": (None if tracked is None
                                                      else p.pid in tracked)}
        t0 = time.monotonic()
        self.b.cancel(jobid)
        limit = (self.b.kill_wait or 30) + self.a.kill_margin
        gone = self._wait_gone(daemons, limit, jobid=jobid)
        for p in daemons:
            info[p.pid]["gone_after"] = gone[p.pid]
        v = core.judge_escape(info, proctrack=self.b.proctrack,
                              wait=round(time.monotonic() - t0, 2))
        v.evidence["job_id"] = jobid
        v.evidence["job_sid"] = job.get("sid") if job else None
        if not daemons:
            v.evidence["job_output_tail"] = self._tail(n)
        v.evidence["cleanup"] = kill_leftovers(daemons, self.r, self.a.glexec, self.proxy,
                                               self.w)
        self.timings["escape"] = round(time.monotonic() - t0, 2)
        return {"escape": v}

    def run_accounting(self):
        n = "accounting"
        cpu = self.a.cpu_seconds
        jobid = self.submit(n, [self._glexec("burn", "--tag", "acct", "--cpu", str(cpu),
                                             "--max", str(int(cpu * 4 + 60)))])
        recs = self.wait_records(n, lambda rs: any(r.get("ev") == "burned" for r in rs),
                                 cpu * 4 + self.a.record_timeout)
        burned = next((r.get("cpu") for r in recs if r.get("ev") == "burned"), None)
        procs = [Proc(r) for r in recs if r.get("ev") == "proc"]
        t0 = time.monotonic()
        seen, samples = None, []
        deadline = t0 + self.a.accounting_timeout
        while time.monotonic() < deadline:
            s = self.b.cpu_seen(jobid)
            samples.append(s)
            if s is not None and (seen is None or s > seen):
                seen = s
            if burned is None or (seen is not None and seen >= burned * self.a.min_ratio):
                break
            time.sleep(0.5)
        v = core.judge_accounting(burned, seen, ratio=self.a.min_ratio,
                                  source=f"sstat -j {jobid}.batch -o AveCPU")
        v.evidence.update(job_id=jobid, jobacct_gather=self.b.jobacct,
                          sstat_samples=samples[-5:],
                          waited_s=round(time.monotonic() - t0, 2))
        if burned is None:
            v.evidence["job_output_tail"] = self._tail(n)
        self.b.cancel(jobid)
        self._wait_gone(procs, (self.b.kill_wait or 30) + self.a.kill_margin)
        self.notes += kill_leftovers(procs, self.r, self.a.glexec, self.proxy, self.w)
        return {"accounting": v}


# --- command line -------------------------------------------------------------------------------

def build_parser():
    p = front.argument_parser(
        PROG, "Check that a batch system can suspend, resume, kill and account payloads "
              "run through glexec, and that they keep the job's session, process group "
              "and tracking groups.  Run on a worker node.",
        "Exit status: 0 no check failed, 1 a check failed, 2 usage or setup error, "
        "70 internal error.", changes=False, common=False)
    p.add_argument("--glexec", required=True, help="the glexec to test (absolute path)")
    p.add_argument("--proxy", required=True, help="the user proxy to hand to glexec")
    p.add_argument("--batch", choices=("slurm", "torque"), default="slurm",
                   help="slurm (sbatch/scancel) or torque (qsub/qdel; Slurm's wrappers)")
    p.add_argument("--pilot", help="submit as this account (needs root; default: yourself)")
    p.add_argument("--target-user", help="the account glexec should map the proxy to")
    p.add_argument("--tracking-groups", metavar="GIDS",
                   help="gids/ranges of caller groups that must survive, e.g. 65400-65500 "
                        "(default: payload.keep_caller_groups of the glexec's config)")
    p.add_argument("--checks", default=",".join(core.CHECK_NAMES),
                   help="comma-separated subset of: " + ", ".join(core.CHECK_NAMES))
    p.add_argument("--node", help="node to run on (default: this host; slurm only)")
    p.add_argument("--partition", help="partition (slurm only)")
    p.add_argument("--workdir", help="an existing directory for job files (default: new dir "
                   "in /tmp, removed afterwards)")
    p.add_argument("--keep-workdir", action="store_true")
    p.add_argument("--target-proxy", default="/dev/null",
                   help="GLEXEC_TARGET_PROXY for the payload (default /dev/null: no copy)")
    p.add_argument("--cpu-seconds", type=float, default=4.0)
    p.add_argument("--min-ratio", type=float, default=0.9)
    p.add_argument("--suspend-timeout", type=float, default=5.0)
    p.add_argument("--frozen-window", type=float, default=1.5)
    p.add_argument("--kill-margin", type=float, default=10.0)
    p.add_argument("--start-timeout", type=float, default=60.0)
    p.add_argument("--record-timeout", type=float, default=20.0)
    p.add_argument("--accounting-timeout", type=float, default=12.0)
    p.add_argument("--json", action="store_true", help="machine-readable report")
    p.add_argument("-v", "--verbose", action="store_true", help="evidence for every check")
    return p


def config_tracking(glexec: str):
    """payload.keep_caller_groups of PREFIX/etc/glexec-py/glexec.yaml next to PREFIX/sbin."""
    prefix = os.path.dirname(os.path.dirname(os.path.realpath(glexec)))
    path = os.path.join("/" if prefix in ("/", "/usr") else prefix, "etc/glexec-py/glexec.yaml")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
        from glexec_py.core.config import parse_config
        cfg = parse_config(text, path)
        return tuple(tuple(r) for r in cfg.payload.keep_caller_groups), path
    except Exception as e:  # unreadable/invalid: report, check without tracking groups
        return (), f"{path} ({type(e).__name__}: {e})"


def main(argv=None) -> int:
    def body(argv):
        a = build_parser().parse_args(argv)
        try:
            return _main(a)
        except SetupError as e:
            raise front.ToolError(str(e), core.EXIT_USAGE) from None
    return front.run(PROG, body, argv)


def _main(a) -> int:
    t_start = time.monotonic()
    want = [c.strip() for c in a.checks.split(",") if c.strip()]
    bad = [c for c in want if c not in core.CHECK_NAMES]
    if bad:
        raise SetupError(f"unknown check(s): {', '.join(bad)}")
    if not os.path.isabs(a.glexec) or not os.access(a.glexec, os.X_OK):
        raise SetupError(f"{a.glexec}: not an absolute path to an executable")
    pilot = None
    if a.pilot:
        try:
            pilot = pwd.getpwnam(a.pilot)
        except KeyError:
            raise SetupError(f"no such account: {a.pilot}")
        if pilot.pw_uid != os.geteuid() and os.geteuid() != 0:
            raise SetupError("--pilot needs root")
    else:
        pilot = pwd.getpwuid(os.getuid())
        if pilot.pw_uid == 0:
            raise SetupError("as root, say which account submits the jobs: --pilot USER")
    expect_uid = expect_groups = None
    if a.target_user:
        try:
            t = pwd.getpwnam(a.target_user)
        except KeyError:
            raise SetupError(f"no such account: {a.target_user}")
        expect_uid = t.pw_uid
        expect_groups = sorted(set(os.getgrouplist(t.pw_name, t.pw_gid)))
    if a.tracking_groups is not None:
        try:
            tracking, tracking_src = core.parse_gid_ranges(a.tracking_groups), "--tracking-groups"
        except ValueError as e:
            raise SetupError(str(e))
    else:
        tracking, tracking_src = config_tracking(a.glexec)
    runner = Runner(pilot)
    node = a.node or (socket.gethostname().split(".")[0] if a.batch == "slurm" else None)
    batch = Slurm(runner, torque=(a.batch == "torque"), node=node, partition=a.partition)

    own_dir = a.workdir is None
    workdir = a.workdir or tempfile.mkdtemp(prefix="glexec-sutest-")
    if own_dir:
        os.chmod(workdir, 0o755)   # the mapped account must be able to enter it (cwd)
        if os.geteuid() == 0:
            os.chown(workdir, pilot.pw_uid, pilot.pw_gid)
    try:
        with open(a.proxy, "rb") as f:
            proxy_bytes = f.read()
    except OSError as e:
        raise SetupError(f"cannot read the proxy {a.proxy}: {e.strerror or e}")
    verdicts = {}
    st = None
    try:
        st = Sutest(a, batch, runner, workdir, "", tracking, expect_uid, expect_groups)
        proxy = st._write("proxy.pem", proxy_bytes.decode("latin-1"), 0o600)
        st.proxy = proxy
        st._write("payload.py", PAYLOAD, 0o644)
        if any(c in want for c in ("identity", "suspend", "resume", "kill")):
            verdicts.update(st.run_main(want))
        if "escape" in want:
            verdicts.update(st.run_escape())
        if "accounting" in want:
            verdicts.update(st.run_accounting())
    finally:
        if st is not None:
            for j in st.jobs.values():   # nothing of ours stays queued
                runner.run(["scancel", j["id"]], check=False, timeout=15)
        if own_dir and not a.keep_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    result = [verdicts[c] for c in core.CHECK_NAMES if c in want and c in verdicts]
    meta = {"batch": batch.name, "slurm_version": batch.version, "proctrack": batch.proctrack,
            "jobacct_gather": batch.jobacct, "kill_wait_s": batch.kill_wait,
            "glexec": a.glexec, "pilot": pilot.pw_name, "target_user": a.target_user,
            "tracking_ranges": [list(r) for r in tracking], "tracking_source": tracking_src,
            "node": node, "root": os.geteuid() == 0,
            "jobs": {k: {"id": v["id"], "start_s": v.get("start_s"), "state_seen": v.get("state_seen")}
                     for k, v in st.jobs.items()},
            "timings_s": st.timings, "notes": st.notes,
            "workdir": workdir if (a.keep_workdir or not own_dir) else None,
            "duration_s": round(time.monotonic() - t_start, 2)}
    if a.json:
        print(json.dumps(core.report_dict(result, meta), indent=2, sort_keys=True, default=str))
    else:
        sys.stdout.write(core.render_text(result, meta, verbose=a.verbose))
    return core.exit_code(result)


if __name__ == "__main__":
    sys.exit(main())
