"""Untrusted text shown to an admin or written into a log line. Pure."""


def printable(s):
    """One printable-ASCII line for any str/bytes (bytes read as latin-1; controls and
    non-ASCII as \\xNN / \\uNNNN / \\UNNNNNNNN, backslash doubled): a hostile name or
    path cannot split a line or drive the terminal."""
    if isinstance(s, (bytes, bytearray)):
        s = bytes(s).decode("latin-1")
    if s.isascii() and s.isprintable() and "\\" not in s:
        return s
    out = []
    for ch in s:
        o = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif 0x20 <= o < 0x7F:
            out.append(ch)
        elif o < 0x100:
            out.append("\\x%02x" % o)
        elif o < 0x10000:
            out.append("\\u%04x" % o)
        else:
            out.append("\\U%08x" % o)
    return "".join(out)


def clipped(s, limit=80):
    """``printable`` of at most ``limit`` characters, "..." when cut (error messages)."""
    return printable(s[:limit]) + ("..." if len(s) > limit else "")
