"""Audit record encoding (security.md 2.11, glexec-interface.md section 9).  Pure.

``encode`` writes one JSON object per line, pure printable ASCII, without importing
``json`` (start-up cost); ``decode_line`` reads one back.  ``classic_line`` renders
gLExec's syslog line.

Values that are not UTF-8 (a DN, FQAN, argument or path holding other bytes) are written
so the line stays valid JSON of valid Unicode for ``jq`` and log pipelines, and reversibly
(docs/audit-format.md)::

    {"bytes_b64": "<base64 of the bytes>", "text": "<UTF-8, other bytes as \\xHH>"}

``text`` is for people; ``bytes_b64`` is the value.  A value longer than MAX_CHARS bytes
keeps its first MAX_CHARS bytes and adds ``"sha256": "<hex of the whole value>"``.
``decode_line`` turns exactly these objects back into the str whose
``encode("utf-8", "surrogateescape")`` is the original bytes (the form the engine and the
back-mapper use); the key ``bytes_b64`` is reserved for this.
"""

MAX_CHARS = 4096

# JSON escapes for the ASCII range; printable characters other than '"' and '\' map to
# themselves.  Everything else (non-ASCII) is handled in _esc_str.
_ASCII = (["\\u%04x" % c for c in range(32)] + [chr(c) for c in range(32, 127)]
          + ["\\u007f"])
_ASCII[8], _ASCII[9], _ASCII[10], _ASCII[12], _ASCII[13] = "\\b", "\\t", "\\n", "\\f", "\\r"
_ASCII[0x22], _ASCII[0x5C] = '\\"', "\\\\"
_TABLE = {i: e for i, e in enumerate(_ASCII) if e != chr(i)}


def _raw_bytes(s):
    try:
        return s.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return s.encode("utf-8", "surrogatepass")


BYTES_KEY = "bytes_b64"


def _cap(s, raw=None):
    if len(s) <= MAX_CHARS:
        return s
    import hashlib
    digest = hashlib.sha256(_raw_bytes(s) if raw is None else raw).hexdigest()
    return s[:MAX_CHARS] + f"\u2026[truncated, sha256={digest}]"


def _esc_value(s):
    """A str value: as JSON text if it is valid Unicode, else (lone surrogates: undecodable
    bytes) the bytes object."""
    if not s.isascii():
        try:
            s.encode("utf-8")
        except UnicodeEncodeError:
            return _esc_bytes(_raw_bytes(s))
    return _esc_str(_cap(s))


def _esc_bytes(raw):
    try:
        return _esc_str(_cap(raw.decode("utf-8"), raw))
    except UnicodeDecodeError:
        pass
    import binascii
    cut = raw[:MAX_CHARS]
    out = ['{"' + BYTES_KEY + '":"', binascii.b2a_base64(cut, newline=False).decode("ascii"), '","text":',
           _esc_str(cut.decode("utf-8", "backslashreplace"))]
    if len(raw) > MAX_CHARS:
        import hashlib
        out.append(',"sha256":"' + hashlib.sha256(raw).hexdigest() + '"')
    out.append("}")
    return "".join(out)


def _esc_key(k):
    """A key: keys are names glexec chose; one that is not valid Unicode is written as
    text with \\xHH for the other bytes (never happens; not reversible)."""
    if not isinstance(k, str):
        k = bytes(k) if isinstance(k, (bytes, bytearray)) else str(k).encode("utf-8", "surrogateescape")
    elif k.isascii():
        return _esc_str(k)
    else:
        k = _raw_bytes(k)
    return _esc_str(k.decode("utf-8", "backslashreplace"))


def _esc_str(s):
    """Valid Unicode (no lone surrogates) -> a JSON string of printable ASCII."""
    if s.isascii():
        return '"' + s.translate(_TABLE) + '"'
    out = ['"']
    for ch in s:
        o = ord(ch)
        if o < 128:
            out.append(_ASCII[o])
        elif o < 0x10000:
            out.append("\\u%04x" % o)
        else:
            o -= 0x10000
            out.append("\\u%04x\\u%04x" % (0xD800 | (o >> 10), 0xDC00 | (o & 0x3FF)))
    out.append('"')
    return "".join(out)


def _enc(v, out):
    t = type(v)
    if t is str:
        out.append(_esc_value(v))
    elif isinstance(v, (bytes, bytearray, memoryview)):
        out.append(_esc_bytes(bytes(v)))
    elif v is None:
        out.append("null")
    elif v is True:
        out.append("true")
    elif v is False:
        out.append("false")
    elif isinstance(v, int):
        out.append(int.__repr__(v))
    elif isinstance(v, float):
        if v != v:
            out.append("NaN")
        elif v in (float("inf"), float("-inf")):
            out.append("Infinity" if v > 0 else "-Infinity")
        else:
            out.append(float.__repr__(v))
    elif isinstance(v, dict):
        out.append("{")
        first = True
        for k, item in v.items():
            if not first:
                out.append(",")
            first = False
            out.append(_esc_key(k))
            out.append(":")
            _enc(item, out)
        out.append("}")
    elif isinstance(v, (list, tuple)):
        out.append("[")
        first = True
        for item in v:
            if not first:
                out.append(",")
            first = False
            _enc(item, out)
        out.append("]")
    elif isinstance(v, str):
        _enc(str.__str__(v), out)
    else:
        # Never fail an audit write over a value type: record its repr.
        out.append(_esc_value(repr(v)))


def encode(record):
    """One JSON object on one line: printable ASCII only, ending in ``\\n``.

    Keys keep insertion order; str/bytes/int/bool/None/float/list/tuple/dict (nested).
    bytes that are UTF-8 and str without lone surrogates are JSON strings; anything else
    is the ``bytes_b64`` object (module docstring).  Strings longer than 4096 characters
    are cut and get ``\u2026[truncated, sha256=<hex of the full value>]``.
    """
    out = []
    _enc(record, out)
    out.append("\n")
    return "".join(out).encode("ascii")


def unescape(obj):
    """``json.loads`` object_hook: a ``bytes_b64`` object (exactly as ``encode`` writes
    it) -> the str whose surrogateescape encoding is those bytes (a cut one followed by
    ``\u2026[truncated, sha256=...]``); any other object unchanged."""
    if BYTES_KEY not in obj or set(obj) - {BYTES_KEY, "text", "sha256"} or "text" not in obj \
            or not all(type(v) is str for v in obj.values()):
        return obj
    import binascii
    try:
        raw = binascii.a2b_base64(obj[BYTES_KEY].encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError):
        return obj
    digest = obj.get("sha256")
    if digest is None:
        try:
            raw.decode("utf-8")
            return obj                   # not a form encode makes: UTF-8 is written as text
        except UnicodeDecodeError:
            pass
        return raw.decode("utf-8", "surrogateescape")
    return raw.decode("utf-8", "surrogateescape") + f"\u2026[truncated, sha256={digest}]"


def decode_line(line):
    """One audit line (bytes or str) -> the record, with ``bytes_b64`` values turned back
    (``unescape``).  ValueError if it is not JSON."""
    import json
    return json.loads(line, object_hook=unescape)


# --- gLExec's classic syslog line ---------------------------------------------------

_CLASSIC = None     # built on first use (import-time budget)


def _classic_table():
    global _CLASSIC
    t = (["\\x%02x" % c for c in range(32)] + [chr(c) for c in range(32, 127)]
         + ["\\x%02x" % c for c in range(127, 256)])
    t[0x0A], t[0x22], t[0x5C] = "\\n", '\\"', "\\\\"
    _CLASSIC = t
    return t


def _classic(v):
    if v is None:
        return ""
    if isinstance(v, str):
        v = _raw_bytes(v)
    elif not isinstance(v, bytes):
        v = bytes(v) if isinstance(v, (bytearray, memoryview)) else str(v).encode(
            "utf-8", "surrogateescape")
    table = _CLASSIC or _classic_table()
    return "".join([table[b] for b in v])


def classic_line(caller_user, caller_group, target_user, target_group, cwd, cmd, resolved,
                 args):
    """gLExec's per-switch syslog line (glexec-interface.md section 9), one printable
    ASCII line: control characters, non-ASCII, ``"`` and ``\\`` in user data escaped as
    ``\\n``, ``\\xHH``, ``\\"``, ``\\\\``."""
    line = (f"real_user({_classic(caller_user)}),real_group({_classic(caller_group)})"
            f"->mapped_user({_classic(target_user)}),mapped_group({_classic(target_group)})"
            f' cwd: "{_classic(cwd)}" cmd: "{_classic(cmd)}" (="{_classic(resolved)}")')
    if args:
        line += " args: " + " ".join(f'"{_classic(a)}"' for a in args)
    return line


def identity_line(dn, fqans, uid, gid, groups, lease=None, kind="x509"):
    """The identity for a site's central log collector, in LCMAPS's form
    (``LCMAPS CRED FINAL: DN:"<dn>"->mapped uid:'<uid>',pgid:'<gid>',sgid:'<gid>'``,
    glexec-interface.md section 9), with each FQAN as ``,FQAN:"<fqan>"`` after the DN
    (for a token: ``TOKEN:"<iss>,<sub>"`` and ``GROUP:"..."``) and the pool lease as
    `` lease:"<name>"``.  One printable ASCII line, user data escaped as in ``classic_line``."""
    who, each = ("DN", "FQAN") if kind == "x509" else ("TOKEN", "GROUP")
    line = f'LCMAPS CRED FINAL: {who}:"{_classic(dn)}"' + "".join(f',{each}:"{_classic(f)}"' for f in fqans)
    line += f"->mapped uid:'{int(uid)}',pgid:'{int(gid)}'" + "".join(f",sgid:'{int(g)}'" for g in groups if g != gid)
    if lease:
        line += f' lease:"{_classic(lease)}"'
    return line


# --- the OSG tracking monitor's lines, which Gratia's gLExec probe reads ---------------

def monitor_ident(monitor_pid, glexec_pid):
    """The syslog ident of the monitor lines: ``glexec.mon[<monitor pid>#<glexec pid>]``."""
    return f"glexec.mon[{int(monitor_pid)}#{int(glexec_pid)}]"


def monitor_started(target_uid, dn, voms=None, fqans=()):
    """The lines logged when the payload starts (glexec-interface.md sections 9-10):
    ``Started, target uid N``, ``Used DN: "<dn>"``, then with VOMS attributes
    ``Used VO: "<vo>" Issuer: "<issuer dn>"`` and ``Used FQAN: "<fqan>"`` per FQAN.
    ``voms``: (vo, issuer) or None.  Printable ASCII, user data escaped as in classic_line."""
    lines = [f"Started, target uid {int(target_uid)}"]
    if dn is not None:
        lines.append(f'Used DN: "{_classic(dn)}"')
    if voms is not None:
        lines.append(f'Used VO: "{_classic(voms[0])}" Issuer: "{_classic(voms[1])}"')
    lines += [f'Used FQAN: "{_classic(f)}"' for f in fqans]
    return lines


def monitor_terminated(cpu_user, cpu_system):
    """``Terminated, CPU user X system Y``: whole seconds, as the monitor's getrusage
    ``tv_sec`` (Gratia's parser reads integers)."""
    return f"Terminated, CPU user {int(cpu_user)} system {int(cpu_system)}"


class Chain:
    """The seq/prev chain the audit sink writes, checked one line at a time (bytes, without
    the newline).  A chained record has ``seq`` one more than the line before (1 after an
    unchained line, at the start of a file, or to start a new chain) and ``prev`` = SHA-256
    of the line before ("" when there is none: a new or truncated file).  Lines without a
    chain (log-only mode, older versions) are accepted until the first chained one; after
    it, every line must chain.  ``state`` and ``Chain(*state)`` carry it across reads."""
    __slots__ = ("seq", "digest")

    def __init__(self, seq=None, digest=b""):
        self.seq = seq          # the last line's seq; 0: it had none; None: no line yet
        self.digest = digest    # hex SHA-256 of the last line; b"" before the first

    @property
    def state(self):
        return self.seq, self.digest

    def step(self, line):
        """Take the next line; the reason it breaks the chain, or None."""
        import _sha256      # builtin: hashlib would load OpenSSL's (~8 ms)
        at = line.rfind(b',"seq":')
        seq_field = line[at + 7:].split(b",", 1)[0] if at >= 0 else b""
        pv = line.rfind(b',"prev":"')
        prev_field = line[pv + 9:].split(b'"', 1)[0] if pv >= 0 else None
        why = None
        if not seq_field.isdigit():
            seq = 0
            if self.seq:
                why = "record without a sequence number after chained records"
        else:
            seq = int(seq_field)
            restart = seq == 1 and prev_field == b""
            faults = []
            if not restart and seq != (self.seq or 0) + 1:
                faults.append(f"sequence {seq} follows {self.seq or 0}")
            if not restart and prev_field != self.digest:
                faults.append("hash of the previous line does not match")
            why = "; ".join(faults) or None
        self.seq, self.digest = seq, _sha256.sha256(line).hexdigest().encode()
        return why


def chain_breaks(lines):
    """Where a sequence of audit lines (bytes, without newlines) breaks the seq/prev chain
    that the audit sink writes: [(index, why)]. Empty for an untouched file. A deleted,
    inserted, reordered or edited line shows up here."""
    chain = Chain()
    return [(i, why) for i, line in enumerate(lines) if (why := chain.step(line)) is not None]
