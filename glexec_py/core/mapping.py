"""Which local account an identity maps to, and why.  Pure: works on parsed files and
plain values.  The engine's mapping step (engine.map_identity) and ``glexec-check explain``
both call these functions, so an explanation is the decision, not a second reading of it.

The rules (LCMAPS's plugins over one grid-mapfile, reference/lcmaps-semantics.md §2):

- ``mapping.order`` names the sources, tried in that order; the first that finds a line
  decides, later ones are not looked at.
- ``local`` / ``pool`` look up the identity's mapping name (the oneline DN, or "iss,sub"
  for a token); ``voms_local`` / ``voms_pool`` look up each verified FQAN in AC order.
- ``local`` matches the subject exactly; ``voms_local``, ``pool`` and ``voms_pool`` also
  as an fnmatch pattern.  A local source takes the first matching line that has a mapping
  not starting with ``.``; a pool source the first matching line that has a ``.pool``.
- A bare ``.`` (empty pool name) is no mapping: the next key / source is tried.
- With a groupmapfile, a ``voms_*`` decision carries LCMAPS voms_localgroup's groups
  (``voms_groups``): the first FQAN's group is the primary gid, later ones secondary.
"""

from glexec_py.core import gridmap

LOCAL_WILDCARDS = {"local": False, "voms_local": True}


class Attempt:
    """One lookup: ``source``, ``key`` (bytes), ``line`` (the GridmapLine that gave a
    mapping, or None) and ``value`` (the account or pool name, bytes, or None)."""

    __slots__ = ("source", "key", "line", "value")

    def __init__(self, source, key, line, value):
        self.source, self.key, self.line, self.value = source, key, line, value

    @property
    def matched(self):
        return bool(self.value)

    def __repr__(self):
        return f"Attempt({self.source!r}, {self.key!r}, {self.line!r}, {self.value!r})"


class Mapping:
    """The decision: ``source``, ``key``, ``kind`` ("local", "pool" or None = no mapping),
    ``name`` (account or pool, bytes), ``line`` (its GridmapLine), ``voms_groups`` (run
    voms_localgroup over ``group_keys``), ``trace`` (every Attempt, in order)."""

    __slots__ = ("source", "key", "kind", "name", "line", "voms_groups", "group_keys", "trace")

    def __init__(self, trace, group_keys, grouped):
        self.trace = tuple(trace)
        self.group_keys = group_keys
        last = self.trace[-1] if self.trace and self.trace[-1].matched else None
        self.source = last.source if last else None
        self.key = last.key if last else None
        self.kind = None if last is None else ("local" if last.source.endswith("local") else "pool")
        self.name = last.value if last else None
        self.line = last.line if last else None
        self.voms_groups = bool(last and grouped and last.source.startswith("voms_"))


def lookup(lines, source, key):
    """One source's lookup of one key: an Attempt."""
    if source.endswith("local"):
        found = gridmap.local_line(lines, key, wildcards=LOCAL_WILDCARDS[source])
    else:
        found = gridmap.pool_line(lines, key)
    return Attempt(source, key, *found) if found else Attempt(source, key, None, None)


def decide(lines, order, subject, group_keys, *, grouped=False):
    """The mapping for an identity: ``lines`` the parsed gridmapfile, ``order`` the
    configured sources, ``subject`` the mapping name (bytes), ``group_keys`` the FQANs /
    token groups (bytes, in order), ``grouped``: a groupmapfile is configured."""
    trace = []
    for source in order:
        for key in (group_keys if source.startswith("voms_") else (subject,)):
            attempt = lookup(lines, source, key)
            trace.append(attempt)
            if attempt.matched:
                return Mapping(trace, group_keys, grouped)
    return Mapping(trace, group_keys, grouped)


def wildcards_of(source):
    """Does ``source`` compare the key as an fnmatch pattern?"""
    return LOCAL_WILDCARDS.get(source, True)


# --- the caller's mapcount ----------------------------------------------------------------

def mapcount(raw, limit):
    """GLEXEC_MAPCOUNT (bytes or None) -> 0 (unset: the plain lease) or 1..limit;
    ValueError for anything else."""
    if raw is None:
        return 0
    if not (raw.isdigit() and len(raw) <= 4 and 1 <= int(raw) <= limit):
        raise ValueError(f"GLEXEC_MAPCOUNT must be a number from 1 to {limit}")
    return int(raw)


# --- which accounts and groups may be targets ---------------------------------------------

def account_refusal(name, uid, gid, gids, group_names, mapping_cfg):
    """Why account ``name`` (uid, primary gid, all gids, their names) may not be a target:
    ``None``, or ``(message, detail)``: root, a uid outside [min_uid, max_uid], gid 0 or a
    forbidden group among its groups."""
    if uid == 0 or not mapping_cfg.min_uid <= uid <= mapping_cfg.max_uid:
        return ("glexec: mapped account has a uid outside the allowed range", {"account": name, "uid": uid})
    if gid == 0 or 0 in gids or set(mapping_cfg.forbidden_groups).intersection(group_names):
        return ("glexec: mapped account is in a privileged group", {"account": name, "groups": list(group_names)})
    return None


def voms_group_name_problem(raw):
    """A groupmapfile group name (bytes) that cannot be a group name: the reason, or None."""
    if not raw or len(raw) > 255 or not all(0x20 < c < 0x7F and c not in b":/" for c in raw):
        return "glexec: the groupmapfile names an invalid group"
    return None


def voms_group_privileged(text, gid, canonical, mapping_cfg):
    """Is the groupmapfile's group (name given, its gid, the gid's own name) privileged?"""
    forbidden = set(mapping_cfg.forbidden_groups)
    return gid == 0 or text in forbidden or canonical in forbidden


class GroupsRefused(Exception):
    """voms_localgroup refused for a reason of the identity: ``reason``, ``what``, ``detail``."""

    def __init__(self, reason, what, **detail):
        super().__init__(what)
        self.reason, self.what, self.detail = reason, what, detail


def voms_groups(lines, fqans, resolve, *, mapall, mapmin):
    """LCMAPS voms_localgroup over the FQANs (AC order; ``resolve(name) -> gid``):
    ``(found, primary gid, (secondary gids...))`` where ``found`` names the groups
    (``{"primary": [...], "secondary": [...]}``).  GroupsRefused: no FQANs, ``mapall``
    unmet, fewer than ``mapmin`` groups, or no primary group (the first FQAN maps to none:
    LCMAPS's return-account call fails without a primary gid)."""
    try:
        primary, secondary = gridmap.voms_localgroup(lines, fqans, resolve, mapall=mapall, mapmin=mapmin)
    except gridmap.GroupMapRefused as e:
        raise GroupsRefused(e.reason, e.what, **e.detail) from None
    found = {"primary": [n.decode("ascii") for n, _ in primary],
             "secondary": [n.decode("ascii") for n, _ in secondary]}
    if not primary:
        raise GroupsRefused("no_primary_group", "glexec: the first VOMS attribute maps to no group "
                            "(no primary group)", fqan=fqans[0], groups=found)
    return found, primary[0][1], tuple(g for _, g in secondary)


# --- pool leases --------------------------------------------------------------------------

def lease_gids(primary, secondary, include_secondary):
    """The gids whose names a voms_pool lease carries (``lease_secondary_groups``)."""
    return (primary, *secondary) if include_secondary else (primary,)


def lease_key(identity):
    """The text a pool lease is named from: the oneline DN, or a token's escaped "iss,sub"."""
    name = identity.mapping_name
    return token_lease_key(name) if identity.kind == "jwt" else name


def token_lease_key(name):
    """A token's "iss,sub" made safe for LCMAPS's lower-casing lease names: upper-case
    letters, '^' and non-ASCII bytes are escaped first (injective), so two subjects that
    differ only in case never share a lease. DN leases start with "%2f", these never do."""
    out = bytearray()
    for b in name:
        if 0x41 <= b <= 0x5A:
            out += b"^" + bytes((b + 0x20,))
        elif b == 0x5E or b >= 0x80:
            out += b"^%02x" % b
        else:
            out.append(b)
    return bytes(out)


def lease_owner(identity, text):
    """The lease owner (core.leases.LeaseOwner): the identity key, and whether the LCMAPS
    input ``text`` reads back as exactly this identity (the oneline DN parses to the
    certificate's own canonical DN; a token issuer has no ',' to blur "iss,sub")."""
    from glexec_py.core.leases import LeaseOwner
    if identity.kind == "jwt":
        return LeaseOwner(identity.key, text, "," not in identity.issuer)

    def readable():
        from glexec_py.core import dn
        try:
            return dn.canonical(dn.parse_slash(identity.subject)) == identity.canonical
        except dn.DNError:
            return False
    return LeaseOwner(identity.key, text, readable)
