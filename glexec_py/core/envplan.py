"""The payload's environment and the ``-h`` text.  Pure: values in, values out.

gLExec 0.7+ semantics (glexec-interface.md section 4): everything is cleared except
``GLEXEC_*`` and the configured ``payload.preserve_env`` names; ``MALLOC_*`` and ``LD_*``
can never survive; HOME, USER, LOGNAME, PATH and X509_USER_PROXY are set by glexec.
"""

_FIXED = (b"HOME", b"USER", b"LOGNAME", b"PATH", b"X509_USER_PROXY")
_NEVER = (b"MALLOC_", b"LD_")


def payload_env(caller_env, *, preserve, home, user, path, x509_user_proxy):
    """Environment list (``NAME=VALUE`` bytes) for the payload.

    Caller entries kept: names starting with ``GLEXEC_`` and exact names in ``preserve``,
    never ``MALLOC_*``/``LD_*``, never the five names glexec sets, first occurrence only,
    entries without ``=`` or with an empty name dropped.  Then HOME, USER, LOGNAME (= user),
    PATH and X509_USER_PROXY (only when not None), in that order.
    """
    keep = frozenset(p.encode("ascii") if isinstance(p, str) else bytes(p) for p in preserve)
    seen = set()
    out = []
    for entry in caller_env:
        entry = bytes(entry)
        name, eq, _ = entry.partition(b"=")
        if not eq or not name or name in seen:
            continue
        seen.add(name)
        if name.startswith(_NEVER) or name in _FIXED:
            continue
        if name.startswith(b"GLEXEC_") or name in keep:
            out.append(entry)
    out.append(b"HOME=" + bytes(home))
    out.append(b"USER=" + bytes(user))
    out.append(b"LOGNAME=" + bytes(user))
    out.append(b"PATH=" + bytes(path))
    if x509_user_proxy is not None:
        out.append(b"X509_USER_PROXY=" + bytes(x509_user_proxy))
    return out


_USAGE = """\
usage: glexec <command> [args...]
Runs <command> as the local account the grid credential maps to.
  GLEXEC_CLIENT_CERT   proxy used for authorisation and mapping (required)
  GLEXEC_SOURCE_PROXY  proxy copied to the target account (default: GLEXEC_CLIENT_CERT)
  GLEXEC_TARGET_PROXY  where the copy goes; /dev/null = no copy
  GLEXEC_MODE          lcmaps_get_account (the only mode)
Options (first argument only): -h this help, -v/-V version.
Exit codes: the payload's own status; 201 caller or credential fault,
  202 system or configuration fault, 203 not authorised,
  204 the payload itself exited with 201-204, 126 payload could not be executed.
"""


def usage_text():
    """The ``glexec -h`` text (ends with a newline)."""
    return _USAGE
