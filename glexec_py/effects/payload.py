"""Start the payload as the target account, in the caller's session and process group.

The child switches identity (groups, gid, uid; verified) and execs; the lingering parent
waits, forwards termination signals and reports the payload's status and CPU times.
No setsid/setpgid anywhere: the batch system must still see, suspend and kill the payload.
"""
import os

import _signal

from glexec_py.effects import native
from glexec_py.effects.userfiles import as_user
from glexec_py.errors import CallerError, ExecFailure, SystemFault

FORWARDED = (_signal.SIGTERM, _signal.SIGINT, _signal.SIGHUP, _signal.SIGQUIT, _signal.SIGUSR1, _signal.SIGUSR2)
_SI_KERNEL = 0x80  # sent by the kernel (terminal): the payload's process group already got it


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


class Plan:
    """Everything the payload needs; computed before the switch so the switch only acts."""
    __slots__ = ("path", "argv", "env", "uid", "gid", "groups", "cwd", "umask", "rlimits", "no_new_privs",
                 "tty_guard")

    def __init__(self, **kw):
        for k, v in kw.items():
            setattr(self, k, v)

    def native_args(self):
        # The guard is about another identity typing into the pilot's terminal: in log-only
        # mode the payload is the caller (and could not install it without no_new_privs).
        root = os.geteuid() == 0
        return dict(uid=self.uid, gid=self.gid, groups=self.groups, rlimits=self.rlimits, umask=self.umask,
                    cwd=self.cwd, switch=root, no_new_privs=self.no_new_privs,
                    tty_guard=root and getattr(self, "tty_guard", True))


def _single_threaded():
    # The identity switch (glibc set*id) and the vfork-style spawn assume one thread.
    if len(os.listdir("/proc/self/task")) != 1:
        raise SystemFault("threads", "glexec: internal error (engine is not single-threaded)")


def exec_in_place(plan):
    """Runs as: root; becomes the target and never returns (linger off)."""
    _single_threaded()
    try:
        native.become_payload(plan.path, plan.argv, plan.env, **plan.native_args())
    except native.SpawnError as e:
        raise ExecFailure("exec_failed", f"glexec: cannot execute payload ({e.step}): {os.strerror(e.errno)}",
                          step=e.step, errno=e.errno) from None


def run_lingering(plan, caller_ruid, on_started):
    """Runs as: root. Starts the payload as a child and waits for it.

    `on_started(pid)` is called once the exec succeeded. Returns
    (pid, exit status or None, signal number or None, cpu_user, cpu_system, SpawnError or None)."""
    _single_threaded()
    blocked = FORWARDED + (_signal.SIGCHLD,)
    _signal.pthread_sigmask(_signal.SIG_BLOCK, blocked)  # none may be lost before sigwaitinfo
    try:
        # SIGKILL when we die: a pilot that kills this parent must not leave the payload
        # running unsupervised and without an end record (docs/internals.md).
        pid = native.spawn_payload(plan.path, plan.argv, plan.env, pdeathsig=_signal.SIGKILL,
                                   **plan.native_args())
    except native.SpawnError as e:
        return None, None, None, 0.0, 0.0, e
    on_started(pid)
    # From here on the caller may signal us (to reach its payload), but we stay euid 0.
    if os.geteuid() == 0 and caller_ruid != 0:
        os.setresuid(caller_ruid, 0, 0)
    while True:
        info = _signal.sigwaitinfo(blocked)
        if info.si_signo == _signal.SIGCHLD:
            done, status, usage = os.wait4(pid, os.WNOHANG)
            if done == pid:
                break
        elif info.si_code != _SI_KERNEL:
            try:
                os.kill(pid, info.si_signo)
            except ProcessLookupError:
                pass
    code = os.waitstatus_to_exitcode(status)
    exit_status, signum = (code, None) if code >= 0 else (None, -code)
    return pid, exit_status, signum, usage.ru_utime, usage.ru_stime, None
