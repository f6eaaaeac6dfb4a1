"""Caller whitelist (``callers.users`` / ``callers.groups``).  Pure.

An entry is an exact account/group name; ``.name`` stands for the pool accounts
``name`` followed by one or more ASCII digits (gLExec semantics).  There are no wildcards:
``*`` is refused by the config parser and would only match a name that is literally ``*``.
"""


def _matches(entry, name):
    if entry[:1] == "." and len(entry) > 1:
        prefix = entry[1:]
        rest = name[len(prefix):]
        return (name.startswith(prefix) and rest != "" and rest.isascii()
                and rest.isdigit())
    return entry == name


def _listed(entries, name):
    for e in entries:
        if _matches(e, name):
            return e
    return None


def listed(entries, name):
    """True if ``name`` matches one of ``entries`` (exact, or ``.prefix`` + digits).
    Use it for ``callers.omission_private_key`` too, which accepts the same entries."""
    return _listed(entries, name) is not None


def caller_allowed(users, groups, caller_user, caller_groups):
    """``(allowed, reason)``: allowed if the caller's account name matches ``users`` or one
    of its group names (primary + supplementary) matches ``groups``."""
    e = _listed(users, caller_user)
    if e is not None:
        return True, f"caller {caller_user} matches {e} in callers.users"
    for g in caller_groups:
        e = _listed(groups, g)
        if e is not None:
            return True, f"caller {caller_user} is in group {g}, which matches {e} in callers.groups"
    return False, f"caller {caller_user} is not in callers.users or callers.groups"
