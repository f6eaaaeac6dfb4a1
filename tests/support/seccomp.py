"""Fault injection with a seccomp filter: make chosen system calls "succeed" without doing
anything, so the checks that follow them are what refuses.

``SECCOMP_RET_ERRNO`` with an errno of 0 makes the kernel skip the system call and return 0
to the caller (kernel/seccomp.c: the return value is set to ``-data``), i.e. a ``setresuid``
that lies. The filter is inherited by every descendant, across execve, including a setuid
exec: installing one needs CAP_SYS_ADMIN (we are root) or no_new_privs (which would make the
kernel ignore the setuid bit), so install it as root, then drop to the caller, then exec.
There is no way to remove a filter: install it only in a process that is about to exec or
exit (a forked child).

    install_fake_success([("setresuid", 47010)])   # setresuid(47010, ...) returns 0, does nothing
    install_fake_success([("capget", None)])       # every capget returns 0, fills nothing

``install_hold`` stops a chosen system call instead (``SECCOMP_RET_USER_NOTIF``) until the
test, holding the listener, lets it go on (``release``): a deterministic window between two
steps of the executor, e.g. to kill its parent right before ``prctl(PR_SET_PDEATHSIG)``.
"""
import ctypes
import os
import platform
import sys
import struct

# (audit arch, {name: number}) per machine; only what the tests use.
_ARCHES = {
    "x86_64": (0xC000003E, {"setuid": 105, "setgid": 106, "setgroups": 116, "setresuid": 117,
                            "setresgid": 119, "capget": 125, "prctl": 157}),
    "aarch64": (0xC00000B7, {"setuid": 146, "setgid": 144, "setgroups": 159, "setresuid": 147,
                             "setresgid": 149, "capget": 90, "prctl": 167}),
}

_LD_ABS_W, _JEQ_K, _RET_K = 0x20, 0x15, 0x06
_RET_ALLOW, _RET_ERRNO, _RET_USER_NOTIF = 0x7FFF0000, 0x00050000, 0x7FC00000
_OFF_NR, _OFF_ARCH, _OFF_ARG0 = 0, 4, 16    # struct seccomp_data; arg0's low 32 bits (LE)
_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 22, 2


def _ins(code, k, jt=0, jf=0):
    return struct.pack("=HBBI", code, jt, jf, k & 0xFFFFFFFF)


def program(calls, machine=None, action=_RET_ERRNO | 0):
    """The BPF program (bytes) for ``calls``: [(syscall name, arg0 or None)]; ``action`` for
    a matching call (default: return 0 without doing anything)."""
    if sys.byteorder != "little":
        raise RuntimeError("seccomp fault injection: little-endian machines only")
    arch, numbers = _ARCHES[machine or platform.machine()]
    out = [_ins(_LD_ABS_W, _OFF_ARCH), _ins(_JEQ_K, arch, 1, 0), _ins(_RET_K, _RET_ALLOW)]
    for name, arg0 in calls:
        # nr == N (and arg0 == A) -> fake success; else fall through to the next rule
        body = [_ins(_LD_ABS_W, _OFF_ARG0), _ins(_JEQ_K, arg0, 0, 1)] if arg0 is not None else []
        body.append(_ins(_RET_K, action))
        out += [_ins(_LD_ABS_W, _OFF_NR), _ins(_JEQ_K, numbers[name], 0, len(body))] + body
    out.append(_ins(_RET_K, _RET_ALLOW))
    return b"".join(out)


def _prog(code):
    buf = ctypes.create_string_buffer(code, len(code))

    class _Prog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    return _Prog(len(code) // 8, ctypes.addressof(buf)), buf


def install_fake_success(calls):
    """Install the filter in the calling process (irreversible; see the module doc)."""
    prog, _buf = _prog(program(calls))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong]
    if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"seccomp filter: {os.strerror(e)}")


_NR_SECCOMP = {"x86_64": 317, "aarch64": 277}
_SECCOMP_SET_MODE_FILTER, _FLAG_NEW_LISTENER, _FLAG_CONTINUE = 1, 1 << 3, 1
# _IOWR('!', 0, struct seccomp_notif) and _IOWR('!', 1, struct seccomp_notif_resp)
_NOTIF_RECV, _NOTIF_SEND, _NOTIF_SIZE = 0xC0502100, 0xC0182101, 80


def install_hold(calls):
    """Install, in the calling process (irreversible), a filter that stops ``calls`` (as in
    ``program``) of this process and its descendants until ``release``. Returns the listener
    fd; whoever holds it must answer every stopped call."""
    prog, _buf = _prog(program(calls, action=_RET_USER_NOTIF))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    fd = libc.syscall(ctypes.c_long(_NR_SECCOMP[platform.machine()]), ctypes.c_long(_SECCOMP_SET_MODE_FILTER),
                      ctypes.c_long(_FLAG_NEW_LISTENER), ctypes.byref(prog))
    if fd < 0:
        e = ctypes.get_errno()
        raise OSError(e, f"seccomp listener: {os.strerror(e)}")
    return fd


def held(listener):
    """Wait for the next stopped call: (notification id, pid of the stopped task)."""
    import fcntl
    buf = bytearray(_NOTIF_SIZE)
    fcntl.ioctl(listener, _NOTIF_RECV, buf, True)
    ident, pid = struct.unpack_from("=QI", buf)
    return ident, pid


def release(listener, ident):
    """Let the stopped call ``ident`` go on into the kernel as if never stopped."""
    import fcntl
    fcntl.ioctl(listener, _NOTIF_SEND, bytearray(struct.pack("=QqiI", ident, 0, 0, _FLAG_CONTINUE)), True)
