"""One canonical Distinguished Name: parse X.509 names from DER and from text, render one
documented canonical string.  Pure (no os/time/fs); at module level it imports only the
shared DER reader.

Data model
----------
``DN``  = tuple of RDNs, root first (the order of the DER encoding and of OpenSSL's oneline).
``RDN`` = non-empty tuple of ``(oid, value)`` pairs, sorted, where ``oid`` is the dotted
OID string (``"2.5.4.3"``) and ``value`` the decoded text, Unicode-NFC-normalised.
DNs are plain tuples: hashable, comparable, cheap.  Build them only through the parsers or
``make_dn`` (which normalises and sorts); ``canonical`` trusts its input.

Which string type a value had (PrintableString, UTF8String, BMPString, ...) is deliberately
not part of the DN: the same characters are the same name.  One-byte types (Printable,
IA5, Visible, Numeric, Teletex) are decoded as latin-1, like OpenSSL does.

The canonical form (``canonical``)
----------------------------------
``/NAME=VALUE/NAME=VALUE+NAME=VALUE...`` root first, like OpenSSL's oneline, so a plain
ASCII grid DN reads the same in both (``/DC=org/DC=example/CN=Alice``).

- NAME: the short name for well-known OIDs (table ``_NAMES``: C, ST, L, O, OU, CN, DC, UID,
  emailAddress, serialNumber, ...), the dotted OID otherwise.
- A multi-valued RDN is its sorted AVAs joined with ``+``.
- VALUE: NFC text; these characters are written as ``\\HH`` (two upper-case hex digits per
  UTF-8 byte): ``/ = + \\ " ,``, every character below U+0020, U+007F, the C1 controls
  U+0080-U+009F, the bidi/format/line-separator characters in ``_FMT`` (so an audit line
  cannot be visually reordered), and every space of a leading or trailing run.
  Everything else is literal UTF-8.  Hence the rendering is injective: a separator
  character inside a value is always escaped, and ``parse_canonical`` inverts it exactly
  (it re-renders and refuses any string that is not itself canonical).

Case is preserved and significant.  X.500 matching is case-insensitive only for some
attribute/string types (caseIgnoreMatch on DirectoryString, but not e.g. for IA5
emailAddress local parts or caseExactMatch attributes), and folding case would merge two
distinct certificate holders into one identity/account (gsexec lower-cases DNs and has
exactly that flaw).  The same rule is used for bans, lease keys and audit.

Text inputs
-----------
``parse_slash``    OpenSSL 3 ``X509_NAME_oneline`` form (ban files, grid-mapfiles).
``parse_rfc4514``  RFC 4514 / ``openssl x509 -nameopt RFC2253`` form (leaf first, ``,``).
``parse_canonical`` exact inverse of ``canonical``.
``parse_text``     an entry a human wrote: slash/canonical if it starts with ``/``,
                   RFC 4514 otherwise; a string that reads differently as slash and as
                   canonical form is refused as ambiguous.
All raise ``DNError`` (a ``ValueError``) and nothing else for bad input.
"""

from glexec_py.core import der as _der


class DNError(ValueError):
    """A name that cannot be parsed, or whose meaning would be a guess."""


# dotted OID -> canonical short name (OpenSSL's short names).
_NAMES = {
    "2.5.4.3": "CN",
    "2.5.4.4": "SN",
    "2.5.4.5": "serialNumber",
    "2.5.4.6": "C",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.9": "street",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "2.5.4.12": "title",
    "2.5.4.13": "description",
    "2.5.4.15": "businessCategory",
    "2.5.4.17": "postalCode",
    "2.5.4.41": "name",
    "2.5.4.42": "GN",
    "2.5.4.43": "initials",
    "2.5.4.44": "generationQualifier",
    "2.5.4.46": "dnQualifier",
    "2.5.4.65": "pseudonym",
    "2.5.4.97": "organizationIdentifier",
    "0.9.2342.19200300.100.1.1": "UID",
    "0.9.2342.19200300.100.1.3": "mail",
    "0.9.2342.19200300.100.1.25": "DC",
    "1.2.840.113549.1.9.1": "emailAddress",
    "1.2.840.113549.1.9.2": "unstructuredName",
    "1.3.6.1.4.1.311.60.2.1.1": "jurisdictionL",
    "1.3.6.1.4.1.311.60.2.1.2": "jurisdictionST",
    "1.3.6.1.4.1.311.60.2.1.3": "jurisdictionC",
}
_OIDS = {v: k for k, v in _NAMES.items()}     # canonical short name -> OID (exact case)

# Accepted attribute names in text input, compared case-insensitively.
_ALIASES = {k.lower(): v for k, v in _OIDS.items()}
_ALIASES.update({
    "commonname": "2.5.4.3", "surname": "2.5.4.4", "countryname": "2.5.4.6",
    "localityname": "2.5.4.7", "s": "2.5.4.8", "stateorprovincename": "2.5.4.8",
    "streetaddress": "2.5.4.9", "organizationname": "2.5.4.10",
    "organizationalunitname": "2.5.4.11", "givenname": "2.5.4.42",
    "userid": "0.9.2342.19200300.100.1.1", "rfc822mailbox": "0.9.2342.19200300.100.1.3",
    "domaincomponent": "0.9.2342.19200300.100.1.25",
    "e": "1.2.840.113549.1.9.1", "email": "1.2.840.113549.1.9.1",
})

# Format / bidi / separator characters escaped in the canonical form (fixed list, so the
# canonical string never depends on the Unicode database version).
_FMT = frozenset([0x061C, 0x200B, 0x200C, 0x200D, 0x200E, 0x200F, 0x2028, 0x2029,
                  0x202A, 0x202B, 0x202C, 0x202D, 0x202E, 0x2060, 0x2061, 0x2062,
                  0x2063, 0x2064, 0x2066, 0x2067, 0x2068, 0x2069, 0xFEFF])
_CANON_SPECIAL = frozenset('/=+\\",')
_HEX = "0123456789abcdefABCDEF"
_NAMECHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-")

MAX_DER = 65536


# --- values -------------------------------------------------------------------------

def _nfc(v):
    if v.isascii():
        return v
    import unicodedata          # lazily: only non-ASCII values pay for it
    return unicodedata.normalize("NFC", v)


def make_dn(rdns):
    """A DN from an iterable of RDNs, each an iterable of ``(oid, value)``: validates the
    OIDs, NFC-normalises values, sorts each RDN.  Raises ``DNError``."""
    out = []
    for rdn in rdns:
        avas = []
        for oid, value in rdn:
            if not isinstance(oid, str) or not _is_dotted(oid):
                raise DNError(f"not a dotted OID: {oid!r}")
            if not isinstance(value, str):
                raise DNError("attribute value is not text")
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise DNError("attribute value contains a lone surrogate") from None
            avas.append((oid, _nfc(value)))
        if not avas:
            raise DNError("empty RDN")
        avas.sort()
        out.append(tuple(avas))
    return tuple(out)


def _is_dotted(s):
    parts = s.split(".")
    if len(parts) < 2:
        return False
    for p in parts:
        if not p or not p.isascii() or not p.isdigit() or (len(p) > 1 and p[0] == "0"):
            return False
    if parts[0] not in ("0", "1", "2"):
        return False
    if parts[0] != "2" and int(parts[1]) >= 40:
        return False
    return True


def attribute_oid(name):
    """The dotted OID for an attribute name as accepted in text input (case-insensitive
    alias or dotted OID), or None."""
    oid = _ALIASES.get(name.lower())
    if oid is not None:
        return oid
    if _is_dotted(name):
        return name
    return None


def attribute_name(oid):
    """The canonical short name of an OID, or the dotted OID itself."""
    return _NAMES.get(oid, oid)


# --- DER ----------------------------------------------------------------------------

def _tl(der, i, end):
    return _der.tl(der, i, end, DNError)


def _decode_oid(b):
    return _der.oid(b, DNError, 128)


_ONE_BYTE = {0x12, 0x13, 0x14, 0x16, 0x1A}   # Numeric, Printable, Teletex, IA5, Visible


def _decode_string(tag, raw):
    try:
        if tag == 0x0C:
            return raw.decode("utf-8")
        if tag in _ONE_BYTE:
            return raw.decode("latin-1")
        if tag == 0x1E:
            if len(raw) % 2:
                raise DNError("BMPString of odd length")
            return raw.decode("utf-16-be")
        if tag == 0x1C:
            if len(raw) % 4:
                raise DNError("UniversalString length not a multiple of 4")
            return raw.decode("utf-32-be")
    except UnicodeDecodeError as e:
        raise DNError(f"invalid string encoding: {e.reason}") from None
    raise DNError(f"unsupported attribute value type 0x{tag:02x}")


def _decode_tlv_value(der):
    """One complete DER string TLV (used for RFC 4514 ``#hex`` values)."""
    tag, s, e = _tl(der, 0, len(der))
    if e != len(der):
        raise DNError("trailing bytes after the value")
    return _decode_string(tag, der[s:e])


def parse_der_name(der):
    """DN from the DER encoding of an X.509 Name.  Strict: exactly one SEQUENCE, no
    trailing bytes, definite minimal lengths, non-empty RDN sets, each AVA exactly
    SEQUENCE { OID, string }, strings of the supported types validly encoded."""
    der = bytes(der)
    if len(der) > MAX_DER:
        raise DNError("name too large")
    tag, s, e = _tl(der, 0, len(der))
    if tag != 0x30:
        raise DNError("Name is not a SEQUENCE")
    if e != len(der):
        raise DNError("trailing bytes after the Name")
    rdns = []
    i = s
    while i < e:
        tag, rs, re_ = _tl(der, i, e)
        if tag != 0x31:
            raise DNError("RDN is not a SET")
        if rs == re_:
            raise DNError("empty RDN")
        avas = []
        j = rs
        while j < re_:
            tag, as_, ae = _tl(der, j, re_)
            if tag != 0x30:
                raise DNError("AttributeTypeAndValue is not a SEQUENCE")
            tag, os_, oe = _tl(der, as_, ae)
            if tag != 0x06:
                raise DNError("attribute type is not an OID")
            oid = _decode_oid(der[os_:oe])
            tag, vs, ve = _tl(der, oe, ae)
            if ve != ae:
                raise DNError("trailing bytes in AttributeTypeAndValue")
            avas.append((oid, _nfc(_decode_string(tag, der[vs:ve]))))
            j = ae
        avas.sort()
        rdns.append(tuple(avas))
        i = re_
    return tuple(rdns)


# --- canonical ----------------------------------------------------------------------

def _hex_bytes(ch):
    return "".join("\\%02X" % b for b in ch.encode("utf-8"))


def _canon_value(v):
    n = len(v)
    lead = n - len(v.lstrip(" "))
    trail = n - len(v.rstrip(" "))
    out = []
    for idx, ch in enumerate(v):
        o = ord(ch)
        if (o < 0x20 or o == 0x7F or ch in _CANON_SPECIAL
                or (0x80 <= o <= 0x9F) or o in _FMT
                or (o == 0x20 and (idx < lead or idx >= n - trail))):
            out.append(_hex_bytes(ch))
        else:
            out.append(ch)
    return "".join(out)


def canonical(dn):
    """The canonical string of a DN (see the module docstring).  ``()`` -> ``""``."""
    parts = []
    for rdn in dn:
        parts.append("/")
        first = True
        for oid, value in rdn:
            if not first:
                parts.append("+")
            first = False
            parts.append(_NAMES.get(oid, oid))
            parts.append("=")
            parts.append(_canon_value(value))
    return "".join(parts)


def _unhex_text(s, allow_chars=""):
    """Text with ``\\HH`` escapes (UTF-8 bytes) -> str; ``\\<c>`` for c in allow_chars."""
    if "\\" not in s:
        return s
    buf = bytearray()
    i = 0
    n = len(s)
    while i < n:
        c = s[i]
        if c == "\\":
            if i + 2 < n and s[i + 1] in _HEX and s[i + 2] in _HEX:
                buf.append(int(s[i + 1:i + 3], 16))
                i += 3
                continue
            if i + 1 < n and s[i + 1] in allow_chars:
                buf += s[i + 1].encode("utf-8")
                i += 2
                continue
            raise DNError("bad escape")
        buf += c.encode("utf-8")
        i += 1
    try:
        return buf.decode("utf-8")
    except UnicodeDecodeError:
        raise DNError("escaped bytes are not valid UTF-8") from None


def parse_canonical(s):
    """Exact inverse of ``canonical``; anything not produced by it raises ``DNError``."""
    if not isinstance(s, str):
        raise DNError("not text")
    if s == "":
        return ()
    if s[0] != "/":
        raise DNError("canonical DN must start with '/'")
    rdns = []
    try:
        for part in s[1:].split("/"):
            avas = []
            for ava in part.split("+"):
                name, eq, val = ava.partition("=")
                if not eq:
                    raise DNError("missing '=' in canonical DN")
                oid = _OIDS.get(name)
                if oid is None:
                    if not _is_dotted(name):
                        raise DNError(f"unknown attribute name {name!r}")
                    oid = name
                avas.append((oid, _unhex_text(val)))
            rdns.append(avas)
    except UnicodeEncodeError:
        raise DNError("lone surrogate in DN text") from None
    dn = make_dn(rdns)
    if canonical(dn) != s:
        raise DNError("not in canonical form")
    return dn


# --- OpenSSL oneline ----------------------------------------------------------------

def oneline(dn):
    """What OpenSSL 3 ``X509_NAME_oneline`` prints for this DN when its values are
    UTF8String/PrintableString: ``\\xHH`` for bytes outside 0x20..0x7E, ``\\/`` and ``\\+``
    escaped, backslash itself NOT escaped, multi-valued RDNs joined with ``+``.
    (Ambiguous by construction; used only to match LCMAPS-style wildcard patterns.)"""
    parts = []
    for rdn in dn:
        sep = "/"
        for oid, value in rdn:
            parts.append(sep)
            sep = "+"
            parts.append(_NAMES.get(oid, oid))
            parts.append("=")
            for b in value.encode("utf-8"):
                if b < 0x20 or b > 0x7E:
                    parts.append("\\x%02X" % b)
                elif b == 0x2F or b == 0x2B:
                    parts.append("\\" + chr(b))
                else:
                    parts.append(chr(b))
    return "".join(parts)


def _attr_at(s, j):
    """If ``s[j:]`` starts with ``name=``, return ``(name, index after '=')``."""
    n = len(s)
    k = j
    while k < n and s[k] in _NAMECHARS:
        k += 1
    if k < n and s[k] == "=":
        return s[j:k], k + 1
    return None


def _finish(buf):
    try:
        return bytes(buf).decode("utf-8")
    except UnicodeDecodeError:
        raise DNError("value is not valid UTF-8 (after \\xHH decoding)") from None


def parse_slash(s):
    """DN from OpenSSL oneline text (``/C=NL/O=Example Grid/CN=Andr\\xC3\\xA9``).

    - ``\\xHH`` is a byte; the bytes of a value are decoded as UTF-8 (strict);
    - ``\\/`` and ``\\+`` are a literal ``/`` / ``+`` (OpenSSL 3 escapes them);
    - any other backslash is literal (OpenSSL does not escape backslashes);
    - an unescaped ``/`` (``+``) starts a new RDN (AVA of the same RDN) only when followed
      by ``attr=`` with a known attribute name or dotted OID; followed by anything without
      ``=`` it is part of the value (``CN=host/ce.example.org``, ``CN=a+b``);
    - ambiguous, hence ``DNError``: ``/`` or ``+`` followed by ``word=`` with an unknown
      word, and ``\\/`` or ``\\+`` followed by ``attr=`` (a value ending in a backslash
      prints the same way).
    Attribute names: case-insensitive aliases (E/Email/emailAddress, UID/userId, ...)."""
    if not isinstance(s, str):
        raise DNError("not text")
    if s == "":
        return ()
    if s[0] != "/":
        raise DNError("slash-form DN must start with '/'")
    a = _attr_at(s, 1)
    if a is None or attribute_oid(a[0]) is None:
        raise DNError("slash-form DN must start with '/attr='")
    oid = attribute_oid(a[0])
    i = a[1]
    n = len(s)
    rdns = []
    avas = []
    buf = bytearray()
    try:
        while i < n:
            c = s[i]
            if c == "\\":
                if i + 3 < n and s[i + 1] in "xX" and s[i + 2] in _HEX \
                        and s[i + 3] in _HEX:
                    buf.append(int(s[i + 2:i + 4], 16))
                    i += 4
                    continue
                if i + 1 < n and s[i + 1] in "/+":
                    if _attr_at(s, i + 2) is not None:
                        raise DNError(f"ambiguous: '\\{s[i + 1]}' followed by 'attr=' at "
                                      f"offset {i} (escaped separator or a value ending "
                                      "in a backslash?); write the DN in RFC 4514 form")
                    buf.append(ord(s[i + 1]))
                    i += 2
                    continue
                buf.append(0x5C)
                i += 1
                continue
            if c == "/" or c == "+":
                a = _attr_at(s, i + 1)
                if a is None:
                    buf.append(ord(c))
                    i += 1
                    continue
                noid = attribute_oid(a[0]) if a[0] else None
                if noid is None:
                    raise DNError(f"ambiguous: {c!r} followed by unknown attribute "
                                  f"{a[0]!r}= at offset {i}")
                avas.append((oid, _finish(buf)))
                if c == "/":
                    rdns.append(avas)
                    avas = []
                oid = noid
                buf = bytearray()
                i = a[1]
                continue
            buf += c.encode("utf-8")
            i += 1
    except UnicodeEncodeError:
        raise DNError("lone surrogate in DN text") from None
    avas.append((oid, _finish(buf)))
    rdns.append(avas)
    return make_dn(rdns)


# --- RFC 4514 -----------------------------------------------------------------------

_4514_ESCAPABLE = ' "#+,;<>\\='


def parse_rfc4514(s):
    """DN from an RFC 4514 string (leaf first, ``,`` between RDNs, ``+`` inside one):
    ``\\HH`` (UTF-8 bytes) and ``\\<special>`` escapes, ``#hex`` BER values of the
    supported string types; spaces around separators and unescaped leading/trailing
    spaces of a value are ignored.  Unescaped ``" ; < >`` or NUL raise ``DNError``."""
    if not isinstance(s, str):
        raise DNError("not text")
    n = len(s)
    i = 0
    rdns = []
    avas = []
    if s.strip(" ") == "":
        if s == "":
            return ()
        raise DNError("blank DN")
    try:
        while True:
            while i < n and s[i] == " ":
                i += 1
            k = i
            while k < n and s[k] in _NAMECHARS:
                k += 1
            name = s[i:k]
            oid = attribute_oid(name) if name else None
            if oid is None:
                raise DNError(f"bad attribute type {name!r} at offset {i}")
            i = k
            while i < n and s[i] == " ":
                i += 1
            if i >= n or s[i] != "=":
                raise DNError(f"expected '=' at offset {i}")
            i += 1
            while i < n and s[i] == " ":
                i += 1
            if i < n and s[i] == "#":
                k = i + 1
                while k < n and s[k] in _HEX:
                    k += 1
                hx = s[i + 1:k]
                if not hx or len(hx) % 2:
                    raise DNError("bad #hex value")
                value = _decode_tlv_value(bytes.fromhex(hx))
                i = k
                while i < n and s[i] == " ":
                    i += 1
            else:
                buf = bytearray()
                keep = 0
                while i < n:
                    c = s[i]
                    if c == "\\":
                        if i + 2 < n and s[i + 1] in _HEX and s[i + 2] in _HEX:
                            buf.append(int(s[i + 1:i + 3], 16))
                            i += 3
                        elif i + 1 < n and s[i + 1] in _4514_ESCAPABLE:
                            buf.append(ord(s[i + 1]))
                            i += 2
                        else:
                            raise DNError(f"bad escape at offset {i}")
                        keep = len(buf)
                        continue
                    if c in ",+":
                        break
                    if c in '";<>\x00':
                        raise DNError(f"unescaped {c!r} at offset {i}")
                    buf += c.encode("utf-8")
                    i += 1
                    if c != " ":
                        keep = len(buf)
                value = _finish(buf[:keep])
            avas.append((oid, value))
            if i >= n:
                rdns.append(avas)
                break
            if s[i] == "+":
                i += 1
                continue
            if s[i] == ",":
                rdns.append(avas)
                avas = []
                i += 1
                continue
            raise DNError(f"unexpected {s[i]!r} at offset {i}")
    except UnicodeEncodeError:
        raise DNError("lone surrogate in DN text") from None
    except ValueError as e:
        if isinstance(e, DNError):
            raise
        raise DNError(str(e)) from None
    rdns.reverse()
    return make_dn(rdns)


def _rfc4514_value(v):
    out = []
    n = len(v)
    for idx, ch in enumerate(v):
        o = ord(ch)
        if ch in ',+"\\<>;=' or (ch == "#" and idx == 0) \
                or (ch == " " and (idx == 0 or idx == n - 1)):
            out.append("\\" + ch)
        elif o < 0x20 or o == 0x7F or (0x80 <= o <= 0x9F) or o in _FMT or ch == "*":
            out.append(_hex_bytes(ch))      # "*" as \2A: ban files read a bare * as wildcard
        else:
            out.append(ch)
    return "".join(out)


def rfc4514(dn):
    """RFC 4514 rendering (leaf first); ``parse_rfc4514(rfc4514(d)) == d``."""
    return ",".join("+".join(f"{_NAMES.get(o, o)}={_rfc4514_value(v)}" for o, v in rdn)
                    for rdn in reversed(dn))


# --- human-written entries ------------------------------------------------------------

def parse_text(s):
    """A DN as a person writes it (ban files, YAML): starting with ``/`` it is read both
    as canonical and as OpenSSL slash form (the two must agree, or one must fail);
    otherwise RFC 4514.  Empty -> ``DNError``."""
    if not isinstance(s, str) or s == "":
        raise DNError("empty DN")
    if s[0] != "/":
        return parse_rfc4514(s)
    try:
        c = parse_canonical(s)
    except DNError:
        c = None
    try:
        o = parse_slash(s)
    except DNError:
        if c is None:
            raise
        return c
    if c is not None and c != o:
        raise DNError("ambiguous: reads differently as canonical form and as OpenSSL "
                      "oneline form; write the DN in RFC 4514 form")
    return o


def is_rdn_prefix(prefix, dn):
    """True if ``prefix`` is ``dn`` or an ancestor of it, RDN-wise (never string-wise:
    ``CN=Al`` is not a prefix of ``CN=Alice``).  Grouping-insensitive: the AVAs of
    ``prefix`` must fill whole RDNs of ``dn`` in order, each RDN compared as a set, so
    ``/CN=a/UID=b`` (two RDNs) and ``/CN=a+UID=b`` (one) are treated alike.  OpenSSL's
    pre-3.0 oneline form could not show multi-valued RDNs, so a ban written that way must
    still hit.  An empty prefix is never a match."""
    flat = [ava for rdn in prefix for ava in rdn]
    if not flat:
        return False
    pos = 0
    total = len(flat)
    for rdn in dn:
        k = len(rdn)
        if pos + k > total:
            return False
        if k == 1:
            if flat[pos] != rdn[0]:
                return False
        elif tuple(sorted(flat[pos:pos + k])) != rdn:
            return False
        pos += k
        if pos == total:
            return True
    return False
