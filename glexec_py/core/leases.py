"""Gridmapdir lease naming and the lease-store checker, bug-compatible with the LCMAPS
poolaccount plugins (lcmaps-plugins-basic 1.7.1, ``lcmaps_gridmapdir()``;
reference/lcmaps-semantics.md section 4).  Pure: no file system access.

On-disk format (LCMAPS's, unchanged): the gridmapdir holds one empty regular file per pool
account (``<pool><digits>``); a lease is a second hard link to it whose name is the encoded
identity.  Link count 1 = free, 2 = leased, > 2 = corrupt.

Lease name (``lease_name``), exactly as the C code builds it:

1. raw = DN; with groups (voms_poolaccount): DN ``\\001`` ``g1:g2:...``;
   with a mapcount m > 0: append ``\\001mapcount=%04d``, or ``:mapcount=%04d`` if the raw
   string already holds a ``\\001``.
2. urlencode into a zeroed buffer of ``3*len(raw)+1`` bytes with a write index j:
   ASCII alphanumeric -> lower case, one byte, j += 1 (no terminator written);
   ``\\001`` -> ``:`` then ``strncpy`` of the rest verbatim (zero-padded to the end), stop;
   any other byte -> ``snprintf(buf+j, size-j, "%%%02x", (signed char)c)``, j += 3.
   A byte >= 0x80 is sign-extended, so snprintf writes ``%ffffffXX`` plus NUL (9+1 bytes)
   although j only advances by 3: the next write lands inside it.  The result is the C
   string (up to the first NUL).  Example: ``André`` -> ``andr%ff%ffffffa9``.
   Verified against the real plugin (tests/leases/test_lcmaps_side_by_side.py).

Consequences kept on purpose (compatibility, ``lease_name`` alone): letters are lower-cased
(DNs differing only in case share a name) and non-ASCII DNs can collide; the oneline text
itself is ambiguous (a ``/`` inside a value vs two RDNs, ``\\xHH`` escapes vs a literal
backslash, control bytes).

Owners (docs/leases.md, "Who owns a lease"): a name is therefore never the identity.  Every
lease glexec-py makes records its owner -- ``LeaseOwner.key``, the canonical identity from
the verified credential -- with the groups and mapcount, and is reused only by exactly that
key (``claim``).  A different identity whose LCMAPS name is taken gets its own lease under
``alternate_name``: the LCMAPS name's encoded part + ``~`` + ``owner_digest`` (+ the
``:groups``/``:mapcount`` tail), a name LCMAPS can never produce (its encoded part is only
``[0-9a-z%]``) and that names its owner by a 128-bit hash.
"""

__all__ = ["lease_name", "urlencode", "pool_member", "skip_entry", "is_lease_candidate",
           "entry_unsafe", "caller_limit", "live_leases_of", "Finding", "plan_fsck", "TMP_PREFIX",
           "MAX_MAPCOUNT", "LeaseOwner", "owner_digest", "alternate_name", "claim"]

MAX_MAPCOUNT = 9999          # -max_mappings_per_credential upper bound in LCMAPS
TMP_PREFIX = ".tmp."         # temporary files in the metadata sidecar directory

_ALNUM = frozenset(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_DIGITS = frozenset(b"0123456789")


def urlencode(raw: bytes) -> bytes:
    """``gridmapdir_urlencode`` of lcmaps_gridmapdir.c, emulating the C buffer."""
    raw = bytes(raw)
    size = 3 * len(raw) + 1
    buf = bytearray(size)
    j = 0
    for i, c in enumerate(raw):
        if c in _ALNUM:
            buf[j] = c | 0x20 if 65 <= c <= 90 else c
            j += 1
        elif c == 1:
            buf[j] = 0x3A
            rest = raw[i + 1:]
            n = size - 1 - j                # strncpy(buf+j+1, rest, 3*len - j)
            chunk = rest[:n]
            buf[j + 1:j + 1 + len(chunk)] = chunk
            for k in range(j + 1 + len(chunk), j + 1 + n):
                buf[k] = 0
            break
        else:
            text = b"%%%02x" % (c if c < 0x80 else c - 256 + (1 << 32))
            text = text[:size - j - 1] + b"\0"     # snprintf(buf+j, size-j, ...)
            buf[j:j + len(text)] = text
            j += 3
    end = buf.find(0)
    return bytes(buf if end < 0 else buf[:end])


def lease_name(dn_oneline: bytes, groups: tuple = (), mapcount: int = 0) -> bytes:
    """The lease (hard link) name LCMAPS uses for this identity.

    ``dn_oneline``: the subject DN as LCMAPS gets it (OpenSSL oneline, bytes).
    ``groups``: group names for voms_poolaccount-style leases (primary first, then
    secondary, in registration order; copied verbatim after a ``:``).
    ``mapcount``: 0 (or -1) = plain lease; 1..9999 -> ``:mapcount=%04d`` suffix.
    Raises ValueError for an empty DN, a NUL byte, or a mapcount outside -1..9999.
    """
    dn = bytes(dn_oneline)
    if not dn:
        raise ValueError("empty DN")
    groups = tuple(bytes(g) for g in groups)
    if b"\0" in dn or any(b"\0" in g for g in groups):
        raise ValueError("NUL byte in DN or group name")
    if not isinstance(mapcount, int) or isinstance(mapcount, bool) \
            or not -1 <= mapcount <= MAX_MAPCOUNT:
        raise ValueError(f"mapcount {mapcount!r} outside -1..{MAX_MAPCOUNT}")
    raw = dn
    if groups:
        raw += b"\x01" + b":".join(groups)
    if mapcount > 0:
        raw += (b":" if b"\x01" in raw else b"\x01") + b"mapcount=%04d" % mapcount
    return urlencode(raw)


def skip_entry(name: bytes) -> bool:
    """LCMAPS's directory-scan filter: names starting with ``%`` or ``.``, ``root``, and
    names containing ``~`` are never pool entries."""
    name = bytes(name)
    return (not name or name[:1] in (b"%", b".") or name == b"root" or b"~" in name)


_ACCOUNT_CHARS = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def inferred_pool(name: bytes):
    """The pool a gridmapdir name belongs to when no pools are configured, or None: an entry
    of the scan filter that looks like an account name (only ``[A-Za-z0-9._-]``) and ends in
    digits; its pool is the name without them.  Leases never qualify: a DN or group lease
    holds ``%`` escapes or ``:``, a token lease "iss,sub" (``https%3a...``) too — so a token
    lease ending in ``:mapcount=0003`` or in a digit of its subject is not taken for a pool."""
    name = bytes(name)
    if skip_entry(name) or not _ACCOUNT_CHARS.issuperset(name):
        return None
    prefix = name.rstrip(b"0123456789")
    return prefix if prefix and prefix != name else None


def pool_member(entry: bytes, pool: bytes, strict: bool = True) -> bool:
    """Is ``entry`` an account of ``pool``?  Strict (LCMAPS default
    ``-strict_poolprefix_match yes``): pool prefix followed by one or more ASCII digits.
    Non-strict (legacy): any name starting with the prefix.  The scan filter
    (``skip_entry``) applies in both modes; an empty pool name never matches."""
    entry, pool = bytes(entry), bytes(pool)
    if not pool or skip_entry(entry) or not entry.startswith(pool):
        return False
    if not strict:
        return True
    rest = entry[len(pool):]
    return bool(rest) and all(c in _DIGITS for c in rest)


def is_lease_candidate(name: bytes, pools, strict: bool = True) -> bool:
    """A name in the gridmapdir that is not a pool entry of any known pool and not one of
    our dot-files: treated as a (possible) lease by the checker."""
    name = bytes(name)
    if name.startswith(b"."):
        return False
    return not any(pool_member(name, p, strict) for p in pools)


def entry_unsafe(uid: int, mode: int):
    """Why a pool entry (the inode a lease shares) cannot be trusted, or None.  The same
    rule as for the gridmapdir itself: owned by root, not writable by group or others.
    Its owner could set its mtime (the lease's "last use", which expiry and the pruner
    trust) to any value, a writer could at least refresh it; an entry a user could write
    could also be hard-linked by that user (protected_hardlinks lets writers link)."""
    if uid != 0:
        return f"owned by uid {uid}, not root"
    if mode & 0o022:
        return f"writable by group or others (mode {mode & 0o7777:04o})"
    return None


def caller_limit(setting, pool_size: int):
    """``mapping.max_leases_per_caller`` for a pool of ``pool_size`` entries: the number of
    live leases one caller may hold in it, or None (unlimited, setting 0).  ``"N%"`` is N
    percent of the pool, rounded down, at least 1."""
    if isinstance(setting, str):
        return max(1, pool_size * int(setting.rstrip("%")) // 100)
    return setting or None


def live_leases_of(rows, caller: int) -> int:
    """How many live leases ``caller`` (uid) holds, from ``(record, linked)`` rows of one
    pool: ``record`` the metadata dict (None = unreadable or absent), ``linked`` whether
    the record's lease is on disk right now (lease and entry the same inode, link count
    2).  Live = linked and in state "leased": a draining lease is on its way back to the
    pool (expiry drains), a record without its lease is a crash leftover, and a lease
    without a ``caller`` (made by LCMAPS, adopted, or older) counts for nobody."""
    return sum(1 for rec, linked in rows
               if linked and rec and rec.get("state") == "leased" and rec.get("caller") == caller)


class Finding:
    """One problem in a lease store.

    kind      stable code (see ``plan_fsck``)
    severity  "error" (breaks the bijection or leaves junk) / "warning" / "info"
    names     the gridmapdir (or sidecar) names concerned, bytes
    ino       inode concerned, or None
    why       one human-readable sentence
    action    what ``repair`` does: "unlink_lease", "remove_tmp", "remove_meta",
              "write_meta", "manual" (repair refuses; an administrator decides)
    """

    __slots__ = ("kind", "severity", "names", "ino", "why", "action")

    def __init__(self, kind, severity, names, ino, why, action):
        self.kind = kind
        self.severity = severity
        self.names = tuple(bytes(n) for n in names)
        self.ino = ino
        self.why = why
        self.action = action

    def as_dict(self):
        return {"kind": self.kind, "severity": self.severity,
                "names": [n.decode("latin-1") for n in self.names], "ino": self.ino,
                "why": self.why, "action": self.action}

    def __eq__(self, other):
        if type(other) is not Finding:
            return NotImplemented
        return self.as_dict() == other.as_dict()

    __hash__ = None

    def __repr__(self):
        return (f"Finding({self.kind!r}, {self.severity!r}, {self.names!r}, {self.ino!r}, "
                f"{self.why!r}, {self.action!r})")


def plan_fsck(entries, pools, *, strict=True, meta=None, sidecar=(), owners=None):
    """Check a gridmapdir snapshot; returns findings, most severe first, deterministic.

    ``entries``: ``(name: bytes, ino: int, nlink: int, is_reg: bool)`` for every name in the
    gridmapdir (lstat, never following symlinks), dot-files may be included (ignored).
    ``pools``: the pool names (bytes, without the leading dot) the site uses; a name that is
    no member of any of them is considered a lease.
    ``meta``: optional ``{account: record-or-None}`` from the metadata sidecar (record = dict
    with at least ``lease`` (bytes) and ``state``; None = unreadable/corrupt file).
    ``sidecar``: names present in the sidecar directory (to find temp leftovers).
    ``owners``: optional ``{name: (uid, mode)}`` (lstat) for the pool entries, checked
    with ``entry_unsafe`` (kind ``pool_entry_unsafe``: never leased, a lease on it refused).

    Kinds: ``lease_not_regular``, ``pool_entry_not_regular``, ``solitary_lease`` (lease with
    link count 1: half made, or its pool entry was removed), ``pool_entry_overlinked``
    (entry with link count > 2), ``pool_entries_linked`` (two pool entries share an inode),
    ``unknown_entry`` (a name of no given pool that is no lease), ``double_lease`` (two or more leases on one entry),
    ``orphan_lease`` (a lease whose inode matches no pool entry), ``link_count_mismatch``
    (names sharing an inode disagree with its link count: links outside the directory),
    ``tmp_leftover``, ``pool_entry_unsafe``, ``meta_corrupt``, ``meta_orphan`` (metadata for an account without a
    lease), ``meta_mismatch`` (metadata names another lease), ``meta_missing`` (lease
    without metadata, e.g. made by LCMAPS or a crash after ``link``),
    ``meta_owner_mismatch`` (the recorded owner is malformed, or the lease's name is neither
    the LCMAPS name of the recorded text nor that owner's ``alternate_name``: an edited
    record, never repaired automatically), ``owner_duplicate`` (one owner key holds two
    leases for the same groups and mapcount).
    """
    pools = tuple(bytes(p) for p in pools)
    findings = []
    by_ino = {}
    pool_entries = {}
    leases = {}
    unknown = {}
    tilde = {}      # alternate names of token leases ("https...~digest"); else ignored junk
    for name, ino, nlink, is_reg in entries:
        name = bytes(name)
        if name.startswith(b"."):
            continue
        by_ino.setdefault(ino, []).append(name)
        if not is_lease_candidate(name, pools, strict):
            pool_entries[name] = (ino, nlink, is_reg)
        elif name.startswith(b"%"):
            leases[name] = (ino, nlink, is_reg)
        elif not skip_entry(name):
            unknown[name] = (ino, nlink, is_reg)
        elif b"~" in name and name != b"root":
            tilde[name] = (ino, nlink, is_reg)
    # A name that is neither a pool entry nor %-encoded is a lease only if it shares its
    # inode with a pool entry (a lease of a DN not starting with '/'); otherwise it may be
    # an entry of a pool the caller did not list: reported, never touched.
    pool_inos = {v[0] for v in pool_entries.values()}
    leases.update((n, v) for n, v in tilde.items() if v[0] in pool_inos)
    for name, v in sorted(unknown.items()):
        if v[0] in pool_inos:
            leases[name] = v
        else:
            findings.append(Finding("unknown_entry", "info", [name], v[0],
                                    "neither a pool entry of the given pools nor a lease: "
                                    "an unlisted pool or junk; not touched", "manual"))

    account_of_lease = {}
    for name, (ino, nlink, is_reg) in pool_entries.items():
        if not is_reg:
            findings.append(Finding("pool_entry_not_regular", "error", [name], ino,
                                    "pool entry is not a regular file (never leased)",
                                    "manual"))
            continue
        if owners is not None and name in owners:
            why = entry_unsafe(*owners[name])
            if why:
                findings.append(Finding("pool_entry_unsafe", "error", [name], ino,
                                        f"pool entry {why}: never leased, a lease on it "
                                        "is refused (its mtime is the lease's last use)",
                                        "manual"))
        others = sorted(n for n in by_ino[ino] if n != name)
        lease_links = [n for n in others if n in leases]
        twins = [n for n in others if n in pool_entries]
        if twins:
            if name < min(twins):
                findings.append(Finding("pool_entries_linked", "error", [name] + twins, ino,
                                        "pool entries are hard links of each other: one "
                                        "lease would hold several accounts", "manual"))
            continue
        if nlink > 2:
            findings.append(Finding("pool_entry_overlinked", "error", [name] + others, ino,
                                    f"pool entry has link count {nlink} (> 2): more than one "
                                    "name holds this account", "manual"))
        if len(lease_links) > 1:
            findings.append(Finding("double_lease", "error", [name] + sorted(lease_links), ino,
                                    f"{len(lease_links)} leases share one pool account",
                                    "manual"))
        if len(by_ino[ino]) != nlink and nlink <= 2:
            findings.append(Finding("link_count_mismatch", "warning", [name] + others, ino,
                                    f"link count {nlink} but {len(by_ino[ino])} names in the "
                                    "gridmapdir (a link outside it, or a change during the "
                                    "scan)", "manual"))
        for lease in lease_links:
            lst = leases[lease]
            if lst[2] and lst[1] == 2 and nlink == 2:
                account_of_lease[lease] = name

    for name, (ino, nlink, is_reg) in sorted(leases.items()):
        if not is_reg:
            findings.append(Finding("lease_not_regular", "error", [name], ino,
                                    "lease name is not a regular file (symlink, directory, "
                                    "...): not touched", "manual"))
        elif nlink == 1:
            findings.append(Finding("solitary_lease", "error", [name], ino,
                                    "lease with link count 1: a half-made lease or its pool "
                                    "entry was removed; LCMAPS would remove it on next use",
                                    "unlink_lease"))
        elif name not in account_of_lease and not any(
                n in pool_entries for n in by_ino[ino]):
            other = sorted(n for n in by_ino[ino] if n != name)
            safe = all(n.startswith(b"%") for n in other)
            findings.append(Finding("orphan_lease", "error", [name] + other, ino,
                                    "lease whose inode matches no pool entry of the given "
                                    f"pools (other names: {other!r})",
                                    "unlink_lease" if safe else "manual"))

    if meta is not None:
        owners = {}
        lease_of_account = {a: l for l, a in account_of_lease.items()}
        for account in sorted(meta):
            rec = meta[account]
            account = bytes(account)
            if rec is None:
                findings.append(Finding("meta_corrupt", "warning", [account], None,
                                        "unreadable metadata file", "remove_meta"))
                continue
            real = lease_of_account.get(account)
            if real is None:
                findings.append(Finding("meta_orphan", "warning", [account], None,
                                        "metadata for an account that holds no lease "
                                        "(crash between unlink and metadata removal, or "
                                        "the lease was removed by another tool)",
                                        "remove_meta"))
            elif bytes(rec.get("lease", b"")) != real:
                findings.append(Finding("meta_mismatch", "warning", [account, real], None,
                                        "metadata names another lease than the one on disk",
                                        "write_meta"))
            elif rec.get("owner") is not None:
                why = _owner_inconsistency(rec, real)
                if why:
                    findings.append(Finding("meta_owner_mismatch", "error", [account, real],
                                            None, why, "manual"))
                else:
                    key = (tuple(rec["owner"]),) + _groups_mapcount(rec.get("groups", ()),
                                                                   rec.get("mapcount", 0))
                    owners.setdefault(key, []).append((account, real))
        for key, held in sorted(owners.items(), key=lambda kv: kv[1]):
            if len(held) > 1:
                findings.append(Finding("owner_duplicate", "warning",
                                        [n for pair in sorted(held) for n in pair], None,
                                        f"one identity holds {len(held)} leases for the same "
                                        "groups and mapcount (expected one)", "manual"))
        for lease, account in sorted(account_of_lease.items()):
            if account not in meta:
                findings.append(Finding("meta_missing", "info", [account, lease], None,
                                        "lease without metadata (made by LCMAPS, or a crash "
                                        "right after link): adopted by repair",
                                        "write_meta"))
    for name in sorted(bytes(n) for n in sidecar):
        if name.startswith(TMP_PREFIX.encode()):
            findings.append(Finding("tmp_leftover", "warning", [name], None,
                                    "temporary metadata file left by an interrupted write",
                                    "remove_tmp"))
    order = {"error": 0, "warning": 1, "info": 2}
    findings.sort(key=lambda f: (order[f.severity], f.kind, f.names))
    return findings


# --- owners -------------------------------------------------------------------------------

class LeaseOwner:
    """The identity a lease belongs to.

    key       ("x509", canonical DN) or ("jwt", issuer, subject): core.identity.Identity.key,
              what is recorded (as a JSON list) and compared on every reuse
    text      the LCMAPS input the lease name is built from (oneline DN / token name), bytes
    readable  True if ``text`` reads back as exactly this identity (the oneline parses to
              the certificate's own DN; a token issuer without ``,``): only then does a
              record of that text made before owners existed prove whose lease it is.
              May be given as a callable, evaluated once and only when asked (adoption of
              an older record is rare; parsing the text costs ~50 us per call)
    """

    __slots__ = ("key", "text", "_readable")

    def __init__(self, key, text, readable):
        self.key = tuple(key)
        self.text = bytes(text)
        self._readable = readable

    @property
    def readable(self):
        if callable(self._readable):
            self._readable = bool(self._readable())
        return bool(self._readable)

    def __repr__(self):
        return f"LeaseOwner({self.key!r}, {self.text!r}, {self.readable!r})"


def _groups_mapcount(groups, mapcount):
    return tuple(bytes(g) for g in groups), max(0, int(mapcount or 0))


def _owner_inconsistency(rec, lease):
    """Why a record's owner does not fit its lease (None if it does)."""
    owner = rec.get("owner")
    if not (isinstance(owner, (list, tuple)) and owner
            and ((owner[0] == "x509" and len(owner) == 2) or (owner[0] == "jwt" and len(owner) == 3))
            and all(isinstance(x, str) for x in owner)):
        return "malformed owner in the lease metadata"
    text = rec.get("dn")
    try:
        groups, mapcount = _groups_mapcount(rec.get("groups", ()), rec.get("mapcount", 0))
        plain = lease_name(text, groups, mapcount) if text else None
    except (TypeError, ValueError):
        return "lease metadata with an unusable dn/groups/mapcount"
    if plain is None:
        return "owner recorded without the dn text the lease name is made from"
    if bytes(lease) in (plain, alternate_name(plain, owner_digest(owner, groups, mapcount))):
        return None
    return "the lease name is neither the LCMAPS name of the recorded dn nor the recorded " \
           "owner's alternate name"


def owner_digest(key, groups=(), mapcount=0):
    """26 characters ``[a-z2-7]``: base32 of the first 128 bits of SHA-256 over an injective
    serialisation (JSON) of the owner key, the groups and the mapcount."""
    import _sha256       # builtin: hashlib would load OpenSSL's (~8 ms), as json (re, enum) would
    from glexec_py.core import leanjson
    groups, mapcount = _groups_mapcount(groups, mapcount)
    blob = leanjson.dumps([list(key), [g.decode("latin-1") for g in groups], mapcount],
                          separators=(",", ":")).encode()
    return _base32_lower(_sha256.sha256(blob).digest()[:16])


_B32 = b"abcdefghijklmnopqrstuvwxyz234567"


def _base32_lower(raw):
    """RFC 4648 base32 of ``raw``, lower case, without the ``=`` padding (what
    ``base64.b32encode(raw).rstrip(b"=").lower()`` gives, without importing base64)."""
    bits = len(raw) * 8
    n = int.from_bytes(raw, "big") << (-bits % 5)
    digits = (bits + 4) // 5
    return bytes(_B32[(n >> (5 * (digits - 1 - i))) & 31] for i in range(digits))


def owner_column(key):
    """The owner key as the PostgreSQL store keeps it (and its unique constraint compares
    it): JSON of the key tuple, ASCII, no spaces -- injective like the key itself."""
    from glexec_py.core import leanjson
    return leanjson.dumps(list(key), separators=(",", ":"))


def groups_column(groups):
    """A lease's group names (bytes) as the PostgreSQL store keeps them: a JSON list."""
    from glexec_py.core import leanjson
    return leanjson.dumps([bytes(g).decode("latin-1") for g in groups], separators=(",", ":"))


def alternate_name(lcmaps_name, digest):
    """The lease name of an identity whose LCMAPS name belongs to someone else:
    ``<encoded part>~<digest>[:<tail>]``, where the encoded part is the LCMAPS name up to its
    first ``:`` (the DN, URL-encoded: only ``[0-9a-z%]``) and the tail the rest (groups,
    ``mapcount=NNNN``).  No LCMAPS name has a ``~`` before its first ``:``, and LCMAPS's own
    scan skips names with ``~``, so it neither produces nor mistakes this name."""
    head, sep, tail = bytes(lcmaps_name).partition(b":")
    return head + b"~" + bytes(digest) + sep + tail


def claim(rec, lease, owner, groups=(), mapcount=0, *, by_digest=False):
    """Whose is this complete lease, for ``owner`` asking with ``groups``/``mapcount``?

    ``rec``: the lease's metadata record (dict), None (absent) or False (unreadable).
    Returns "mine" (recorded owner, groups and mapcount are exactly the asked ones),
    "adopt" (no owner recorded, but the evidence pins it to ``owner``: see below) or
    "other" (anything else: never reused).

    Adoption of an owner-less lease: (a) ``by_digest`` -- the lease is ``owner``'s
    ``alternate_name``, whose 128-bit digest only its owner's key produces (a crash
    between ``link`` and the metadata write leaves it owner-less); (b) a record written by
    glexec-py before owners were recorded whose exact ``dn`` text, groups and mapcount
    equal the asked ones, when ``owner.readable`` (the text is not shared with another
    identity).  A lease LCMAPS made (no record) or one ``repair`` adopted (no text) has
    only its lower-cased name as evidence, which every case variant of a DN (and every
    look-alike of the oneline text) shares: it is "other"."""
    groups, mapcount = _groups_mapcount(groups, mapcount)
    if rec and rec.get("lease") != bytes(lease):
        rec = None                        # the record describes another lease: no evidence
    owned = rec.get("owner") if rec else None
    if owned is not None:
        try:
            same = (tuple(owned) == owner.key
                    and _groups_mapcount(rec.get("groups", ()), rec.get("mapcount", 0))
                    == (groups, mapcount))
        except (TypeError, ValueError):
            same = False
        return "mine" if same else "other"
    if by_digest:
        return "adopt"
    if (rec and owner.readable and rec.get("dn") == owner.text
            and _groups_mapcount(rec.get("groups", ()), rec.get("mapcount", 0))
            == (groups, mapcount)):
        return "adopt"
    return "other"
