"""The target account through the site's PAM service (csrc/pam.c): account management
before the grant, a session around the payload.  Never pam_authenticate, never a
conversation.

Where the session is opened: in the engine, after the plan is made and before the grant
record, because pam_limits calls setrlimit (and setpriority) on the process that opens
the session, and the payload is started from the engine by the native spawn code, which
sets the plan's rlimits (the caller's) in the child.  So the engine reads every limit
before and after pam_open_session: for a resource pam_limits changed, the payload gets
the stricter of the caller's limit and PAM's (``core.pamstack.stricter_limit``: PAM may
lower, never raise, because pam_limits resets every resource limits.conf does not name to
pid 1's limits and would otherwise lift the batch job's limits); every other resource
keeps the caller's value; the engine's own limits are put back right away.
A nice value pam_limits sets stays on the engine and is inherited by the payload.
In linger mode the session is closed after the payload ended; with ``linger: false``
glexec is replaced by the payload and the session is never closed (pam_limits has
nothing to close).

Lazy imports: resource (only when a session is opened).
"""

from glexec_py.errors import NotAuthorized, SystemFault

PAM_DIR = "/etc/pam.d"
TTY = b"glexec"      # PAM_TTY: a constant, so pam_access never looks at the caller's stdin
_MAX_INCLUDES = 16
# Results that mean "this account may not" (203); anything else is a system fault (202).
_REFUSALS = ("PAM_ACCT_EXPIRED", "PAM_AUTHTOK_EXPIRED", "PAM_PERM_DENIED", "PAM_USER_UNKNOWN",
             "PAM_AUTH_ERR", "PAM_CONV_ERR")


def check_service(service, pam_dir=PAM_DIR):
    """Runs as: root (reads /etc/pam.d).  The service file and every file it includes
    must exist, be root-owned and not writable by group/others (its directory chain too),
    and name no forbidden module (pam_systemd).  A missing file is a 202: Linux-PAM would
    silently fall back to /etc/pam.d/other, whose Debian stack includes pam_systemd."""
    from glexec_py.core import pamstack
    from glexec_py.effects import trust
    todo, seen = [service.encode()], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if len(seen) > _MAX_INCLUDES or b"/" in name or name.startswith(b"."):
            raise SystemFault("pam_service", "glexec: the PAM service includes too many or "
                              "unsafe files", service=service, include=name)
        path = f"{pam_dir}/{name.decode('latin-1')}"
        try:
            trust.check_file(path)
            with open(path, "rb") as f:
                text = f.read(1 << 16)
        except FileNotFoundError:
            raise SystemFault("pam_service", "glexec: the PAM service file is missing",
                              service=service, path=path) from None
        except OSError as e:
            raise SystemFault("pam_service", f"glexec: cannot read the PAM service: {e.strerror}",
                              service=service, path=path) from None
        modules, includes = pamstack.parse_stack(text)
        bad = pamstack.forbidden_in(modules)
        if bad:
            raise SystemFault("pam_service", "glexec: the PAM service uses pam_systemd "
                              "(it would move the payload out of the batch job)",
                              service=service, path=path, modules=[m.decode() for m in bad])
        todo.extend(includes)


class Pam:
    """Runs as: root.

    One PAM transaction for ``user`` (the target) on behalf of ``ruser`` (the caller):
    ``account()``, then optionally ``open_session(rlimits)``, ``close_session()``,
    always ``end()``."""

    def __init__(self, service, user, ruser):
        from glexec_py._native import ffi, lib
        self._ffi, self._lib = ffi, lib
        self.service = service
        self.session_open = False
        out = ffi.new("gx_pam **")
        rc = lib.gx_pam_start(service.encode(), user.encode("utf-8", "surrogateescape"),
                              ruser.encode("utf-8", "surrogateescape"), TTY, out)
        if rc != 0:
            raise SystemFault("pam_start", "glexec: cannot start PAM", service=service,
                              pam_code=self._code(rc))
        self._h = out[0]
        self._last = 0

    def _code(self, rc):
        return self._ffi.string(self._lib.gx_pam_code(rc)).decode()

    def _fail(self, step, rc):
        code = self._code(rc)
        text = self._ffi.string(self._lib.gx_pam_strerror(self._h, rc)).decode("utf-8", "replace")
        self._last = rc
        detail = dict(service=self.service, step=step, pam_code=code, pam_error=text)
        if code in _REFUSALS:
            return NotAuthorized(f"pam_{step}", f"glexec: the mapped account is not allowed "
                                 f"here (PAM {step}: {text})", **detail)
        return SystemFault(f"pam_{step}", f"glexec: PAM {step} failed: {text}", **detail)

    def account(self):
        """pam_acct_mgmt.  Returns the PAM code name on success; PAM_NEW_AUTHTOK_REQD
        (password aged out, but not beyond its inactivity period) is accepted: nothing
        here uses the password, and there is nobody to change it.  NotAuthorized (203)
        for a refusal (expired, pam_access ...), SystemFault (202) for a broken stack."""
        rc = self._lib.gx_pam_acct_mgmt(self._h)
        code = self._code(rc)
        if rc == 0 or code == "PAM_NEW_AUTHTOK_REQD":
            return code
        raise self._fail("account", rc)

    def open_session(self, rlimits):
        """pam_open_session in this process.  Returns ``(rlimits for the payload,
        {resource: (soft, hard)} that PAM lowered for it)``; this process's limits are
        restored."""
        import resource
        from glexec_py.core.pamstack import stricter_limit
        names = range(resource.RLIMIT_RTTIME + 1)    # every Linux resource (RLIM_NLIMITS = 16)
        before = {r: resource.getrlimit(r) for r in names}
        rc = self._lib.gx_pam_open_session(self._h)
        after = {r: resource.getrlimit(r) for r in names}
        for r in names:
            if after[r] != before[r]:
                try:
                    resource.setrlimit(r, before[r])
                except (OSError, ValueError):
                    pass  # a hard limit PAM lowered cannot be raised without CAP_SYS_RESOURCE
        if rc != 0:
            raise self._fail("session", rc)
        self.session_open = True
        merged = dict(rlimits)
        for r in names:
            if after[r] != before[r]:
                merged[r] = stricter_limit(rlimits.get(r, before[r]), after[r])
        lowered = {r: merged[r] for r in names if merged.get(r) != rlimits.get(r, merged.get(r))}
        return merged, lowered

    def close_session(self):
        """pam_close_session; returns the PAM code name (failures change nothing now)."""
        if not self.session_open:
            return None
        self.session_open = False
        rc = self._lib.gx_pam_close_session(self._h)
        self._last = rc
        return self._code(rc)

    def end(self):
        if self._h is not None:
            self._lib.gx_pam_end(self._h, self._last)
            self._h = None
