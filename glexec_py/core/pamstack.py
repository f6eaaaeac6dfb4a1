"""What a PAM service file (Linux-PAM /etc/pam.d syntax) pulls in.  Pure: works on text.

The engine refuses a service whose stack uses a module that would take the payload out of
the batch job: ``pam_systemd`` registers a logind session and moves the calling process
(and so the payload) into a systemd scope, out of the job's cgroup (DESIGN.md section 4).
Includes (``@include name``, ``<type> include name``, ``<type> substack name``) are
returned so the caller can check those files too.
"""

__all__ = ["FORBIDDEN_MODULES", "parse_stack", "forbidden_in", "stricter_limit"]

FORBIDDEN_MODULES = ("pam_systemd.so",)
_TYPES = ("account", "auth", "password", "session")


def parse_stack(text: bytes):
    """``(modules, includes)``: module basenames (bytes) and included service names, in file
    order.  Comments (``#`` to the end of the line) and line continuations (``\\``) follow
    Linux-PAM; lines of other types than account/auth/password/session are ignored."""
    modules, includes = [], []
    for line in bytes(text).replace(b"\\\n", b" ").split(b"\n"):
        toks = line.split(b"#", 1)[0].split()
        if not toks:
            continue
        if toks[0] == b"@include":
            includes.extend(toks[1:2])
            continue
        if toks[0].lstrip(b"-").decode("latin-1") not in _TYPES or len(toks) < 3:
            continue
        i = 1
        if toks[1].startswith(b"["):                   # [value=action ...] control
            while i < len(toks) and not toks[i].endswith(b"]"):
                i += 1
        if i + 1 >= len(toks):
            continue
        control, target = toks[1], toks[i + 1]
        if control in (b"include", b"substack"):
            includes.append(target)
        else:
            modules.append(target.rsplit(b"/", 1)[-1])
    return modules, includes


def forbidden_in(modules):
    """The forbidden module names among ``modules`` (bytes basenames), in order."""
    bad = tuple(m.encode() for m in FORBIDDEN_MODULES)
    return [m for m in modules if m in bad]


def stricter_limit(caller, pam):
    """The payload's ``(soft, hard)`` for a resource pam_limits changed: the stricter of
    the caller's limit and PAM's (-1 = unlimited), soft never above hard.

    Why not simply PAM's: Linux-PAM's pam_limits (1.5, as measured here) resets every
    resource that limits.conf does not name to pid 1's limits, which would lift limits the
    batch system put on the job (RLIMIT_AS, CPU ...); so PAM may lower, never raise, what
    the caller had (the rule csrc/plan_run.c keeps for the shim's changes too)."""
    def low(a, b):
        return b if a < 0 else a if b < 0 else min(a, b)
    hard = low(caller[1], pam[1])
    soft = low(caller[0], pam[0])
    if hard >= 0 and (soft < 0 or soft > hard):
        soft = hard
    return soft, hard
