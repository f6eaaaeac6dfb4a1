"""Global bans, evaluated before any mapping.  Pure: works on bytes and plain values.

Sources
-------
- ``load_ban_file(data, source, kind)``: LCAS/LCMAPS ban syntax (the grid-mapfile syntax of
  ``gridmap.parse_gridmap``; only the subject column matters), ``kind`` is ``"dn"``,
  ``"fqan"`` or ``"ca"``.
- ``from_plain(d, source)``: an already validated YAML structure, a dict with optional lists
  ``dn``, ``ca``, ``fqan``, ``token`` (``{"issuer": ..., "subject": ...}``; no subject =
  every subject of that issuer) and ``fingerprint`` (SHA-256 of a certificate, hex, any
  case, colons optional).
- ``merge(*banlists)``; ``unusable(source, why)`` is the deny-everyone list the effects layer
  installs when a ban source is missing, unreadable, insecure or unparsable.
- ``to_cache_rows``/``from_cache_rows``: a parsed ban file as marshal-able values for the
  cache of ``effects.banfiles``; the exact DN/CA entries become a hashed index, so a cache
  hit, ``merge`` and ``check`` cost what the call looks up, not the number of entries.

Any entry that cannot be parsed, or whose meaning would be a guess, raises
``BanLoadError`` (a ``ConfigError``: ``file:line: what``) -- a ban list is complete or
not loaded at all.

Matching (``check``)
--------------------
- DN entries (exact): parsed to a DN (``dn.parse_text``: OpenSSL slash form, canonical
  form or RFC 4514; ``E=``/``Email=``/``emailAddress=`` etc. are the same attribute) and
  matched RDN-wise against every subject of the chain (EEC and proxies, leaf to root): an
  entry bans a DN and everything below it (``dn.is_rdn_prefix``), so the EEC ban hits every
  proxy depth, and ``CN=Al`` never hits ``CN=Alice``.
- DN entries with ``*``, ``?`` or ``[`` in slash form are LCMAPS fnmatch patterns (no
  FNM_PATHNAME, backslash literal, exact string equality also matches) tried against the
  canonical AND the OpenSSL-oneline rendering of every RDN-prefix of every subject, and
  against the raw oneline strings the verifier printed (``subject_onelines``).  In
  RFC 4514 form ``*`` is refused (``?``/``[`` are literal there).
- CA entries: same syntax, matched against every issuer DN of the chain by equality (and
  patterns against the renderings of the issuers and ``issuer_onelines``).
- FQAN entries: compared in canonical form (``canonical_fqan``).  An entry whose Role and
  Capability are NULL (``/vo/g``, ``/vo/g/Role=NULL``, ...) bans the group: every FQAN in
  that group or a subgroup, with any role (stricter than LCMAPS, where ``"/vo"`` bans
  nothing because VOMS never returns that literal string).  An entry with a role bans that
  role in exactly that group (Capability NULL in the entry = any capability).  Patterns are
  tried against the canonical and the short form of every FQAN.  An FQAN that is not
  well-formed is denied whenever the list has any FQAN entry (it cannot be checked).
- Token entries: issuer compared without trailing ``/``, subject exactly.
- Fingerprints: any certificate of the chain.
Order: dn, ca, fqan, token, fingerprint; within a kind the first entry in list order.
"""
from glexec_py.core import dn as _dn
from glexec_py.core.fqan import (FQANError, _render_fqan, _short_fqan,  # noqa: F401 (re-exported)
                                   canonical_fqan, parse_fqan)
from glexec_py.core.gridmap import ban_pattern_matches, parse_gridmap, pattern_is_regular
from glexec_py.errors import ConfigError


class BanLoadError(ConfigError):
    """A ban source that cannot be used; the caller must deny everyone (203)."""


KINDS = ("dn", "ca", "fqan", "token", "fingerprint")
_WILD = "*?["


def normalize_fingerprint(s):
    """Lower-case hex without colons/spaces; ``ValueError`` unless 64 hex digits."""
    if not isinstance(s, str):
        raise ValueError("fingerprint is not text")
    h = s.strip().replace(":", "").lower()
    if len(h) != 64 or not all(c in "0123456789abcdef" for c in h):
        raise ValueError(f"not a SHA-256 fingerprint: {s!r}")
    return h


def _norm_iss(iss):
    return iss.rstrip("/") or iss


# --- values -------------------------------------------------------------------------

class Entry:
    """One ban entry: ``kind``, ``text`` (as written), ``source``, ``line`` (int or None),
    ``where`` (``source:line`` or ``source:kind[i]``), parsed ``value`` or ``pattern``."""
    __slots__ = ("kind", "text", "source", "line", "where", "value", "pattern", "index")

    def __init__(self, kind, text, source, line, where, value=None, pattern=None):
        self.kind = kind
        self.text = text
        self.source = source
        self.line = line
        self.where = where
        self.value = value
        self.pattern = pattern
        self.index = 0

    def __repr__(self):
        return f"Entry({self.kind!r}, {self.text!r}, {self.where!r})"


class Decision:
    """A ban hit: ``reason`` (``banned_dn``, ``banned_ca``, ``banned_fqan``,
    ``banned_token``, ``banned_fingerprint``, ``bans_unavailable``), ``entry`` (Entry or
    None), ``where``, ``matched`` (what of the credential matched) and ``explain``."""
    __slots__ = ("reason", "entry", "where", "matched", "explain")
    allowed = False

    def __init__(self, reason, entry, matched, explain):
        self.reason = reason
        self.entry = entry
        self.where = entry.where if entry is not None else None
        self.matched = matched
        self.explain = explain

    def to_audit(self):
        return {"reason": self.reason, "ban_entry": self.entry.text if self.entry else None,
                "ban_where": self.where, "matched": self.matched, "explain": self.explain}

    def __repr__(self):
        return f"Decision({self.reason!r}, {self.explain!r})"


def _flatkey(d):
    return tuple(sorted(ava for rdn in d for ava in rdn))


def _key_hash(flat):
    """Stable 32-bit hash of a ``_flatkey`` (crc32; Python's ``hash`` is salted per
    process).  Equal keys hash equal, which is all the cached index needs: it only narrows
    the candidates, each candidate is then checked exactly, so a collision (or two keys
    that join to the same string) costs time, never a decision."""
    import zlib
    return zlib.crc32("\0".join(map("\1".join, flat)).encode("utf-8", "surrogatepass"))


class _Hashed:
    """The exact DN/CA entries of one cached ban file, looked up without building them all:
    sorted ``_key_hash`` values with parallel arrays (entry index, line, text offset) and the
    texts.  ``get`` builds (and re-parses) only the entries whose hash matches."""
    __slots__ = ("kind", "source", "hashes", "order", "lines", "offs", "texts")

    def __init__(self, kind, source, hashes, order, lines, offs, texts):
        self.kind, self.source, self.texts = kind, source, texts
        self.hashes, self.order, self.lines, self.offs = hashes, order, lines, offs

    def __len__(self):
        return len(self.hashes)

    def _entry(self, i):
        text = self.texts[self.offs[i]:self.offs[i + 1]].decode("utf-8")
        line = self.lines[i]
        # The text parsed when the file was loaded: parse_text is deterministic.
        e = Entry(self.kind, text, self.source, line, f"{self.source}:{line}",
                  value=_dn.parse_text(text))
        e.index = self.order[i]
        return e

    def get(self, flat, default=()):
        from bisect import bisect_left
        h = _key_hash(flat)
        hs = self.hashes
        i = bisect_left(hs, h)
        out = []
        while i < len(hs) and hs[i] == h:
            out.append(self._entry(i))
            i += 1
        return out or default

    def all(self):
        return [self._entry(i) for i in range(len(self.hashes))]


class BanList:
    """Immutable set of ban entries, indexed for ``check``.

    Every entry has an order (its position in the list, merged lists concatenated); a
    check reports the hit with the lowest order.  Exact DN/CA entries sit in per-source
    indexes (``_dn``/``_ca``: ``(base order, index)``, the index a dict ``_flatkey ->
    [Entry]`` or a cached file's ``_Hashed``); the other entries as ``(order, Entry)``.
    ``merge`` only concatenates these: it never touches the exact entries."""
    __slots__ = ("unusable_why", "_size", "_counts", "_parts", "_dn", "_dn_pat", "_ca",
                 "_ca_pat", "_fq_group", "_fq_role", "_fq_pat", "_tok", "_fp")

    def __init__(self, entries=(), unusable_why=None):
        entries = tuple(entries)
        self.unusable_why = unusable_why
        dn_exact, ca_exact = {}, {}
        self._dn_pat, self._ca_pat, self._fq_pat = [], [], []
        self._fq_group, self._fq_role = [], []
        self._tok, self._fp = {}, {}
        counts = dict.fromkeys(KINDS, 0)
        for i, e in enumerate(entries):
            e.index = i
            counts[e.kind] += 1
            if e.kind in ("dn", "ca"):
                if e.pattern is not None:
                    (self._dn_pat if e.kind == "dn" else self._ca_pat).append((i, e))
                else:
                    (dn_exact if e.kind == "dn" else ca_exact).setdefault(
                        _flatkey(e.value), []).append(e)
            else:
                self._add_other(i, e)
        self._size, self._counts = len(entries), counts
        self._parts = ((0, entries),) if entries else ()
        self._dn = ((0, dn_exact),) if dn_exact else ()
        self._ca = ((0, ca_exact),) if ca_exact else ()

    def _add_other(self, order, e):
        if e.kind == "fqan":
            if e.pattern is not None:
                self._fq_pat.append((order, e))
            elif e.value[1] == "NULL" and e.value[2] == "NULL":
                self._fq_group.append((order, e))
            else:
                self._fq_role.append((order, e))
        elif e.kind == "token":
            self._tok.setdefault(e.value, (order, e))
        elif e.kind == "fingerprint":
            self._fp.setdefault(e.value, (order, e))
        elif e.pattern is not None:
            (self._dn_pat if e.kind == "dn" else self._ca_pat).append((order, e))
        else:
            raise ValueError(f"not an indexable {e.kind} entry")

    @property
    def entries(self):
        """Every entry in order (built on demand for a cached file: not for the hot path)."""
        out = []
        for _base, part in self._parts:
            out.extend(sorted(part.all(), key=lambda e: e.index)
                       if isinstance(part, _Lazy) else part)
        return tuple(out)

    def __len__(self):
        return self._size

    def counts(self):
        """``{kind: number of entries}`` (for the audit record)."""
        return dict(self._counts)

    def __repr__(self):
        if self.unusable_why is not None:
            return f"BanList(unusable: {self.unusable_why!r})"
        return f"BanList({self.counts()!r})"


class _Lazy:
    """The entries of a cached ban file (for ``BanList.entries`` only)."""
    __slots__ = ("hashed", "others")

    def __init__(self, hashed, others):
        self.hashed, self.others = hashed, others

    def all(self):
        out = list(self.others)
        for h in self.hashed:
            out.extend(h.all())
        return out


def unusable(source, why):
    """A ban list that denies everyone (``bans_unavailable``): install it when a ban source
    is missing, unreadable, writable by others or unparsable."""
    return BanList((), f"{source}: {why}")


def merge(*banlists):
    """One BanList with the entries of all, in order; unusable if any is.  Costs the
    number of sources and of non-exact entries, not of the exact ones."""
    out = BanList()
    base = 0
    for b in banlists:
        if b.unusable_why is not None and out.unusable_why is None:
            out.unusable_why = b.unusable_why
        out._parts += tuple((base + o, p) for o, p in b._parts)
        out._dn += tuple((base + o, ix) for o, ix in b._dn)
        out._ca += tuple((base + o, ix) for o, ix in b._ca)
        for name in ("_dn_pat", "_ca_pat", "_fq_group", "_fq_role", "_fq_pat"):
            getattr(out, name).extend((base + o, e) for o, e in getattr(b, name))
        for name in ("_tok", "_fp"):
            d = getattr(out, name)
            for k, (o, e) in getattr(b, name).items():
                d.setdefault(k, (base + o, e))         # the first in list order wins
        for k, n in b._counts.items():
            out._counts[k] += n
        base += len(b)
    out._size = base
    return out


# --- loading ------------------------------------------------------------------------

def _check_text(text):
    for c in text:
        o = ord(c)
        if o < 0x20 or o == 0x7F:
            raise ValueError("control character in entry (CRLF line endings?)")


_IRREGULAR = ("bracket expression LCMAPS's fnmatch reads differently ([=..=], [.x.], an "
              "incomplete or unknown [:class:], or a non-ASCII byte inside [...])")


def _pattern_entry(kind, text, source, line, where):
    pattern = text.encode("utf-8")
    if not pattern_is_regular(pattern):
        # Matching it as anything but "everyone" could match less than LCMAPS would.
        raise ValueError(_IRREGULAR)
    return Entry(kind, text, source, line, where, pattern=pattern)


def _make_entry(kind, text, source, line, where):
    """Parse one entry; raises ValueError (DNError/FQANError) with a message."""
    _check_text(text)
    if not text:
        raise ValueError("empty entry")
    if kind in ("dn", "ca"):
        if any(c in text for c in _WILD):
            if text[0] in "/" + _WILD:
                return _pattern_entry(kind, text, source, line, where)
            if "*" in text:
                raise ValueError("wildcards are only supported in slash form (/C=../CN=*); "
                                 "write a literal * as \\2A")
        d = _dn.parse_text(text)
        if not d:
            raise ValueError("empty DN")
        return Entry(kind, text, source, line, where, value=d)
    if kind == "fqan":
        if any(c in text for c in _WILD):
            if text[0] != "/" and text[0] not in _WILD:
                raise ValueError("FQAN pattern must start with '/' or a wildcard")
            return _pattern_entry(kind, text, source, line, where)
        return Entry(kind, text, source, line, where, value=parse_fqan(text))
    if kind == "fingerprint":
        return Entry(kind, text, source, line, where, value=normalize_fingerprint(text))
    raise ValueError(f"unknown ban kind {kind!r}")


def load_ban_file(data, source, kind):
    """BanList from a file in LCAS/LCMAPS ban syntax (one quoted DN/FQAN per line, ``#``
    comments, ``*`` wildcards).  ``kind``: ``"dn"``, ``"fqan"`` or ``"ca"``.
    Stricter than LCMAPS (each a ``BanLoadError``): text after an unquoted subject (a DN
    with spaces that needed quotes), invalid UTF-8, control characters, unparsable or
    ambiguous entries."""
    if kind not in ("dn", "fqan", "ca"):
        raise ValueError(f"ban file kind must be dn, fqan or ca, not {kind!r}")
    data = bytes(data)
    try:
        lines = parse_gridmap(data, source)
    except BanLoadError:
        raise
    except ConfigError as e:
        raise BanLoadError(source, e.line, e.what) from None
    raw_lines = data.split(b"\n")
    entries = []
    for gl in lines:
        raw = raw_lines[gl.lineno - 1].lstrip(b" \t")
        if gl.mappings and not raw.startswith(b'"'):
            raise BanLoadError(source, gl.lineno,
                               "text after an unquoted subject (quote DNs that contain spaces)")
        try:
            text = gl.subject.decode("utf-8")
        except UnicodeDecodeError:
            raise BanLoadError(source, gl.lineno, "entry is not valid UTF-8") from None
        try:
            entries.append(_make_entry(kind, text, source, gl.lineno,
                                       f"{source}:{gl.lineno}"))
        except ValueError as e:
            raise BanLoadError(source, gl.lineno, f"bad {kind} ban {text!r}: {e}") from None
    return BanList(entries)


_CACHE_TAG = "glexec-py ban index 1"


def to_cache_rows(banlist):
    """A loaded ban file as plain values (marshal-able) for the root-only cache of
    ``effects.banfiles``: the exact DN/CA entries as a ``_Hashed`` index per kind (a few
    flat byte strings: loading them costs a copy, not an object per entry), the rest (the
    patterns, FQANs) as rows ``(kind, text, line, value, pattern, index)``."""
    from array import array
    known = {}                              # id(entry) -> hash, from the index's own keys
    for _base, index in banlist._dn + banlist._ca:
        if type(index) is dict:
            for key, es in index.items():
                h = _key_hash(key)
                for e in es:
                    known[id(e)] = h
    exact, rows = {}, []
    for e in banlist.entries:
        if e.kind in ("dn", "ca") and e.pattern is None and type(e.line) is int:
            h = known.get(id(e))
            exact.setdefault(e.kind, []).append(
                (_key_hash(_flatkey(e.value)) if h is None else h, e.index, e))
        else:
            rows.append((e.kind, e.text, e.line, e.value, e.pattern, e.index))
    tables = {}
    for kind, items in exact.items():
        items.sort(key=lambda t: (t[0], t[1]))
        texts = [t[2].text.encode("utf-8") for t in items]
        offs, o = array("I", [0]), 0
        for b in texts:
            o += len(b)
            offs.append(o)
        tables[kind] = (array("I", [t[0] for t in items]).tobytes(),
                        array("I", [t[1] for t in items]).tobytes(),
                        array("I", [t[2].line for t in items]).tobytes(),
                        offs.tobytes(), b"".join(texts))
    return (_CACHE_TAG, len(banlist), tables, rows)


def from_cache_rows(rows, source):
    """The BanList of ``to_cache_rows`` again (values this module made earlier: only the
    shape is re-checked, in time independent of the number of exact entries);
    ``ValueError`` on anything else."""
    from array import array
    if type(rows) is not tuple or len(rows) != 4 or rows[0] != _CACHE_TAG:
        raise ValueError("not a ban cache")
    _tag, size, tables, others = rows
    if type(tables) is not dict or type(others) is not list or type(size) is not int:
        raise ValueError("not a ban cache")
    bl = BanList()
    entries, hashed = [], []
    for kind, text, line, value, pattern, index in others:
        if kind not in KINDS or type(text) is not str or (value is None) == (pattern is None) \
                or type(index) is not int or type(line) is not int:
            raise ValueError("not a ban cache row")
        e = Entry(kind, text, source, line, f"{source}:{line}", value, pattern)
        e.index = index
        bl._add_other(index, e)
        bl._counts[kind] += 1
        entries.append(e)
    for kind, table in tables.items():
        if kind not in ("dn", "ca") or type(table) is not tuple or len(table) != 5 \
                or not all(type(b) is bytes for b in table):
            raise ValueError("not a ban cache table")
        hs, order, lines, offs = (array("I", b) for b in table[:4])
        n = len(hs)
        if hs.itemsize != 4 or len(order) != n or len(lines) != n or len(offs) != n + 1 \
                or offs[0] != 0 or offs[-1] != len(table[4]):
            raise ValueError("not a ban cache table")
        ix = _Hashed(kind, source, hs, order, lines, offs, table[4])
        hashed.append(ix)
        if kind == "dn":
            bl._dn += ((0, ix),)
        else:
            bl._ca += ((0, ix),)
        bl._counts[kind] += n
    if sum(bl._counts.values()) != size:
        raise ValueError("ban cache counts do not add up")
    bl._size = size
    bl._parts = ((0, _Lazy(hashed, entries)),)
    return bl


def from_plain(d, source):
    """BanList from a plain dict (YAML already validated for shape by the caller):
    ``{"dn": [str], "ca": [str], "fqan": [str], "token": [{"issuer": str,
    "subject": str (optional)}], "fingerprint": [str]}``; every key optional."""
    if not isinstance(d, dict):
        raise BanLoadError(source, None, "bans must be a mapping")
    entries = []
    for key in d:
        if key not in KINDS:
            raise BanLoadError(source, None, f"unknown ban kind {key!r}")
    for key in KINDS:
        items = d.get(key)
        if items is None:
            continue
        if not isinstance(items, (list, tuple)):
            raise BanLoadError(source, None, f"bans.{key} must be a list")
        for i, item in enumerate(items):
            where = f"{source}:{key}[{i}]"
            try:
                if key == "token":
                    entries.append(_token_entry(item, source, where))
                    continue
                if not isinstance(item, str):
                    raise ValueError("entry must be a string")
                entries.append(_make_entry(key, item, source, None, where))
            except ValueError as e:
                raise BanLoadError(source, None, f"bans.{key}[{i}] {item!r}: {e}") from None
    return BanList(entries)


def _token_entry(item, source, where):
    if not isinstance(item, dict):
        raise ValueError("token ban must be a mapping with issuer and subject")
    extra = set(item) - {"issuer", "subject"}
    if extra:
        raise ValueError(f"unknown key(s) {sorted(extra)!r}")
    iss = item.get("issuer")
    sub = item.get("subject")
    if not isinstance(iss, str) or not iss.strip() or iss != iss.strip():
        raise ValueError("issuer must be a non-empty string without surrounding spaces")
    _check_text(iss)
    if sub is not None:
        if not isinstance(sub, str) or not sub:
            raise ValueError("subject must be a non-empty string")
        _check_text(sub)
    text = f"iss={iss} sub={sub if sub is not None else '*'}"
    return Entry("token", text, source, None, where, value=(_norm_iss(iss), sub))


# --- checking -----------------------------------------------------------------------

def _enc(s):
    if isinstance(s, bytes):
        return s
    return s.encode("utf-8", "surrogateescape")


def _deny(reason, entry, matched, what):
    return Decision(reason, entry, matched,
                    f"{what} is banned by entry {entry.text!r} at {entry.where}")


def _first(hits):
    """The hit ``(order, entry, matched)`` of the entry that comes first in the list."""
    return min(hits, key=lambda h: h[0]) if hits else None


def _pattern_hits(patterns, targets):
    """(order, entry, matched rendering) for every wildcard entry that matches one of the
    targets (LCMAPS fnmatch semantics), the first matching rendering each."""
    hits = []
    for o, e in patterns:
        for t in targets:
            if ban_pattern_matches(e.pattern, t):
                hits.append((o, e, t.decode("utf-8", "replace")))
                break
    return hits


def check(banlist, *, subject_dns=(), issuer_dns=(), fqans=(), token=None,
          fingerprints=(), subject_onelines=(), issuer_onelines=()):
    """The first ban that applies, as a ``Decision``, or None.

    ``subject_dns``: DNs (from ``dn.parse_der_name``) of the EEC and every proxy, leaf to
    root; ``issuer_dns``: the issuer DN of every certificate in the chain; ``fqans``: the
    verified FQANs / token groups; ``token``: ``(iss, sub)`` or None; ``fingerprints``:
    SHA-256 hex of every certificate (any case, colons optional);
    ``subject_onelines``/``issuer_onelines``: optional raw OpenSSL oneline strings of the
    same certificates (only wildcard patterns use them).  Exact entries are looked up in
    the indexes (cost: the subjects' length, not the list's)."""
    if banlist.unusable_why is not None:
        return Decision("bans_unavailable", None, None,
                        f"ban list unusable ({banlist.unusable_why}): denying everyone")

    # DN bans: RDN-prefix, every subject of the chain.
    if banlist._dn or banlist._dn_pat:
        hits = []
        for d in subject_dns:
            for p in range(1, len(d) + 1):
                key = _flatkey(d[:p])
                for base, index in banlist._dn:
                    for e in index.get(key, ()):
                        if _dn.is_rdn_prefix(e.value, d):
                            hits.append((base + e.index, e, _dn.canonical(d)))
        if banlist._dn_pat:
            targets = []
            for d in subject_dns:
                for p in range(len(d), 0, -1):
                    t = d[:p]
                    targets.append(_enc(_dn.canonical(t)))
                    targets.append(_enc(_dn.oneline(t)))
            targets.extend(_enc(s) for s in subject_onelines)
            hits += _pattern_hits(banlist._dn_pat, targets)
        h = _first(hits)
        if h:
            return _deny("banned_dn", h[1], h[2], f"subject {h[2]}")

    # CA bans: issuer equality.
    if banlist._ca or banlist._ca_pat:
        hits = []
        for d in issuer_dns:
            key = _flatkey(d)
            for base, index in banlist._ca:
                for e in index.get(key, ()):
                    if _dn.is_rdn_prefix(e.value, d):
                        hits.append((base + e.index, e, _dn.canonical(d)))
        if banlist._ca_pat:
            targets = []
            for d in issuer_dns:
                targets.append(_enc(_dn.canonical(d)))
                targets.append(_enc(_dn.oneline(d)))
            targets.extend(_enc(s) for s in issuer_onelines)
            hits += _pattern_hits(banlist._ca_pat, targets)
        h = _first(hits)
        if h:
            return _deny("banned_ca", h[1], h[2], f"issuer {h[2]}")

    # FQAN bans.
    if banlist._fq_group or banlist._fq_role or banlist._fq_pat:
        hits = []
        for f in fqans:
            try:
                groups, role, cap = parse_fqan(f)
            except FQANError:
                any_entry = (banlist._fq_group or banlist._fq_role or banlist._fq_pat)[0][1]
                return Decision("banned_fqan", None, f,
                                f"FQAN {f!r} is malformed and cannot be checked against "
                                f"the FQAN bans (first: {any_entry.where})")
            canon = _render_fqan(groups, role, cap)
            for o, e in banlist._fq_group:
                g = e.value[0]
                if groups[:len(g)] == g:
                    hits.append((o, e, canon))
            for o, e in banlist._fq_role:
                g, r, c = e.value
                if groups == g and role == r and (c == "NULL" or c == cap):
                    hits.append((o, e, canon))
            if banlist._fq_pat:
                targets = [_enc(canon), _enc(_short_fqan(groups, role, cap))]
                if f not in (canon,):
                    targets.append(_enc(f))
                for o, e in banlist._fq_pat:
                    for t in targets:
                        if ban_pattern_matches(e.pattern, t):
                            hits.append((o, e, canon))
                            break
        h = _first(hits)
        if h:
            return _deny("banned_fqan", h[1], h[2], f"FQAN {h[2]}")

    # Token bans.
    if token is not None and banlist._tok:
        iss, sub = token
        niss = _norm_iss(iss)
        hits = [h for h in (banlist._tok.get((niss, sub)), banlist._tok.get((niss, None)))
                if h is not None]
        if hits:
            e = min(hits, key=lambda h: h[0])[1]
            return _deny("banned_token", e, f"iss={iss} sub={sub}",
                         f"token iss={iss} sub={sub}")

    # Fingerprint bans.
    if banlist._fp:
        for fp in fingerprints:
            h = banlist._fp.get(normalize_fingerprint(fp))
            if h is not None:
                return _deny("banned_fingerprint", h[1], normalize_fingerprint(fp),
                             f"certificate sha256:{normalize_fingerprint(fp)}")
    return None


def inputs(identity, chain, eec_depth):
    """What ``check`` looks at for an identity (core.identity): its keyword arguments.
    A token: its issuer+subject, groups and fingerprint; a proxy chain: the DN at every
    proxy depth and of the end-entity certificate, every issuer (the CA too), the FQANs and
    every certificate's fingerprint.  Raises ``dn.DNError`` for a malformed name."""
    if identity.kind == "jwt":
        return {"token": (identity.issuer, identity.subject), "fqans": identity.groups,
                "fingerprints": [identity.fingerprint]}
    certs = chain[:eec_depth + 1]  # the proxies and the end-entity certificate
    return {"subject_dns": [_dn.parse_der_name(c.subject_der) for c in certs],
            "issuer_dns": [_dn.parse_der_name(c.issuer_der) for c in chain],
            "fqans": identity.groups, "fingerprints": [c.sha256 for c in chain],
            "subject_onelines": [c.subject for c in certs], "issuer_onelines": [c.issuer for c in chain]}


def trace(sources, seen):
    """Each ban source's own verdict: ``((label, Decision or None), ...)`` for
    ``sources`` = ``((label, BanList), ...)`` and ``seen`` = ``inputs(...)``.  The call is
    refused iff one of them is a Decision (``check`` of their ``merge`` says which entry
    the audit record names: the first in source order within the first kind that hits)."""
    return tuple((label, check(banlist, **seen)) for label, banlist in sources)
