"""The oracle for the gridmapfile/ban wildcard matcher: glibc's own fnmatch, as LCMAPS
calls it (``fnmatch(pattern, subject, FNM_NOESCAPE)`` after an exact ``strcmp``, C locale;
lcmaps-semantics.md §2).  Shared by fuzz/fuzz_gridmap.py, fuzz/fuzz_bans.py and
tests/core/test_fnmatch_libc.py.

The contract it checks (``core.gridmap``):
* a MAPPING pattern (``subject_matches``) never matches more than LCMAPS would;
* a BAN pattern (``ban_pattern_matches``) never matches less than LCMAPS would;
* on a well-formed ASCII pattern both equal LCMAPS exactly.  "Well formed" is decided here,
  independently of the code under test: ASCII, no ``[=``/``[.``, every ``[:`` opens a
  complete known class, no class next to a range ``-``.
"""
import ctypes
import functools
import locale

FNM_NOESCAPE = 2
CLASSES = (b"alpha", b"digit", b"alnum", b"upper", b"lower", b"space", b"blank", b"punct",
           b"print", b"graph", b"cntrl", b"xdigit")

locale.setlocale(locale.LC_ALL, "C")     # LCMAPS in gLExec never calls setlocale
_libc = ctypes.CDLL(None)
_libc.fnmatch.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int)
_libc.fnmatch.restype = ctypes.c_int


def lcmaps_matches(pattern, subject):
    """What LCMAPS decides for (pattern, subject); None when C strings cannot carry them."""
    if b"\0" in pattern or b"\0" in subject:
        return None
    return pattern == subject or _libc.fnmatch(pattern, subject, FNM_NOESCAPE) == 0


@functools.lru_cache(maxsize=4096)       # a fuzz input tries one pattern on many subjects
def well_formed_ascii(pattern):
    if not pattern.isascii():
        return False
    rest = pattern
    for name in CLASSES:
        rest = rest.replace(b"[:" + name + b":]", b"\x00")
    return not any(bad in rest for bad in (b"[:", b"[=", b"[.", b"\x00-", b"-\x00"))


def violations(pattern, subject, mapping_matches, ban_matches):
    """The broken parts of the contract for one pair, as messages ([] = fine)."""
    want = lcmaps_matches(pattern, subject)
    if want is None:
        return []
    out = []
    if mapping_matches and not want:
        out.append(f"mapping pattern {pattern!r} matches {subject!r}; LCMAPS would not")
    if want and not ban_matches:
        out.append(f"ban pattern {pattern!r} misses {subject!r}; LCMAPS would ban it")
    if well_formed_ascii(pattern) and (mapping_matches != want or ban_matches != want):
        out.append(f"well-formed {pattern!r} vs {subject!r}: mapping {mapping_matches}, "
                   f"ban {ban_matches}, LCMAPS {want}")
    return out
