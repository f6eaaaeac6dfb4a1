"""FQANs (``/vo[/group...][/Role=r][/Capability=c]``): parsing and the canonical form.  Pure.

Kept apart from ``bans`` (which re-exports these names) so that the VOMS parser
(``core.voms``) does not load the ban machinery on every VOMS call.
"""


class FQANError(ValueError):
    """Not a well-formed FQAN."""


_BAD_NAME = frozenset("/=*?[]\\ \t")


def _name_ok(s):
    if not s or not s.isascii() or not s.isprintable():
        return False
    for c in s:
        if c in _BAD_NAME:
            return False
    return True


def parse_fqan(s):
    """``(groups, role, capability)`` of ``/vo[/group...][/Role=r][/Capability=c]``;
    ``groups`` starts with the VO; a missing role/capability is ``"NULL"``."""
    if not isinstance(s, str) or len(s) < 2 or s[0] != "/":
        raise FQANError(f"FQAN must start with '/': {s!r}")
    parts = s[1:].split("/")
    groups = []
    role = cap = None
    for p in parts:
        if p.startswith("Role="):
            if role is not None or cap is not None or not groups:
                raise FQANError(f"misplaced Role in FQAN {s!r}")
            role = p[5:]
            if not _name_ok(role):
                raise FQANError(f"bad role in FQAN {s!r}")
        elif p.startswith("Capability="):
            if cap is not None or not groups:
                raise FQANError(f"misplaced Capability in FQAN {s!r}")
            cap = p[11:]
            if not _name_ok(cap):
                raise FQANError(f"bad capability in FQAN {s!r}")
        else:
            if role is not None or cap is not None:
                raise FQANError(f"group after Role/Capability in FQAN {s!r}")
            if not _name_ok(p):
                raise FQANError(f"bad group name {p!r} in FQAN {s!r}")
            groups.append(p)
    if not groups:
        raise FQANError(f"FQAN without VO: {s!r}")
    return tuple(groups), role or "NULL", cap or "NULL"


def _render_fqan(groups, role, cap):
    return "/" + "/".join(groups) + f"/Role={role}/Capability={cap}"


def _short_fqan(groups, role, cap):
    s = "/" + "/".join(groups)
    if cap != "NULL":
        return s + f"/Role={role}/Capability={cap}"
    if role != "NULL":
        return s + f"/Role={role}"
    return s


def canonical_fqan(s):
    """The full form VOMS returns: ``/vo``, ``/vo/Role=NULL`` and
    ``/vo/Role=NULL/Capability=NULL`` all become ``/vo/Role=NULL/Capability=NULL``;
    ``/vo/g/Role=x`` becomes ``/vo/g/Role=x/Capability=NULL``.  Raises ``FQANError``."""
    return _render_fqan(*parse_fqan(s))
