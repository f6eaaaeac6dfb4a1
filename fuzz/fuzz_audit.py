"""atheris target: glexec_py.core.audit.encode (one JSON audit line per record).

The input is turned into a record (dict of str keys -> str / bytes / int / float / bool /
None / nested list and dict) by atheris.FuzzedDataProvider.

Oracles (beyond "no crash"):
  * encode returns bytes that are one line: printable ASCII 0x20..0x7E only, ending in
    exactly one '\\n';
  * audit.decode_line of that line gives back the input, where bytes (and str with lone
    surrogates) become bytes.decode("utf-8", "surrogateescape"), tuples become lists,
    keys are text (other bytes as \\xHH), and values longer than MAX_CHARS (4096) are cut
    and carry "\\u2026[truncated, sha256=<hex of the full value>]".
"""
import hashlib
import math
import os
import sys

import atheris

import _common
from _common import check

with atheris.instrument_imports():
    from glexec_py.core import audit


def _raw(s):
    try:
        return s.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return s.encode("utf-8", "surrogatepass")


def _cap(s, raw):
    if len(s) <= audit.MAX_CHARS:
        return s
    return s[:audit.MAX_CHARS] + "\u2026[truncated, sha256=" + hashlib.sha256(raw).hexdigest() + "]"


_PRINTABLE = bytes(range(0x20, 0x7F))


def _bytes_value(raw):
    """What decode_line gives back for bytes: UTF-8 as text (capped by characters), other
    bytes as surrogateescape text of the first MAX_CHARS bytes (+ the truncation mark)."""
    try:
        return _cap(raw.decode("utf-8"), raw)
    except UnicodeDecodeError:
        pass
    text = raw[:audit.MAX_CHARS].decode("utf-8", "surrogateescape")
    if len(raw) > audit.MAX_CHARS:
        text += "\u2026[truncated, sha256=" + hashlib.sha256(raw).hexdigest() + "]"
    return text


def _key(k):
    raw = k if type(k) is bytes else _raw(k)
    return raw.decode("utf-8", "backslashreplace")


def expected(v):
    if type(v) is str:
        try:
            v.encode("utf-8")
            return _cap(v, _raw(v))
        except UnicodeEncodeError:
            return _bytes_value(_raw(v))
    if type(v) is bytes:
        return _bytes_value(v)
    if isinstance(v, dict):
        return {_key(k): expected(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [expected(x) for x in v]
    return v


def same(a, b):
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def value(fdp, depth):
    kind = fdp.ConsumeIntInRange(0, 9 if depth < 4 else 6)
    if kind == 0:
        return fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 40))
    if kind == 1:
        return fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 40))
    if kind == 2:
        return fdp.ConsumeInt(fdp.ConsumeIntInRange(1, 40))
    if kind == 3:
        return fdp.ConsumeRegularFloat() if fdp.ConsumeBool() else fdp.ConsumeFloat()
    if kind == 4:
        return fdp.PickValueInList([None, True, False])
    if kind in (5, 6) and fdp.ConsumeIntInRange(0, 31):
        return fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 8))   # long values only 1 in 32:
        # escaping 4096 characters under instrumentation costs ~100 short values
    if kind == 5:   # long strings hit the cap
        s = fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 16)) or "x"
        return s * fdp.ConsumeIntInRange(1, 9000 // len(s) + 1)
    if kind == 6:
        return bytes(fdp.ConsumeBytes(8)) * fdp.ConsumeIntInRange(1, 1200)
    if kind in (7, 8):
        items = [value(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 4))]
        return tuple(items) if kind == 8 else items
    return record(fdp, depth + 1)


def record(fdp, depth=0):
    d = {}
    for _ in range(fdp.ConsumeIntInRange(0, 6)):
        k = fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 12))
        if fdp.ConsumeBool():
            k = _raw(k)   # bytes keys are decoded by encode
        d[k] = value(fdp, depth)
    return d


def TestOneInput(data):
    fdp = atheris.FuzzedDataProvider(data)
    rec = record(fdp)
    keys = [k if type(k) is str else k.decode("utf-8", "surrogateescape") for k in rec]
    if len(set(keys)) != len(keys):
        return   # a str and a bytes key with the same text: not a valid record
    line = audit.encode(rec)
    check(type(line) is bytes and line.endswith(b"\n"), "not a newline-terminated bytes line")
    body = line[:-1]
    check(not body.translate(None, _PRINTABLE), f"non-printable byte in {body[:200]!r}")
    try:
        back = audit.decode_line(body)
    except ValueError as e:
        raise _common.OracleViolation(f"decode_line fails: {e} on {body[:300]!r}")
    want = expected(rec)
    check(same(back, want), f"round trip differs:\n in  {want!r:.500}\n out {back!r:.500}")


if __name__ == "__main__":
    _common.seed(sys.argv, lambda: [bytes(range(256))])
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
