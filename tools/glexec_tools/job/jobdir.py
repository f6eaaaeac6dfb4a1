"""The job directory's life as the target: made, entered by the payload, its proxy renewed,
its processes swept, measured and wiped -- the actions ``inner.py`` runs for ``glexec-job
run`` (pilot.py), each in its own glexec call.

Runs as: the job's target account (through glexec), never as root or the pilot.

Every action prints one JSON line on stdout and exits 0 (done), 1 (refused or something is
left) or 4 (a system failure), with one line on stderr when it is not 0.  Paths below the
job directory are opened from its fd without following a symlink (``apply.openat2``).
"""
import errno
import json
import os
import stat
import sys
import time

from . import plan
from .apply import DIR_FLAGS, RESOLVE_INSIDE, open_job_dir, openat2

EXIT_OK, EXIT_REFUSED, EXIT_FAIL = 0, 1, 4
PROG = "glexec-job"
MAX_PROXY = 256 << 10
DU_MAX_ENTRIES = 2_000_000
SWEEP_ROUNDS = 200


def run(a) -> int:
    try:
        return ACTIONS[a.action](a)
    except plan.Refused as e:
        return _fail(a.action, f"refused: {e}", EXIT_REFUSED)
    except OSError as e:
        return _fail(a.action, f"failed: {e.strerror or e}" + (f": {os.fsdecode(e.filename)}" if e.filename else ""),
                     EXIT_FAIL)
    except Exception as e:          # a bug or an undecodable GLEXEC_ENV: still one line
        return _fail(a.action, f"failed: {type(e).__name__}: {e}", EXIT_FAIL)


def _fail(action, message, code):
    sys.stderr.write(f"{PROG} {action}: {message}".replace("\n", " ")[:500] + "\n")
    return code


def _say(**fields):
    sys.stdout.write(json.dumps(fields, sort_keys=True) + "\n")


def _split(path):
    path = os.fsencode(path)
    if not path.startswith(b"/") or b"\0" in path:
        raise plan.Refused("the job directory must be an absolute path")
    parent, _, name = path.rstrip(b"/").rpartition(b"/")
    if name in (b"", b".", b".."):
        raise plan.Refused("the job directory must name a directory")
    return parent or b"/", name


def mkjob(a):
    """A new private directory named by the pilot (never an existing one), with the
    payload's TMPDIR and the proxy's directory in it."""
    parent, name = _split(a.dir)
    os.umask(0o077)
    pfd = os.open(parent, DIR_FLAGS)
    try:
        os.mkdir(name, 0o700, dir_fd=pfd)
        fd = os.open(name, DIR_FLAGS, dir_fd=pfd)
    finally:
        os.close(pfd)
    try:
        st = os.fstat(fd)
        if st.st_uid != os.geteuid() or not stat.S_ISDIR(st.st_mode):
            raise plan.Refused("the new job directory is not the running account's")
        os.fchmod(fd, 0o700)
        for sub in (plan.JOB_TMP, plan.JOB_PROXY_DIR):
            os.mkdir(sub, 0o700, dir_fd=fd)
    finally:
        os.close(fd)
    _say(dir=os.fsdecode(a.dir), uid=os.getuid(), gid=os.getgid())
    return EXIT_OK


def execute(a):
    """The payload: the pilot's declared environment (GLEXEC_ENV) restored over the one
    glexec made (without its GLEXEC_* variables), TMPDIR and GLEXEC_JOB_DIR set, cwd the job directory; then one marker line
    on stderr (the pilot's proof that glexec granted and the payload starts) and execvp."""
    from glexec_py.core import envwrap
    command = a.command[1:] if a.command[:1] == ["--"] else a.command
    if not command:
        raise plan.Refused("no command")
    fd = open_job_dir(a.dir)
    os.fchdir(fd)
    os.close(fd)
    # glexec keeps GLEXEC_* for its payload: here they are the pilot's plumbing (the path of
    # its proxy copy, the target proxy's name), not the job's
    current = [(n, v) for n, v in os.environb.items() if not n.startswith(b"GLEXEC_") or n == envwrap.WRAP_NAME]
    wrapped = os.environb.get(envwrap.WRAP_NAME)
    env = envwrap.restore(current, envwrap.decode(wrapped) if wrapped else [])
    job = os.fsencode(a.dir)
    env = dict(env)
    env[b"TMPDIR"] = job + b"/" + plan.JOB_TMP
    env[b"GLEXEC_JOB_DIR"] = job
    os.write(2, plan.STARTED_MARKER)
    try:
        os.execvpe(command[0], command, env)
    except OSError as e:
        sys.stderr.write(f"{PROG}: cannot execute {command[0][:200]!r}: {e.strerror}\n")
        sys.stderr.flush()
        os._exit(127)


def renew(a):
    """The new proxy (stdin) replaces .proxy/x509up in one rename: the payload reads the old
    file or the new one, never a part."""
    data = b""
    while len(data) <= MAX_PROXY:
        chunk = os.read(0, 65536)
        if not chunk:
            break
        data += chunk
    if not data or len(data) > MAX_PROXY or b"-----BEGIN CERTIFICATE-----" not in data:
        raise plan.Refused("the new proxy on stdin is empty, too large or not PEM")
    root = open_job_dir(a.dir)
    try:
        pd = openat2(root, plan.JOB_PROXY_DIR, DIR_FLAGS, resolve=RESOLVE_INSIDE)
    finally:
        os.close(root)
    try:
        st = os.fstat(pd)
        if st.st_uid != os.geteuid():
            raise plan.Refused("the proxy directory is not the running account's")
        tmp = b".x509up.%s" % os.urandom(8).hex().encode()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=pd)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except BaseException:
            os.unlink(tmp, dir_fd=pd)
            raise
        finally:
            os.close(fd)
        try:
            os.rename(tmp, plan.JOB_PROXY_NAME, src_dir_fd=pd, dst_dir_fd=pd)
        except OSError:
            os.unlink(tmp, dir_fd=pd)
            raise
        os.fsync(pd)
    finally:
        os.close(pd)
    _say(renewed=True, bytes=len(data))
    return EXIT_OK


# --- processes --------------------------------------------------------------------------

def _processes():
    """{pid: (ppid, state, (ruid, suid))} of every process /proc shows now."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                st = f.read(4096)
            with open(f"/proc/{name}/status", "rb") as f:
                status = f.read(8192)
        except OSError:
            continue
        rest = st[st.rfind(b")") + 2:].split()
        uids = ()
        for line in status.splitlines():
            if line.startswith(b"Uid:"):
                v = line.split()[1:]
                uids = (int(v[0]), int(v[2]))
        out[int(name)] = (int(rest[1]), rest[0], uids)
    return out


def _below(procs, pid, ancestor):
    seen = 0
    while pid > 1 and seen < 4096:
        entry = procs.get(pid)
        if entry is None:
            return False
        pid, seen = entry[0], seen + 1
        if pid == ancestor:
            return True
    return False


def _ancestors(procs, pid):
    out = set()
    while pid > 1 and pid not in out and pid in procs:
        out.add(pid)
        pid = procs[pid][0]
    return out


def _mine(procs, ancestor):
    """This account's live processes below ``ancestor`` (None: anywhere), never this
    process or one it runs under (the pilot's own, should the target be the pilot)."""
    spared, uid = _ancestors(procs, os.getpid()), os.geteuid()
    return [p for p, (ppid, state, uids) in procs.items()
            if p not in spared and state not in (b"Z", b"X") and uid in uids
            and (ancestor is None or _below(procs, p, ancestor))]


def sweep(a):
    """Signal this account's processes below ``--ancestor`` (the pilot's wrapper, a child
    subreaper: daemons that changed session or double-forked stay below it), or all of them
    (``--all``, when the wrapper is gone), until none is left (SIGKILL) or once (others).
    Processes this sweep runs under are spared (not kill(-1)): a pilot whose job runs as
    the pilot itself (log-only mode) is not killed by its own sweep."""
    if (a.ancestor is None) == (not a.all):
        raise plan.Refused("sweep needs exactly one of --ancestor and --all")
    sig, ancestor = a.signal, (None if a.all else a.ancestor)
    if not 1 <= sig <= 64:
        raise plan.Refused("not a signal number")
    signalled, rounds = set(), 0
    while rounds < (SWEEP_ROUNDS if sig == 9 else 1):
        rounds += 1
        found = _mine(_processes(), ancestor)
        if not found:
            break
        for pid in found:
            try:
                os.kill(pid, sig)
                signalled.add(pid)
            except OSError:
                pass
        time.sleep(0.01)
    left = _mine(_processes(), ancestor) if sig == 9 else []
    _say(signalled=len(signalled), rounds=rounds, left=len(left))
    return EXIT_REFUSED if left else EXIT_OK


# --- the tree ---------------------------------------------------------------------------

def _open_dir(parent, name):
    """Open a directory of the job without following links; one the payload made
    unreadable for its owner (chmod 000) is given u+rwx first (the owner may)."""
    try:
        return os.open(name, DIR_FLAGS, dir_fd=parent)
    except PermissionError:
        pf = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
        try:
            if not stat.S_ISDIR(os.fstat(pf).st_mode):
                raise
            os.chmod(f"/proc/self/fd/{pf}", 0o700)
        finally:
            os.close(pf)
        return os.open(name, DIR_FLAGS, dir_fd=parent)


def du(a):
    """Bytes (allocated blocks) and entries below the job directory."""
    root = open_job_dir(a.dir)
    total, entries = 0, 0
    try:
        for _, _, st in _walk_names(root):
            total += st.st_blocks * 512
            entries += 1
            if entries > DU_MAX_ENTRIES:
                break
    finally:
        os.close(root)
    _say(bytes=total, entries=entries, capped=entries > DU_MAX_ENTRIES)
    return EXIT_OK


def _walk_names(root):
    """(parent_fd, name, lstat) for every entry below ``root``, contents before their
    directory (so a removal can follow the order)."""
    dev = os.fstat(root).st_dev
    stack = [(root, os.scandir(root))]
    names = [None]
    try:
        while stack:
            fd, it = stack[-1]
            entry = next(it, None)
            if entry is None:
                it.close()
                stack.pop()
                name = names.pop()
                if stack:
                    st = os.fstat(fd)
                    os.close(fd)
                    yield stack[-1][0], name, st
                continue
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode) and st.st_dev == dev:
                sub = _open_dir(fd, entry.name)
                stack.append((sub, os.scandir(sub)))
                names.append(entry.name)
                continue
            yield fd, entry.name, st
    finally:
        for fd, it in stack[1:]:
            it.close()
            os.close(fd)


def wipe(a):
    """Remove the job directory and everything in it (its proxy, TMPDIR, outputs), then
    check that it is gone.  A mount point inside (another device) is refused, not crossed."""
    parent, name = _split(a.dir)
    pfd = os.open(parent, DIR_FLAGS)
    removed = 0
    try:
        for attempt in range(3):
            try:
                root = _open_dir(pfd, name)
            except FileNotFoundError:
                break
            try:
                if os.fstat(root).st_uid != os.geteuid():
                    raise plan.Refused("the job directory is not owned by the running account")
                for fd, entry, st in _walk_names(root):
                    if stat.S_ISDIR(st.st_mode):
                        os.rmdir(entry, dir_fd=fd)
                    else:
                        os.unlink(entry, dir_fd=fd)
                    removed += 1
            finally:
                os.close(root)
            try:
                os.rmdir(name, dir_fd=pfd)
            except OSError as e:
                if e.errno not in (errno.ENOTEMPTY, errno.EEXIST) or attempt == 2:
                    raise
        try:
            os.lstat(name, dir_fd=pfd)
            gone = False
        except FileNotFoundError:
            gone = True
    finally:
        os.close(pfd)
    _say(removed=removed, gone=gone)
    return EXIT_OK if gone else EXIT_REFUSED


ACTIONS = {"mkjob": mkjob, "exec": execute, "renew": renew, "sweep": sweep, "du": du, "wipe": wipe}
