"""JSON for the hot path without the ``json`` package.  Pure.

``import json`` costs ~8 ms of a ~15 ms call: its Python layer imports ``re`` and, through
it, ``enum``, ``functools`` and ``collections``.  The parsing and encoding themselves are
done by its C accelerator ``_json`` (~0.3 ms to load), which this module drives directly
with exactly the settings ``json.loads`` and ``json.dumps(..., ensure_ascii=True)`` give it,
so the text written and the values read are the same.  Anything the fast path does not
take (input that is not plain ASCII, a syntax error) goes to ``json.loads`` itself, so the
result or the error is json's own.  ``_json`` is loaded with this module (not on first
use): the gridmapdir parses its index state under its lock, which should not wait for a
module load.
"""
import _json

_scanner = None
_NAN = float("nan")
_CONSTANTS = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": _NAN}
_SPACE = " \t\n\r"       # json.decoder.WHITESPACE


class _DecoderSettings:
    """The attributes ``_json.make_scanner`` reads: json.JSONDecoder()'s defaults."""
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = _CONSTANTS.__getitem__
    memo = None


def _scan():
    global _scanner
    if _scanner is None:
        _scanner = _json.make_scanner(_DecoderSettings())
    return _scanner


def _json_loads(data):
    import json
    return json.loads(data)


def loads(data):
    """``json.loads(data)`` for str, bytes or bytearray: the value, or json's ValueError."""
    if isinstance(data, (bytes, bytearray)):
        if not data.isascii() or b"\0" in data:
            return _json_loads(data)         # json's encoding detection (UTF-16/32, BOM)
        text = data.decode("ascii")
    else:
        text = data
    start = len(text) - len(text.lstrip(_SPACE))
    try:
        value, end = _scan()(text, start)
    except (StopIteration, ValueError):
        return _json_loads(data)             # json's own message for the error
    if text[end:].strip(_SPACE):
        return _json_loads(data)             # "Extra data"
    return value


def _not_serializable(o):
    raise TypeError(f"Object of type {o.__class__.__name__} is not JSON serializable")


def dumps(value, *, sort_keys=False, separators=(", ", ": ")):
    """``json.dumps(value, ensure_ascii=True, sort_keys=sort_keys, separators=separators)``."""
    if isinstance(value, str):
        return _json.encode_basestring_ascii(value)
    item_separator, key_separator = separators
    encode = _json.make_encoder({}, _not_serializable, _json.encode_basestring_ascii, None,
                                key_separator, item_separator, sort_keys, False, True)
    return "".join(encode(value, 0))
