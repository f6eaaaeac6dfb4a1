"""The engine service: a warm root process that takes calls from the setuid shim.

Started by systemd socket activation (packaging/systemd/glexec-engine.socket, LISTEN_FDS)
or binding site_paths.SERVICE_SOCKET itself (``--bind``: tests, sites without systemd).
The modules the engine needs are imported once, here; nothing else is kept. Every accepted
connection gets its own child forked from this warm parent (forked ahead of the call: one
spare waits, holding nothing, for the connection the parent hands it), and the child runs
engine.main, the same steps as in-process mode: the config, CA store, CRLs, ban lists and vomsdir are read
afresh by every call, so an admin's change is seen by the next one, and nothing of one
call (module state, a PAM handle, a signal handler) can reach another: the kernel isolates
them. The child:

  1. trusts only the shim: a root peer (SO_PEERCRED) that is the process the hand-off names,
     whose real and effective ids and groups are, by the kernel's account
     (/proc/<pid>/status under a pidfd), those of the hand-off (core.peercheck);
  2. answers "R" once it has the connection (only then does the shim send the caller's
     fds), "A" once the checks passed, and waits for the shim's "G": until then it has done
     nothing the shim's fall-back to the in-process engine could duplicate;
  3. stands in for the shim's process as the in-process engine would run (the caller's
     fds 0-2 and cwd, umask 077, the shim's rlimits, a constant environment) and runs
     engine.main with a ShimExecutor: the plan is run by the shim, in the caller's session
     and cgroup, with the shared C executor; its status comes back for the end record;
  4. sends the exit code ("X").

Wire format: docs/internals.md, "The engine service". Bounded: at most --max-active calls
in their policy phase (the rest wait in the listen backlog, and their shims fall back once
ANSWER_MS has passed), each policy phase at most --request-timeout seconds. A lingering
child waits for its payload without holding a slot, so a stopped caller stalls nobody.
"""
import os
import selectors
import signal
import socket
import struct
import sys
import time

from glexec_py import site_paths
from glexec_py.errors import ExecFailure, SystemFault

HELLO = b"GLEXEC-SERVICE-1\n"
PASSED_FDS = 5               # stdio, the hand-off memfd, the caller's cwd
GO_TIMEOUT = 5.0             # the shim answers "G" at once; a peer that does not is dropped
SYSTEMD_FIRST_FD = 3
SPARE_NAME, CALL_NAME = "glexec-spare", "glexec-call"   # /proc/<pid>/comm of the children
KILL_GRACE = 10.0            # a child past its timeout that did not refuse in time is killed
_HDR = struct.Struct("<cI")
_F_GET_SEALS, _SEALED = 1034, 0x1 | 0x2 | 0x4 | 0x8   # F_SEAL_SEAL|SHRINK|GROW|WRITE
# The service sees the caller's files, pids, network and host name only from the same
# namespaces; a caller elsewhere falls back to the in-process engine, which is in its own.
SAME_NAMESPACES = ("mnt", "pid", "net", "uts", "ipc", "user", "cgroup")
_ENGINE_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}   # as the shim's

# What engine.main imports lazily, imported once in the warm parent (code only: no state).
PRELOAD = ("glexec_py.engine", "glexec_py.core.handoff", "glexec_py.core.config", "glexec_py.core.authz",
           "glexec_py.core.proxychain", "glexec_py.core.identity", "glexec_py.core.mapping",
           "glexec_py.core.gridmap", "glexec_py.core.bans", "glexec_py.core.dn", "glexec_py.core.envplan",
           "glexec_py.core.plan", "glexec_py.core.audit", "glexec_py.core.namespaces",
           "glexec_py.core.peercheck", "glexec_py.effects.configfile", "glexec_py.effects.accounts",
           "glexec_py.effects.native", "glexec_py.effects.userfiles", "glexec_py.effects.leasestore",
           "glexec_py.effects.auditlog", "glexec_py.effects.pam", "glexec_py.effects.payload",
           "glexec_py.effects.banfiles", "glexec_py.effects.capolicy", "glexec_py.core.pamstack",
           # and what the service's own steps and the engine's hot path import lazily
           "fcntl", "resource", "_sha256", "encodings.ascii")


def main(engine_file, args):
    import argparse
    ap = argparse.ArgumentParser(prog="glexec-engine-service", description=__doc__.split("\n")[0])
    ap.add_argument("--bind", action="store_true", help=f"bind {site_paths.SERVICE_SOCKET} (no systemd)")
    ap.add_argument("--idle-exit", type=float, default=0, metavar="S", help="exit after S idle seconds (0: never)")
    ap.add_argument("--max-active", type=int, default=16, metavar="N", help="calls in their policy phase at once")
    ap.add_argument("--request-timeout", type=float, default=60, metavar="S", help="a call's policy phase, at most")
    opts = ap.parse_args(args)
    if os.geteuid() != 0:
        sys.exit("glexec-engine-service: must run as root")
    from glexec_py.effects import trust
    import importlib
    for name in PRELOAD + ("ctypes",):   # ctypes: warm_pam_modules, checked with the rest
        importlib.import_module(name)
    try:
        trust.check_interpreter_state()
        warm_pam_modules(engine_file)
        warm_libraries()
        # Again: what the warm-ups imported (the YAML parser, if the config was not cached)
        # is checked here once, not by every call.
        trust.check_interpreter_state()
    except SystemFault as e:
        sys.exit(f"glexec-engine-service: {e.message}")
    trust.remember_checked_modules()     # each call checks only what it imports after the fork
    listener = _bound() if opts.bind else _from_systemd()
    Service(listener, engine_file, opts).serve()


def warm_libraries():
    """Runs as: root. Load, once, the shared libraries every call would otherwise load
    afresh in its child: glibc's NSS modules (the passwd and group lookups of the mapping),
    libcrypto's providers, decoders and method stores (native.crypto_warm: a throw-away
    verification of a constant certificate, ~1 ms a call). Code only: no account data is
    kept (no nscd here), glibc re-reads nsswitch.conf in the child when it changes, and no
    CA, CRL or credential is read here: every call builds its own store. Then the parent's
    objects are moved out of the collector's way, so a child does not copy their pages."""
    import gc
    import pwd
    from glexec_py.effects import native
    os.getgrouplist("root", 0)
    pwd.getpwuid(0)
    native.crypto_warm()
    gc.freeze()


_pam_libraries = []      # handles that keep the PAM stack's code mapped (never used)


def warm_pam_modules(engine_file):
    """Runs as: root. Map, once, the code of the PAM stack a call's child would load afresh
    (~2 ms): the modules of the configured service and of /etc/pam.d/other, which Linux-PAM
    reads for the types the service leaves out, and their libraries. Linux-PAM itself picks
    them: a transaction for root is started (no module is called) after the same checks as
    a call's (effects.pam.check_service), each newly mapped library gets one more dlopen
    reference, and the transaction ends. Code only: the child still reads the config and
    the service files and starts its own transaction; a module it needs that is not mapped
    here is loaded as before. A replaced module file is seen after a restart (as a Python
    module or libcrypto is)."""
    import ctypes
    from glexec_py import engine
    from glexec_py.effects import configfile, pam
    from glexec_py.errors import GlexecError
    try:
        paths = engine.Paths(engine_file, site_paths.CONFIG_FILE)
        cfg = configfile.load(paths.config, paths.state_dir)
        if not cfg.pam.enabled:
            return
        pam.check_service(cfg.pam.service)
        before = _mapped_files()
        handle = pam.Pam(cfg.pam.service, "root", "root")
    except (GlexecError, OSError):
        return                           # each call finds and reports what is wrong
    try:
        for path in sorted(_mapped_files() - before):
            try:
                _pam_libraries.append(ctypes.CDLL(path, mode=os.RTLD_NOW | os.RTLD_NOLOAD))
            except OSError:
                pass
    finally:
        handle.end()


def _mapped_files():
    """The files mapped into this process (/proc/self/maps)."""
    names = set()
    with open("/proc/self/maps", "rb") as f:
        for line in f:
            fields = line.split(None, 5)
            if len(fields) == 6 and fields[5].startswith(b"/"):
                names.add(os.fsdecode(fields[5].rstrip(b"\n")))
    return names


def _from_systemd():
    if os.environ.get("LISTEN_PID") != str(os.getpid()) or os.environ.get("LISTEN_FDS") != "1":
        sys.exit("glexec-engine-service: not socket-activated (LISTEN_FDS=1); use --bind")
    listener = socket.socket(fileno=SYSTEMD_FIRST_FD)
    if listener.family != socket.AF_UNIX or listener.type != socket.SOCK_STREAM:
        sys.exit("glexec-engine-service: the passed socket is not a Unix stream socket")
    return listener


def _bound():
    path = site_paths.SERVICE_SOCKET
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o755, exist_ok=True)
    try:
        if (os.lstat(path).st_mode & 0o170000) == 0o140000:
            os.unlink(path)              # a stale socket of an earlier run
    except FileNotFoundError:
        pass
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)                # born 0600: no window in which others may connect
    try:
        listener.bind(path)
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    listener.listen(1024)
    return listener


class Service:
    """The warm parent: accepts, forks, counts the calls in their policy phase."""

    def __init__(self, listener, engine_file, opts):
        self.listener, self.engine_file, self.opts = listener, engine_file, opts
        self.children = {}           # pid -> busy pipe's read end (None once the policy phase ended)
        self.deadlines = {}          # pid -> when its policy phase must have ended
        self.selector = selectors.DefaultSelector()
        self.accepting = False
        self.last_activity = time.monotonic()
        self.spare = None            # (pid, hand-over socket, busy pipe) of the child forked ahead

    def busy(self):
        return sum(1 for fd in self.children.values() if fd is not None)

    def serve(self):
        self.listener.setblocking(False)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        while True:
            self.reap()
            want = self.busy() < self.opts.max_active
            if self.spare is None and self.busy() == 0:
                # Between calls (none in its policy phase, whose CPU the fork would take):
                # the next call finds its child forked. Under load calls fork on demand.
                self.spare = self.fork_spare()
            if want != self.accepting:
                (self.selector.register if want else self.selector.unregister)(
                    self.listener, *((selectors.EVENT_READ,) if want else ()))
                self.accepting = want
            for key, _ in self.selector.select(timeout=0.2):
                if key.fileobj is self.listener:
                    self.accept()
                else:
                    self.policy_ended(key.data)
            self.enforce_deadlines()
            idle = self.opts.idle_exit
            if idle and not self.children and time.monotonic() - self.last_activity > idle:
                return

    def accept(self):
        try:
            conn, _ = self.listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return
        self.last_activity = time.monotonic()
        for _ in range(2):               # a spare that died since it was forked is replaced once
            spare, self.spare = self.spare or self.fork_spare(), None
            pid, hand, busy_r = spare
            try:
                socket.send_fds(hand, [b"C"], [conn.fileno()], socket.MSG_NOSIGNAL)
            except OSError:
                hand.close()
                os.close(busy_r)         # reap() collects it
                continue
            hand.close()
            self.children[pid] = busy_r
            self.deadlines[pid] = time.monotonic() + self.opts.request_timeout + KILL_GRACE
            self.selector.register(busy_r, selectors.EVENT_READ, pid)
            break
        conn.close()                     # the child's now (not handed over: the shim falls back)

    def fork_spare(self):
        """A child forked ahead of the next call (a fork of this parent costs ~1 ms): it
        waits, holding nothing of any call, for the connection the parent hands it, then
        serves that one call as a child forked at accept time would. It exits when the
        parent goes (EOF). (pid, the parent's end of the hand-over socket, busy pipe)"""
        busy_r, busy_w = os.pipe()
        hand, take = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            code = 202
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                os.close(busy_r)
                hand.close()
                self.selector.close()
                self.listener.close()
                for fd in self.children.values():
                    if fd is not None:
                        os.close(fd)
                _name_self(SPARE_NAME)
                conn = _taken_call(take)
                code = 0
                if conn is not None:
                    _name_self(CALL_NAME)
                    code = Request(conn, busy_w, self.engine_file, self.opts.request_timeout).handle()
            except BaseException as e:   # never back into the parent's loop
                _log(f"request failed: {e!r}")
            finally:
                os._exit(code)
        take.close()
        os.close(busy_w)
        return pid, hand, busy_r

    def policy_ended(self, pid):
        fd = self.children.get(pid)
        if fd is not None:
            self.selector.unregister(fd)
            os.close(fd)
            self.children[pid] = None
            self.deadlines.pop(pid, None)

    def enforce_deadlines(self):
        now = time.monotonic()
        for pid, deadline in list(self.deadlines.items()):
            if now > deadline:
                _log(f"request {pid} overran its timeout: killed")
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.policy_ended(pid)

    def reap(self):
        while self.children or self.spare is not None:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self.spare is not None and self.spare[0] == pid:   # killed while it waited
                self.spare[1].close()
                os.close(self.spare[2])
                self.spare = None
                continue
            self.policy_ended(pid)
            self.children.pop(pid, None)
            self.last_activity = time.monotonic()


def _taken_call(take):
    """Runs as: root, in a spare child. The connection the parent hands over, or None if
    the parent went away first."""
    try:
        msg, fds, _, _ = socket.recv_fds(take, 1, 1, socket.MSG_CMSG_CLOEXEC)
    finally:
        take.close()
    if msg != b"C" or len(fds) != 1:
        for fd in fds:
            os.close(fd)
        return None
    return socket.socket(fileno=fds[0])


def _name_self(name):
    """The process name ps and the tests see: a spare, or a child serving a call."""
    try:
        with open("/proc/self/comm", "w") as f:
            f.write(name)
    except OSError:
        pass


_log_fd = 2      # the service's stderr (the journal); a request child's fd 2 becomes the caller's


def _log(line):
    try:
        os.write(_log_fd, f"glexec-engine-service[{os.getpid()}]: {line}\n".encode("utf-8", "backslashreplace"))
    except OSError:
        pass


class PeerRefused(Exception):
    pass


class LingeringShimGone(BaseException):
    """The shim died while its payload ran (SIGKILLed with the job): the call ends here
    with no further record, as the in-process engine, that same process, would have.
    A BaseException: engine.main must not turn it into a refusal after the grant."""


class Request:
    """One call, in its own forked child."""

    def __init__(self, conn, busy_fd, engine_file, timeout):
        self.conn, self.busy_fd, self.engine_file, self.timeout = conn, busy_fd, engine_file, timeout

    def handle(self):
        """The exit status of this child (its log says why a peer was turned away)."""
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGALRM, _timed_out)
        signal.alarm(max(1, int(self.timeout)))
        self.conn.settimeout(GO_TIMEOUT)
        try:
            blob, facts = self.receive()
        except PeerRefused as why:
            _log(f"peer refused: {why}")
            return 1
        except (OSError, ValueError, SystemFault) as e:
            _log(f"peer dropped: {e!r}")
            return 1
        self.conn.settimeout(None)
        from glexec_py import engine
        executor = ShimExecutor(self.conn, facts.pid, self.policy_done)
        try:
            code = engine.main(self.engine_file, [site_paths.CONFIG_FILE], handoff=blob, executor=executor)
        except LingeringShimGone:
            return 0
        self.policy_done()
        if code is not None:              # None: the shim became the payload
            executor.send(b"X", struct.pack("<I", code & 0xFF))
        return 0

    def policy_done(self):
        signal.alarm(0)
        if self.busy_fd is not None:
            os.close(self.busy_fd)
            self.busy_fd = None

    def receive(self):
        """The shim's offer, checked: (its fds, the hand-off bytes, the facts)."""
        from glexec_py.core import handoff, peercheck
        pid, uid, _ = struct.unpack("3i", self.conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
        if uid != 0:
            raise PeerRefused(f"peer euid {uid} is not root")   # before reading a byte from it
        self.conn.sendall(b"R", socket.MSG_NOSIGNAL)            # taken: now the shim sends its fds
        msg, fds, flags, _ = socket.recv_fds(self.conn, len(HELLO), PASSED_FDS + 1, socket.MSG_CMSG_CLOEXEC)
        try:
            if msg != HELLO or len(fds) != PASSED_FDS or flags & socket.MSG_CTRUNC:
                raise PeerRefused("not a glexec shim's offer")
            blob = _sealed_contents(fds[3])
            facts = handoff.parse(blob)
            why = peercheck.mismatch(facts, pid, uid, _kernel_status(pid))
            if why is not None:
                raise PeerRefused(why)
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        # Ready to stand in for the shim before saying so: a failure here is a fall-back.
        take_caller_place(fds, facts)
        self.conn.sendall(b"A", socket.MSG_NOSIGNAL)
        if self.conn.recv(1) != b"G":
            raise PeerRefused("the shim did not commit (it has fallen back)")
        return blob, facts


def _timed_out(signum, frame):
    raise SystemFault("service_timeout", "glexec: the engine service timed out")


def _sealed_contents(fd):
    """Runs as: root. The hand-off memfd's bytes; it must be sealed (it cannot change
    after the checks) and within the hand-off's size limit."""
    import fcntl
    from glexec_py.core.handoff import MAX_BLOB
    try:
        st = os.fstat(fd)
        sealed = fcntl.fcntl(fd, _F_GET_SEALS) & _SEALED == _SEALED
    except OSError:
        sealed = False
    if not sealed or (st.st_mode & 0o170000) != 0o100000 or st.st_size > MAX_BLOB:
        raise PeerRefused("the hand-off is not a sealed memfd")
    return os.pread(fd, st.st_size + 1, 0)


def _kernel_status(pid):
    """Runs as: root. /proc/<pid>/status, read while a pidfd of `pid` is open, and only
    if that process is still alive afterwards (so the text is not a successor's).
    A peer in other namespaces than the service's (a container's) is refused."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        raise PeerRefused(f"pid {pid} is gone") from None
    try:
        with open(f"/proc/{pid}/status", "r", encoding="ascii", errors="replace") as f:
            text = f.read()
        other = [ns for ns in SAME_NAMESPACES
                 if os.stat(f"/proc/{pid}/ns/{ns}").st_ino != os.stat(f"/proc/self/ns/{ns}").st_ino]
        signal.pidfd_send_signal(pidfd, 0)
    except OSError:
        raise PeerRefused(f"pid {pid} is gone") from None
    finally:
        os.close(pidfd)
    if other:       # its files, pids, host name are not ours: the in-process engine's job
        raise PeerRefused(f"peer is in another {'/'.join(other)} namespace")
    return text


def take_caller_place(fds, facts):
    """Runs as: root. This child becomes what the shim's exec of the in-process engine
    would be: the caller's fds 0-2 and cwd, the shim's umask (077) and rlimits (the
    caller's, with those the engine needs raised: csrc/shim.c sane_process), default
    signals, the shim's constant environment. Caches of the parent are dropped."""
    import resource
    from glexec_py.effects import trust
    global _log_fd
    _log_fd = os.dup(2)          # close-on-exec: never reaches the payload
    for target, fd in enumerate(fds[:3]):
        os.dup2(fd, target)
    os.fchdir(fds[4])
    for fd in fds:
        if fd > 2:
            os.close(fd)
    os.umask(0o077)
    for res, (soft, hard) in facts.rlimits.items():
        _set_limit(res, _limit(soft), _limit(hard))
    inf = resource.RLIM_INFINITY
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    for res, want in ((resource.RLIMIT_FSIZE, inf), (resource.RLIMIT_CPU, inf), (resource.RLIMIT_AS, inf),
                      (resource.RLIMIT_DATA, inf), (resource.RLIMIT_NOFILE, 1024), (resource.RLIMIT_STACK, 8 << 20)):
        soft, hard = resource.getrlimit(res)
        _set_limit(res, _at_least(soft, want), _at_least(hard, want))
    for sig in range(1, signal.NSIG):
        if sig not in (signal.SIGKILL, signal.SIGSTOP, signal.SIGALRM):
            try:
                signal.signal(sig, signal.SIG_DFL)
            except (OSError, ValueError):
                pass
    signal.pthread_sigmask(signal.SIG_SETMASK, ())
    os.environ.clear()
    os.environ.update(_ENGINE_ENV)
    trust.forget()


def _limit(value):
    import resource
    return resource.RLIM_INFINITY if value == -1 else value


def _at_least(value, want):
    import resource
    inf = resource.RLIM_INFINITY
    return inf if inf in (value, want) else max(value, want)


def _set_limit(res, soft, hard):
    """Runs as: root. As the shim's raise_limit: without CAP_SYS_RESOURCE (some containers)
    a hard limit cannot be raised; then the soft one goes as far as the hard one allows."""
    import resource
    try:
        resource.setrlimit(res, (soft, hard))
    except (ValueError, OSError):
        _, current = resource.getrlimit(res)
        inf = resource.RLIM_INFINITY
        hard = current if hard == inf or (current != inf and hard > current) else hard
        soft = hard if soft == inf or (hard != inf and soft > hard) else soft
        resource.setrlimit(res, (soft, hard))


class ShimExecutor:
    """The plan runs in the shim (csrc/shim_service.c), with the same C executor as
    effects.payload's: the same two entry points, the same results and failures."""

    def __init__(self, conn, shim_pid, policy_done):
        self.conn, self.shim_pid, self.policy_done = conn, shim_pid, policy_done

    def send(self, tag, payload):
        try:
            # MSG_NOSIGNAL: a dead shim is an error here, not a SIGPIPE (signals are default now)
            self.conn.sendall(_HDR.pack(tag, len(payload)) + payload, socket.MSG_NOSIGNAL)
            return True
        except OSError:
            return False

    def receive(self):
        """(tag, int values) of the shim's next report, or None at EOF."""
        head = self._exactly(_HDR.size)
        if head is None:
            return None
        tag, length = _HDR.unpack(head)
        if length % 8 or length > 40:
            raise SystemFault("service_protocol", "glexec: malformed report from the shim")
        body = self._exactly(length)
        if body is None:
            return None
        return tag, struct.unpack(f"<{length // 8}q", body)

    def _exactly(self, n):
        data = b""
        while len(data) < n:
            try:
                chunk = self.conn.recv(n - len(data))
            except OSError:
                return None
            if not chunk:
                return None
            data += chunk
        return data

    def in_place_pid(self):
        return self.shim_pid

    def _hand_over(self, plan):
        from glexec_py.effects.payload import encoded_plan
        sent = self.send(b"P", encoded_plan(plan))
        self.policy_done()
        return sent

    def exec_in_place(self, plan):
        """The shim becomes the payload: returns once it has (EOF: its socket is close-on-exec)."""
        report = self.receive() if self._hand_over(plan) else None
        if report is not None and report[0] == b"F":
            from glexec_py.effects.native import spawn_error
            e = spawn_error(*report[1])
            raise ExecFailure("exec_failed", f"glexec: cannot execute payload ({e.step}): {os.strerror(e.errno)}",
                              step=e.step, errno=e.errno)

    def run_lingering(self, plan, on_started):
        """As effects.payload.run_lingering, the shim being the lingering parent."""
        from glexec_py.effects.native import SpawnError, spawn_error
        report = self.receive() if self._hand_over(plan) else None
        if report is None:                # the shim is gone: nothing of the payload ran
            return None, None, None, 0.0, 0.0, SpawnError("shim_gone", 32)   # EPIPE
        if report[0] == b"F":
            return None, None, None, 0.0, 0.0, spawn_error(*report[1])
        if report[0] != b"S" or len(report[1]) != 1:
            raise SystemFault("service_protocol", "glexec: malformed report from the shim")
        pid = report[1][0]
        on_started(pid)
        report = self.receive()
        if report is None:
            raise LingeringShimGone()
        if report[0] != b"W" or len(report[1]) != 5:
            err = report[1][1] if report[0] == b"F" and len(report[1]) == 2 else 71   # EPROTO
            raise SystemFault("linger", f"glexec: cannot wait for the payload: {os.strerror(err)}", errno=err)
        status, us, uus, ss, sus = report[1]
        code = os.waitstatus_to_exitcode(status)
        exit_status, signum = (code, None) if code >= 0 else (None, -code)
        return pid, exit_status, signum, us + uus / 1e6, ss + sus / 1e6, None
