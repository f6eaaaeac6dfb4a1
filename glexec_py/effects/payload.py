"""Start the payload as the target account, in the caller's session and process group.

The engine decides a core.plan.Plan; its encoding goes to the one C executor (csrc/plan_*.c):
the child switches identity (groups, gid, uid; verified) and execs; the lingering parent
waits, forwards termination signals and reports the payload's status and CPU times.
No setsid/setpgid anywhere: the batch system must still see, suspend and kill the payload.
"""
import os

import _signal

from glexec_py.effects import native
from glexec_py.effects.userfiles import as_user
from glexec_py.errors import CallerError, ExecFailure, SystemFault

# What the lingering parent passes on to its payload (csrc/plan_linger.c; never those the
# kernel sent: a terminal's signal already reached the payload's process group), and the
# payload's death signal should that parent die.
FORWARDED = (_signal.SIGTERM, _signal.SIGINT, _signal.SIGHUP, _signal.SIGQUIT, _signal.SIGUSR1, _signal.SIGUSR2)
DEATH_SIGNAL = _signal.SIGKILL


def resolve_command(command, search_path, cwd, target):
    """Runs as: root with the target's file-system identity.

    The path the payload will be executed from: `command` itself when it contains a
    slash (relative to the caller's cwd), else the first match on the target's PATH.
    Refused (CallerError) unless the target may execute a regular file there."""
    if b"/" in command:
        candidates = [command if command.startswith(b"/") else cwd.rstrip(b"/") + b"/" + command]
    else:
        candidates = [d.rstrip(b"/") + b"/" + command for d in search_path.split(b":") if d.startswith(b"/")]
    with as_user(target.uid, target.gid, target.groups):
        if cwd and not os.access(cwd, os.X_OK, effective_ids=True):
            raise CallerError("cwd_inaccessible", "glexec: the mapped account cannot enter the current directory",
                              cwd=cwd)
        for path in candidates:
            try:
                st = os.stat(path)
            except OSError:
                continue
            if (st.st_mode & 0o170000) == 0o100000 and os.access(path, os.X_OK, effective_ids=True):
                return path, os.path.realpath(path)
    raise CallerError("command_not_executable", "glexec: command does not exist or the mapped account cannot execute it",
                      command=command)


def _single_threaded():
    # The identity switch (glibc set*id) and the vfork-style spawn assume one thread.
    if len(os.listdir("/proc/self/task")) != 1:
        raise SystemFault("threads", "glexec: internal error (engine is not single-threaded)")


def encoded_plan(plan):
    """Runs as: anyone (pure encoding). core.plan.encode, an unencodable plan a SystemFault."""
    from glexec_py.core.plan import encode
    try:
        return encode(plan)
    except ValueError as e:
        raise SystemFault("plan", "glexec: internal error (payload plan not encodable)", error=str(e)) from None


def rlimit_ceiling(pid):
    """Runs as: root (the caller in log-only mode).  The hard limits that process `pid`,
    the plan's executor (this process, or the shim for the engine service), could not
    raise: {resource: hard} when it lacks CAP_SYS_RESOURCE (some containers: the core
    limit the shim lowered stays lowered), else {}.  Read from /proc/<pid>/limits, not
    prlimit(2): without CAP_SYS_RESOURCE root may not prlimit a shim whose real uid is
    the caller's, and the shim's ids change while the service decides."""
    try:
        with open(b"/proc/%d/status" % pid, "rb") as f:
            caps = next((line.split()[1] for line in f if line.startswith(b"CapEff:")), b"0")
        if int(caps, 16) >> 24 & 1:   # CAP_SYS_RESOURCE
            return {}
        with open(b"/proc/%d/limits" % pid, "rb") as f:
            return hard_limits(f.read())
    except (OSError, ValueError) as e:
        raise SystemFault("rlimits", "glexec: internal error (cannot read the executor's limits)",
                          error=str(e)) from None


_LIMIT_ROWS = 16   # the kernel writes RLIMIT_CPU .. RLIMIT_RTTIME in that order (fs/proc/base.c)


def hard_limits(text):
    """{resource: hard} of a /proc/<pid>/limits text (-1 = unlimited).  ValueError."""
    rows = text.split(b"\n")[1:1 + _LIMIT_ROWS]
    if len(rows) != _LIMIT_ROWS:
        raise ValueError("not a /proc limits file")
    out = {}
    for res, row in enumerate(rows):
        fields = row[25:].split()      # after the 25-column name: soft, hard, units
        if len(fields) < 2 or not row.startswith(b"Max "):
            raise ValueError(f"limits row {res} unreadable")
        out[res] = -1 if fields[1] == b"unlimited" else int(fields[1])
    return out


def in_place_pid():
    """Runs as: root (the caller in log-only mode). The pid a plan without linger becomes:
    this process's."""
    return os.getpid()


def exec_in_place(plan):
    """Runs as: root (the caller in log-only mode); becomes the payload of `plan`
    (core.plan.Plan, linger off) and never returns."""
    _single_threaded()
    try:
        native.become_payload(encoded_plan(plan))
    except native.SpawnError as e:
        raise ExecFailure("exec_failed", f"glexec: cannot execute payload ({e.step}): {os.strerror(e.errno)}",
                          step=e.step, errno=e.errno) from None


def run_lingering(plan, on_started):
    """Runs as: root (the caller in log-only mode). Starts the payload of `plan`
    (core.plan.Plan, linger on) as a child and waits for it in the C executor.

    `on_started(pid)` is called once the exec succeeded. Returns
    (pid, exit status or None, signal number or None, cpu_user, cpu_system, SpawnError or None)."""
    _single_threaded()
    try:
        started = native.start_payload(encoded_plan(plan))
    except native.SpawnError as e:
        return None, None, None, 0.0, 0.0, e
    on_started(started.pid)
    try:
        status, cpu_user, cpu_system = started.wait()
    except native.SpawnError as e:
        # The payload runs, unsupervised: exiting kills it (its parent-death signal).
        raise SystemFault("linger", f"glexec: cannot wait for the payload: {os.strerror(e.errno)}",
                          errno=e.errno) from None
    code = os.waitstatus_to_exitcode(status)
    exit_status, signum = (code, None) if code >= 0 else (None, -code)
    return started.pid, exit_status, signum, cpu_user, cpu_system, None
