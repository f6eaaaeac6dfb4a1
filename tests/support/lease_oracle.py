"""An independent model of the LCMAPS lease name for ASCII identities (the form OpenSSL's
oneline DNs have), shared by fuzz/fuzz_leases.py and tests/leases/test_lease_roundtrip.py.

For an ASCII DN without \\x01 the C encoder is simple: an alphanumeric byte lower-cased,
anything else ``%xx``.  ``decode`` inverts it (up to letter case), so the name determines
(lower-cased DN, groups text, mapcount): the injectivity LCMAPS promises."""
import re

_PCT = re.compile(rb"%([0-9a-f]{2})")


def model(dn, groups=(), mapcount=0):
    head = b"".join(bytes([c | 0x20]) if chr(c).isalpha() else bytes([c]) if chr(c).isalnum()
                    else b"%%%02x" % c for c in dn)
    tail = b":".join(groups)
    if mapcount > 0:
        tail += (b":" if groups else b"") + b"mapcount=%04d" % mapcount
    return head + (b":" + tail if groups or mapcount > 0 else b"")


def decode(name):
    """-> (lower-cased DN, tail after the first ':' or None); None if not a model name."""
    head, sep, tail = name.partition(b":")
    if _PCT.sub(b"", head).strip(b"abcdefghijklmnopqrstuvwxyz0123456789"):
        return None
    return _PCT.sub(lambda m: bytes([int(m.group(1), 16)]), head), (tail if sep else None)


def check_ascii(lease_name, dn, groups, mapcount):
    """Messages for every broken property of lease_name on an ASCII, \\x01-free DN."""
    out = []
    name = lease_name(dn, groups, mapcount)
    if name != model(dn, groups, mapcount):
        out.append(f"lease_name({dn!r}, {groups!r}, {mapcount}) = {name!r}, model "
                   f"{model(dn, groups, mapcount)!r}")
    got = decode(name)
    want_tail = model(b"x", groups, mapcount).partition(b":")[2] if groups or mapcount > 0 else None
    if got != (dn.lower(), want_tail):
        out.append(f"decode({name!r}) = {got!r}, not ({dn.lower()!r}, {want_tail!r})")
    if b"/" in name.partition(b":")[0] or b"\0" in name:
        out.append(f"{name!r} is not one file name")
    return out
