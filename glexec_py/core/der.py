"""A small strict DER reader shared by the parsers that cannot wait for `cryptography`
(X.509 Names, VOMS attribute certificates, token keys), and the one encoder the token keys
need (``encode``). Pure. Every reading function takes the caller's error class, so each
parser keeps raising only its own exception type."""


def tl(der, i, end, error):
    """(tag, content start, content end) of the TLV at ``der[i]``, which must end within
    ``end``. Refused: high tag numbers, indefinite or non-minimal lengths, lengths over
    4 bytes, truncation."""
    if end - i < 2:
        raise error("truncated DER")
    tag = der[i]
    if tag & 0x1F == 0x1F:
        raise error("high tag number form")
    b = der[i + 1]
    i += 2
    if b < 0x80:
        n = b
    elif b == 0x80:
        raise error("indefinite length")
    else:
        k = b & 0x7F
        if k > 4:
            raise error("length too large")
        if end - i < k:
            raise error("truncated length")
        if der[i] == 0:
            raise error("non-minimal length")
        n = int.from_bytes(der[i:i + k], "big")
        if n < 0x80:
            raise error("non-minimal length")
        i += k
    if n > end - i:
        raise error("length beyond the end of the data")
    return tag, i, i + n


def oid(b, error, max_len=128):
    """The dotted form of an OBJECT IDENTIFIER's content octets (minimal encoding only)."""
    if not b or len(b) > max_len:
        raise error("bad OID length")
    arcs = []
    v = 0
    start = True
    for c in b:
        if start and c == 0x80:
            raise error("non-minimal OID subidentifier")
        v = (v << 7) | (c & 0x7F)
        start = not c & 0x80
        if start:
            arcs.append(v)
            v = 0
    if not start:
        raise error("truncated OID")
    first = arcs[0]
    head = [0, first] if first < 40 else [1, first - 40] if first < 80 else [2, first - 80]
    return ".".join(str(a) for a in head + arcs[1:])


def encode(tag, content):
    """One DER TLV: ``tag`` (a low tag number octet), minimal definite length, ``content``."""
    n = len(content)
    if n < 0x80:
        return bytes((tag, n)) + content
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(size))) + size + content
