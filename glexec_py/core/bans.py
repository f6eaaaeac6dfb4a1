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


class BanList:
    """Immutable set of ban entries, indexed for ``check``."""
    __slots__ = ("entries", "unusable_why", "_dn", "_dn_pat", "_ca", "_ca_pat", "_fq_group",
                 "_fq_role", "_fq_pat", "_tok", "_fp")

    def __init__(self, entries=(), unusable_why=None, keys=None):
        """``keys``: the ``_flatkey`` of each DN/CA entry's value, when already known
        (a cached ban file: sorting 100k DNs again is most of a cache hit's cost)."""
        self.entries = tuple(entries)
        self.unusable_why = unusable_why
        self._dn, self._ca = {}, {}
        self._dn_pat, self._ca_pat, self._fq_pat = [], [], []
        self._fq_group, self._fq_role = [], []
        self._tok, self._fp = {}, {}
        for i, e in enumerate(self.entries):
            e.index = i
            if e.kind in ("dn", "ca"):
                if e.pattern is not None:
                    (self._dn_pat if e.kind == "dn" else self._ca_pat).append(e)
                else:
                    (self._dn if e.kind == "dn" else self._ca).setdefault(
                        _flatkey(e.value) if keys is None else keys[i], []).append(e)
            elif e.kind == "fqan":
                if e.pattern is not None:
                    self._fq_pat.append(e)
                elif e.value[1] == "NULL" and e.value[2] == "NULL":
                    self._fq_group.append(e)
                else:
                    self._fq_role.append(e)
            elif e.kind == "token":
                self._tok.setdefault(e.value, e)
            elif e.kind == "fingerprint":
                self._fp.setdefault(e.value, e)

    def __len__(self):
        return len(self.entries)

    def counts(self):
        """``{kind: number of entries}`` (for the audit record)."""
        out = dict.fromkeys(KINDS, 0)
        for e in self.entries:
            out[e.kind] += 1
        return out

    def __repr__(self):
        if self.unusable_why is not None:
            return f"BanList(unusable: {self.unusable_why!r})"
        return f"BanList({self.counts()!r})"


def unusable(source, why):
    """A ban list that denies everyone (``bans_unavailable``): install it when a ban source
    is missing, unreadable, writable by others or unparsable."""
    return BanList((), f"{source}: {why}")


def merge(*banlists):
    """One BanList with the entries of all, in order; unusable if any is."""
    entries = []
    why = None
    for b in banlists:
        if b.unusable_why is not None and why is None:
            why = b.unusable_why
        entries.extend(b.entries)
    return BanList(entries, why)


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


def to_cache_rows(banlist):
    """A loaded ban file as plain rows (marshal-able) for the root-only cache of
    ``effects.banfiles``: ``(kind, text, line, value, pattern, index key)`` per entry."""
    return [(e.kind, e.text, e.line, e.value, e.pattern,
             _flatkey(e.value) if e.kind in ("dn", "ca") and e.pattern is None else None)
            for e in banlist.entries]


def from_cache_rows(rows, source):
    """The BanList of ``to_cache_rows`` again (rows this module validated earlier: only the
    shape is re-checked); ``ValueError`` on anything else."""
    entries, keys = [], []
    for kind, text, line, value, pattern, key in rows:
        if kind not in KINDS or type(text) is not str or (value is None) == (pattern is None):
            raise ValueError("not a ban cache row")
        entries.append(Entry(kind, text, source, line, f"{source}:{line}", value, pattern))
        keys.append(key)
    return BanList(entries, keys=keys)


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
    return min(hits, key=lambda h: h[0].index) if hits else None


def _match_patterns(patterns, targets):
    for e in patterns:
        for t in targets:
            if ban_pattern_matches(e.pattern, t):
                return e, t
    return None


def _pattern_hits(patterns, targets):
    """(entry, matched rendering) for every wildcard entry that matches one of the targets
    (LCMAPS fnmatch semantics), the first matching rendering each."""
    hits = []
    for e in patterns:
        for t in targets:
            if ban_pattern_matches(e.pattern, t):
                hits.append((e, t.decode("utf-8", "replace")))
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
    same certificates (only wildcard patterns use them)."""
    if banlist.unusable_why is not None:
        return Decision("bans_unavailable", None, None,
                        f"ban list unusable ({banlist.unusable_why}): denying everyone")

    # DN bans: RDN-prefix, every subject of the chain.
    if banlist._dn or banlist._dn_pat:
        hits = []
        for d in subject_dns:
            for p in range(1, len(d) + 1):
                for e in banlist._dn.get(_flatkey(d[:p]), ()):
                    if _dn.is_rdn_prefix(e.value, d):
                        hits.append((e, _dn.canonical(d)))
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
            return _deny("banned_dn", h[0], h[1], f"subject {h[1]}")

    # CA bans: issuer equality.
    if banlist._ca or banlist._ca_pat:
        hits = []
        for d in issuer_dns:
            for e in banlist._ca.get(_flatkey(d), ()):
                if _dn.is_rdn_prefix(e.value, d):
                    hits.append((e, _dn.canonical(d)))
        if banlist._ca_pat:
            targets = []
            for d in issuer_dns:
                targets.append(_enc(_dn.canonical(d)))
                targets.append(_enc(_dn.oneline(d)))
            targets.extend(_enc(s) for s in issuer_onelines)
            hits += _pattern_hits(banlist._ca_pat, targets)
        h = _first(hits)
        if h:
            return _deny("banned_ca", h[0], h[1], f"issuer {h[1]}")

    # FQAN bans.
    if banlist._fq_group or banlist._fq_role or banlist._fq_pat:
        hits = []
        for f in fqans:
            try:
                groups, role, cap = parse_fqan(f)
            except FQANError:
                any_entry = (banlist._fq_group or banlist._fq_role or banlist._fq_pat)[0]
                return Decision("banned_fqan", None, f,
                                f"FQAN {f!r} is malformed and cannot be checked against "
                                f"the FQAN bans (first: {any_entry.where})")
            canon = _render_fqan(groups, role, cap)
            for e in banlist._fq_group:
                g = e.value[0]
                if groups[:len(g)] == g:
                    hits.append((e, canon))
            for e in banlist._fq_role:
                g, r, c = e.value
                if groups == g and role == r and (c == "NULL" or c == cap):
                    hits.append((e, canon))
            if banlist._fq_pat:
                targets = [_enc(canon), _enc(_short_fqan(groups, role, cap))]
                if f not in (canon,):
                    targets.append(_enc(f))
                for e in banlist._fq_pat:
                    for t in targets:
                        if ban_pattern_matches(e.pattern, t):
                            hits.append((e, canon))
                            break
        h = _first(hits)
        if h:
            return _deny("banned_fqan", h[0], h[1], f"FQAN {h[1]}")

    # Token bans.
    if token is not None and banlist._tok:
        iss, sub = token
        niss = _norm_iss(iss)
        hits = [e for e in (banlist._tok.get((niss, sub)), banlist._tok.get((niss, None)))
                if e is not None]
        if hits:
            e = min(hits, key=lambda x: x.index)
            return _deny("banned_token", e, f"iss={iss} sub={sub}",
                         f"token iss={iss} sub={sub}")

    # Fingerprint bans.
    if banlist._fp:
        for fp in fingerprints:
            e = banlist._fp.get(normalize_fingerprint(fp))
            if e is not None:
                return _deny("banned_fingerprint", e, normalize_fingerprint(fp),
                             f"certificate sha256:{normalize_fingerprint(fp)}")
    return None
