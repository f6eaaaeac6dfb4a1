"""Start the payload as the target account, in the caller's session and process group.

The child switches identity (groups, gid, uid; verified) and execs; the lingering parent
waits, forwards termination signals and reports the payload's status and CPU times.
No setsid/setpgid anywhere: the batch system must still see, suspend and kill the payload.
"""
import os

import _signal

from glexec_py.effects import native
from glexec_py.effects.userfiles import as_user
from glexec_py.errors import CallerError, ExecFailure

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
    """Everything the child needs; computed before the fork so the child only acts."""
    __slots__ = ("path", "argv", "env", "uid", "gid", "groups", "cwd", "umask", "rlimits", "no_new_privs")

    def __init__(self, **kw):
        for k, v in kw.items():
            setattr(self, k, v)


def _become_payload(plan):
    """Runs as: root, in the child (or in place when not lingering); ends in execve."""
    for sig in range(1, _signal.NSIG):
        if sig not in (_signal.SIGKILL, _signal.SIGSTOP):
            try:
                _signal.signal(sig, _signal.SIG_DFL)
            except (OSError, ValueError):
                pass
    _signal.pthread_sigmask(_signal.SIG_SETMASK, ())
    import resource
    for res, (soft, hard) in plan.rlimits.items():
        try:
            resource.setrlimit(res, (resource.RLIM_INFINITY if soft < 0 else soft,
                                     resource.RLIM_INFINITY if hard < 0 else hard))
        except (ValueError, OSError):
            pass
    os.umask(plan.umask)
    if os.geteuid() == 0:
        native.switch_identity(plan.uid, plan.gid, list(plan.groups))
    if plan.no_new_privs:
        native.set_no_new_privs()
    if plan.cwd:
        os.chdir(plan.cwd)
    env = {}
    for entry in plan.env:
        name, _, value = entry.partition(b"=")
        env[name] = value
    os.execve(plan.path, plan.argv, env)


def exec_in_place(plan):
    """Runs as: root; becomes the target and never returns (linger off)."""
    try:
        _become_payload(plan)
    except OSError as e:
        raise ExecFailure("exec_failed", f"glexec: cannot execute payload: {os.strerror(e.errno)}",
                          errno=e.errno) from None


def run_lingering(plan, caller_ruid, on_started):
    """Runs as: root. Forks the payload and waits for it.

    `on_started(pid)` is called once the exec succeeded. Returns
    (pid, exit status or None, signal number or None, cpu_user, cpu_system, exec errno or None)."""
    blocked = FORWARDED + (_signal.SIGCHLD,)
    _signal.pthread_sigmask(_signal.SIG_BLOCK, blocked)
    rfd, wfd = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        os.close(rfd)
        try:
            _become_payload(plan)
        except BaseException as e:  # any failure before exec: report it, never run anything
            code = getattr(e, "errno", None) or 255
            try:
                os.write(wfd, b"%d" % code)
            finally:
                os._exit(126)
    os.close(wfd)
    report = os.read(rfd, 64)
    os.close(rfd)
    exec_errno = int(report) if report else None
    if exec_errno is None:
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
    return pid, exit_status, signum, usage.ru_utime, usage.ru_stime, exec_errno
