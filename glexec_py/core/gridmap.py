"""LCMAPS grid-mapfile parser and lookups, bug-compatible with lcmaps-plugins-basic 1.7.1
(reference/lcmaps-semantics.md section 2).  Pure: works on the file's bytes.

Quirks kept on purpose:
- lines are split on ``\\n`` only; a ``\\r`` stays part of the last token (a CRLF file
  yields mappings like ``.pool\\r`` that never work);
- the subject keeps its backslashes verbatim (``\\xC3\\xA9`` stays 8 characters, which is
  how OpenSSL's oneline DN prints non-ASCII), while backslash escapes ARE expanded in the
  mappings (``a\\ b`` -> ``a b``);
- an unbalanced quote or a backslash at the end of a line makes the whole file unusable
  (``ConfigError``: fail closed).
"""

from glexec_py.errors import ConfigError

_BLANK = b" \t"
_SEP = b", \t"
_BS = 0x5C       # backslash
_QUOTE = 0x22
_HASH = 0x23


class GridmapLine:
    """One non-comment line: ``lineno`` (1-based), ``subject`` (bytes), ``mappings``."""

    __slots__ = ("lineno", "subject", "mappings")

    def __init__(self, lineno, subject, mappings):
        self.lineno = lineno
        self.subject = subject
        self.mappings = mappings

    def __eq__(self, other):
        if type(other) is not GridmapLine:
            return NotImplemented
        return (self.lineno, self.subject, self.mappings) == (
            other.lineno, other.subject, other.mappings)

    __hash__ = None

    def __repr__(self):
        return f"GridmapLine({self.lineno!r}, {self.subject!r}, {self.mappings!r})"


def _parse_line(line, lineno, source):
    n = len(line)
    i = 0
    while i < n and line[i] in _BLANK:
        i += 1
    if i == n or line[i] == _HASH:
        return None
    # Subject: backslashes are skipped while scanning, kept verbatim in the result.
    if line[i] == _QUOTE:
        j = i + 1
        while True:
            if j >= n:
                raise ConfigError(source, lineno, "unbalanced quote in the subject")
            c = line[j]
            if c == _BS:
                if j + 1 >= n:
                    raise ConfigError(source, lineno,
                                      "backslash at end of line (continuation not supported)")
                j += 2
            elif c == _QUOTE:
                break
            else:
                j += 1
        subject = line[i + 1:j]
        j += 1
    else:
        j = i
        while j < n and line[j] not in _BLANK:
            if line[j] == _BS:
                if j + 1 >= n:
                    raise ConfigError(source, lineno,
                                      "backslash at end of line (continuation not supported)")
                j += 2
            else:
                j += 1
        if j > n:
            j = n
        subject = line[i:j]
    # Rest: mappings separated by runs of ',', ' ', '\t'; escapes expanded; cut at an
    # unescaped '#'.
    mappings = []
    tok = bytearray()
    have = False
    while j < n:
        c = line[j]
        if c == _BS:
            if j + 1 >= n:
                raise ConfigError(source, lineno,
                                  "backslash at end of line (continuation not supported)")
            tok.append(line[j + 1])
            have = True
            j += 2
            continue
        if c == _HASH:
            break
        if c in _SEP:
            if have:
                mappings.append(bytes(tok))
                tok.clear()
                have = False
        else:
            tok.append(c)
            have = True
        j += 1
    if have:
        mappings.append(bytes(tok))
    return GridmapLine(lineno, subject, tuple(mappings))


def parse_gridmap(data, source):
    """All non-comment lines of a grid-mapfile, in file order.

    Raises ``ConfigError(source, lineno, what)`` on the first parse error.
    """
    data = bytes(data)
    out = []
    for idx, line in enumerate(data.split(b"\n")):
        parsed = _parse_line(line, idx + 1, source)
        if parsed is not None:
            out.append(parsed)
    return tuple(out)


def local_account(lines, subject, *, wildcards=False):
    """localaccount plugin: exact subject match only (voms_localaccount: also fnmatch
    patterns, ``wildcards=True``); the first matching line with a mapping not starting
    with ``.`` wins; returns that first non-dot mapping or None."""
    found = local_line(lines, subject, wildcards=wildcards)
    return None if found is None else found[1]


def local_line(lines, subject, *, wildcards=False):
    """``local_account`` with the line that gave it: ``(GridmapLine, account)`` or None."""
    subject = bytes(subject)
    for line in lines:
        if line.subject == subject or (wildcards and subject_matches(line.subject, subject)):
            for m in line.mappings:
                if not m.startswith(b"."):
                    return line, m
    return None


def pool_name(lines, subject, *, wildcards=True):
    """poolaccount plugin: the first line whose subject matches (exactly, or as an
    fnmatch pattern with FNM_NOESCAPE when ``wildcards``) and that has a mapping starting
    with ``.``; returns that pool name without the dot (may be ``b""`` for a bare ``.``:
    callers must refuse an empty pool name) or None."""
    found = pool_line(lines, subject, wildcards=wildcards)
    return None if found is None else found[1]


def pool_line(lines, subject, *, wildcards=True):
    """``pool_name`` with the line that gave it: ``(GridmapLine, pool)`` or None."""
    subject = bytes(subject)
    for line in lines:
        pat = line.subject
        if pat == subject or (wildcards and subject_matches(pat, subject)):
            for m in line.mappings:
                if m.startswith(b"."):
                    return line, m[1:]
    return None


def matching_lines(lines, subject, *, wildcards):
    """Every line whose subject matches ``subject`` (as the lookups above compare): what
    an explanation shows for a lookup that found no mapping of the kind it wanted."""
    subject = bytes(subject)
    return tuple(line for line in lines
                 if line.subject == subject or (wildcards and subject_matches(line.subject, subject)))


class GroupMapRefused(Exception):
    """voms_localgroup failed for a reason of the identity: ``reason`` (``no_voms_groups``,
    ``voms_group_unmapped``, ``voms_groups_too_few``) and a one-line ``what``."""

    def __init__(self, reason, what, **detail):
        super().__init__(what)
        self.reason, self.what, self.detail = reason, what, detail


def voms_localgroup(lines, fqans, resolve, *, mapall=False, mapmin=0):
    """LCMAPS ``lcmaps_voms_localgroup.mod`` (``-groupmapfile``, ``-mapall``, ``-mapmin N``;
    not ``--map-to-secondary-groups``), with the group lookup injected.

    For each FQAN in order: the first line of the groupmapfile whose subject matches
    (exactly or as an fnmatch pattern: wildcards are always on in the voms_* plugins) and
    that has a mapping not starting with ``.`` gives a group name; ``resolve(name)`` turns
    it into a gid (and raises when the group does not exist: LCMAPS fails the plugin, so
    must the caller).  Only a match of the FIRST FQAN (index 0) becomes a primary gid;
    matches of later FQANs are secondary gids, in FQAN order, duplicates kept.  So if the
    first FQAN has no group there is no primary gid at all.

    Returns ``(primary, secondary)``: tuples of ``(name, gid)``.
    Raises ``GroupMapRefused``: no FQANs (LCMAPS: "no (valid) VOMS groups"); with
    ``mapall`` an FQAN without a group line; fewer than ``mapmin`` groups found."""
    if not fqans:
        raise GroupMapRefused("no_voms_groups", "glexec: no VOMS attributes to map to groups")
    primary, secondary = [], []
    for index, fqan in enumerate(fqans):
        name = local_account(lines, fqan, wildcards=True)
        if name is None:
            if mapall:
                raise GroupMapRefused("voms_group_unmapped",
                                      "glexec: a VOMS attribute has no group in the groupmapfile",
                                      fqan=bytes(fqan))
            continue
        gid = resolve(name)
        (primary if index == 0 else secondary).append((name, gid))
    if len(primary) + len(secondary) < mapmin:
        raise GroupMapRefused("voms_groups_too_few",
                              f"glexec: fewer than {mapmin} VOMS attributes map to groups",
                              found=len(primary) + len(secondary), mapmin=mapmin)
    return tuple(primary), tuple(secondary)


# --- fnmatch(pattern, string, FNM_NOESCAPE), C locale, bytes ------------------------

def _isclass(name, c):
    if name == b"alpha":
        return 65 <= c <= 90 or 97 <= c <= 122
    if name == b"digit":
        return 48 <= c <= 57
    if name == b"alnum":
        return 65 <= c <= 90 or 97 <= c <= 122 or 48 <= c <= 57
    if name == b"upper":
        return 65 <= c <= 90
    if name == b"lower":
        return 97 <= c <= 122
    if name == b"space":
        return c in b" \t\n\r\x0b\x0c"
    if name == b"blank":
        return c in b" \t"
    if name == b"punct":
        return 33 <= c <= 126 and not (65 <= c <= 90 or 97 <= c <= 122 or 48 <= c <= 57)
    if name == b"print":
        return 32 <= c <= 126
    if name == b"graph":
        return 33 <= c <= 126
    if name == b"cntrl":
        return c < 32 or c == 127
    if name == b"xdigit":
        return 48 <= c <= 57 or 65 <= c <= 70 or 97 <= c <= 102
    return None    # unknown class: glibc fails the whole match


def _bracket(pat, p, c):
    """Match byte ``c`` against the bracket expression starting at ``pat[p] == '['``.

    Returns ``(matched, next_p)``; ``next_p`` is None when the bracket is not closed
    (then ``[`` is an ordinary character) and ``-1`` when the whole match must fail.
    """
    n = len(pat)
    q = p + 1
    negate = False
    if q < n and pat[q] in b"!^":
        negate = True
        q += 1
    matched = False
    first = True
    while True:
        if q >= n:
            return False, None
        ch = pat[q]
        if ch == 0x5D and not first:      # ']'
            q += 1
            break
        first = False
        if ch == 0x5B and q + 1 < n and pat[q + 1] == 0x3A:    # '[:'
            end = pat.find(b":]", q + 2)
            if end < 0:
                return False, None
            ok = _isclass(pat[q + 2:end], c)
            if ok is None:
                return False, -1
            matched = matched or ok
            q = end + 2
            continue
        lo = ch
        q += 1
        if q + 1 < n and pat[q] == 0x2D and pat[q + 1] != 0x5D:     # 'a-z'
            hi = pat[q + 1]
            q += 2
            if lo <= c <= hi:
                matched = True
        elif lo == c:
            matched = True
    return matched != negate, q


def _one(pat, p, c):
    """Does the single-character element at ``pat[p]`` match ``c``?  -> (ok, next_p)."""
    pc = pat[p]
    if pc == 0x3F:                   # '?'
        return True, p + 1
    if pc == 0x5B:                   # '['
        ok, q = _bracket(pat, p, c)
        if q is None:
            return c == 0x5B, p + 1
        if q == -1:
            return None, -1
        return ok, q
    return pc == c, p + 1


_CLASSES = frozenset((b"alpha", b"digit", b"alnum", b"upper", b"lower", b"space", b"blank",
                      b"punct", b"print", b"graph", b"cntrl", b"xdigit"))
_REGULAR = {}       # pattern -> bool (a gridmapfile/ban list has few distinct patterns)


def pattern_is_regular(pattern):
    """True when this module reads ``pattern`` exactly as glibc's fnmatch(FNM_NOESCAPE)
    does in the C locale.  Irregular: a bracket expression (from ``[`` to its ``]``, or to
    the end of the pattern when unterminated) holding a non-ASCII byte, ``[=``, ``[.``, a
    ``[:`` that is not a complete known class, or a range with a class as an end.  glibc's
    handling of those (equivalence classes, collating symbols, half-read class names) is
    not reproduced; the callers decide which way such a pattern errs."""
    pattern = bytes(pattern)
    known = _REGULAR.get(pattern)
    if known is None:
        known = _regular(pattern)
        if len(_REGULAR) < 4096:
            _REGULAR[pattern] = known
    return known


def _regular(pat):
    n, i = len(pat), 0
    while i < n:
        if pat[i] != 0x5B:                          # not '[': an ordinary byte, '*' or '?'
            i += 1
            continue
        q = i + 1
        if q < n and pat[q] in b"!^":
            q += 1
        first = True
        while q < n and not (pat[q] == 0x5D and not first):
            first = False
            ch = pat[q]
            if ch >= 0x80:
                return False
            if ch == 0x5B and q + 1 < n and pat[q + 1] in b":=.":
                if pat[q + 1] != 0x3A:
                    return False
                end = pat.find(b":]", q + 2)
                if end < 0 or pat[q + 2:end] not in _CLASSES:
                    return False
                if end + 2 < n and pat[end + 2] == 0x2D:            # '[:alpha:]-z'
                    return False
                q = end + 2
                continue
            if q + 3 < n and pat[q + 1] == 0x2D and pat[q + 2] == 0x5B \
                    and pat[q + 3] in b":=.":                       # 'a-[:alpha:]'
                return False
            q += 1
        # terminated: continue after ']'; unterminated: '[' is literal, go on after it
        i = q + 1 if q < n else i + 1
    return True


def subject_matches(pattern, subject):
    """A gridmapfile/FQAN MAPPING pattern: ``fnmatch(pattern, subject, FNM_NOESCAPE) == 0``
    in the C locale (as LCMAPS), or exact equality: ``*`` matches any bytes including
    ``/``, ``?`` one byte, ``[...]`` a set (``!``/``^`` negate), backslash is literal.
    An irregular pattern (``pattern_is_regular``) matches only itself: a mapping never
    matches more than LCMAPS would.  Linear-backtracking, so hostile patterns cannot blow up."""
    pattern = bytes(pattern)
    subject = bytes(subject)
    if pattern == subject:
        return True
    return pattern_is_regular(pattern) and _fnmatch(pattern, subject)


def ban_pattern_matches(pattern, subject):
    """A BAN pattern: as ``subject_matches``, but an irregular pattern matches every
    subject: a ban never matches less than LCMAPS would (``core.bans`` also refuses to
    load one, so this is the second line)."""
    pattern = bytes(pattern)
    subject = bytes(subject)
    if pattern == subject or not pattern_is_regular(pattern):
        return True
    return _fnmatch(pattern, subject)


def _fnmatch(pattern, subject):
    np_, ns = len(pattern), len(subject)
    p = s = 0
    star_p = star_s = -1
    while s < ns:
        if p < np_ and pattern[p] == 0x2A:      # '*'
            while p < np_ and pattern[p] == 0x2A:
                p += 1
            if p == np_:
                return True
            star_p, star_s = p, s
            continue
        if p < np_:
            ok, q = _one(pattern, p, subject[s])
            if ok is None:
                return False
            if ok:
                p, s = q, s + 1
                continue
        if star_p < 0:
            return False
        star_s += 1
        p, s = star_p, star_s
    while p < np_ and pattern[p] == 0x2A:
        p += 1
    return p == np_
