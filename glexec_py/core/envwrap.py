"""GLEXEC_ENV: the caller's environment carried across glexec.  Pure.

glexec keeps only ``GLEXEC_*`` (and ``payload.preserve_env``) for the payload, so pilots
(PanDA, gsido) pack their whole environment into one ``GLEXEC_*`` variable before the call
and unpack it on the target side (glexec-interface.md sections 3, 13.4).  This module is
the one place that defines the encoding; ``glexec_wrapenv.pl`` and
``glexec_unwrapenv.pl`` (packaging/sbin) and any later client use it.  docs/glexec-env.md
describes the same rules for people.

Encoding (version 1)::

    GLEXEC_ENV = "gxenv1:" + base64( zlib( NAME "=" VALUE "\\0" NAME "=" VALUE "\\0" ... ) )

* standard base64 alphabet with padding, no line breaks: the value is one shell word
  (``export GLEXEC_ENV=$(glexec_wrapenv.pl)`` needs no quoting);
* entries in environment order, each ``NAME=VALUE`` followed by one NUL; a name is
  non-empty and has neither ``=`` nor NUL, a value has no NUL (what execve can carry);
  any other byte (newlines, ``=`` in values, bytes that are not UTF-8) is kept as is;
* a name appears at most once; ``GLEXEC_ENV`` itself is never packed.

Decoding is total: anything that is not exactly such a value (wrong prefix, bad base64,
bad or trailing zlib data, more than ``MAX_DECODED`` bytes unpacked, an entry without
``=``, an empty or repeated name, a missing final NUL) raises ``EnvWrapError`` and
nothing is restored.

Restoring (``restorable``) never sets names glexec chose for the target or that steer
the loader or allocator: see ``NEVER_RESTORED`` / ``NEVER_RESTORED_PREFIXES``.
"""

PREFIX = b"gxenv1:"
MAX_DECODED = 4 << 20          # bytes of NAME=VALUE data; a zlib bomb stops here
WRAP_NAME = b"GLEXEC_ENV"

# glexec sets these for the target (core.envplan) or they describe the target's session:
# the caller's values must not replace them.  PATH is restored (gLExec's own unwrap
# script did, and PanDA's payload relies on the pilot's PATH); it only chooses among
# programs the caller could have named itself.
NEVER_RESTORED = (b"HOME", b"USER", b"LOGNAME", b"X509_USER_PROXY", b"_", b"GLIBC_TUNABLES", WRAP_NAME)
NEVER_RESTORED_PREFIXES = (b"LD_", b"MALLOC_", b"GLEXEC_")


class EnvWrapError(ValueError):
    """GLEXEC_ENV is not a value ``encode`` makes; the message is one short line."""


def encode(entries):
    """``[(name, value)]`` (bytes) -> the GLEXEC_ENV value (bytes).  ValueError for a
    name or value execve could not carry, or a repeated name."""
    import base64
    import zlib
    out, seen = [], set()
    for name, value in entries:
        name, value = bytes(name), bytes(value)
        if name == WRAP_NAME:
            continue
        if not name or b"=" in name or b"\0" in name or b"\0" in value:
            raise ValueError("environment entry that execve cannot carry")
        if name in seen:
            raise ValueError("name repeated in the environment")
        seen.add(name)
        out.append(name + b"=" + value + b"\0")
    return PREFIX + base64.b64encode(zlib.compress(b"".join(out), 6))


def decode(blob):
    """The GLEXEC_ENV value (bytes) -> ``[(name, value)]``, or EnvWrapError."""
    import base64
    import binascii
    import zlib
    blob = bytes(blob)
    if not blob.startswith(PREFIX):
        raise EnvWrapError("GLEXEC_ENV is not a glexec_wrapenv value (no 'gxenv1:' prefix)")
    try:
        packed = base64.b64decode(blob[len(PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        raise EnvWrapError("GLEXEC_ENV is not valid base64") from None
    inflater = zlib.decompressobj()
    try:
        data = inflater.decompress(packed, MAX_DECODED + 1)
    except zlib.error:
        raise EnvWrapError("GLEXEC_ENV is not valid compressed data") from None
    if len(data) > MAX_DECODED:
        raise EnvWrapError(f"GLEXEC_ENV unpacks to more than {MAX_DECODED} bytes")
    if not inflater.eof or inflater.unused_data or inflater.unconsumed_tail:
        raise EnvWrapError("GLEXEC_ENV compressed data is truncated or has trailing bytes")
    if not data:
        return []
    if not data.endswith(b"\0"):
        raise EnvWrapError("GLEXEC_ENV entries are not NUL-terminated")
    entries, seen = [], set()
    for entry in data[:-1].split(b"\0"):
        name, eq, value = entry.partition(b"=")
        if not eq or not name:
            raise EnvWrapError("GLEXEC_ENV holds an entry without a name")
        if name in seen or name == WRAP_NAME:
            raise EnvWrapError("GLEXEC_ENV names a variable twice")
        seen.add(name)
        entries.append((name, value))
    return entries


def environ_block(raw):
    """``[(name, value)]`` from an execve environment block (``/proc/self/environ``):
    NUL-separated ``NAME=VALUE``; the first occurrence of a name wins (as getenv)."""
    seen, out = set(), []
    for entry in bytes(raw).split(b"\0"):
        name, eq, value = entry.partition(b"=")
        if eq and name and name not in seen:
            seen.add(name)
            out.append((name, value))
    return out


def restorable(name):
    """May the caller's ``name`` be set again on the target side?"""
    return name not in NEVER_RESTORED and not name.startswith(NEVER_RESTORED_PREFIXES)


def restore(current, wrapped):
    """The environment for the command: ``current`` (the target's, as glexec made it;
    ``[(name, value)]``) without GLEXEC_ENV, then every restorable wrapped entry that
    glexec did not set (a name in ``current`` that glexec set for the target keeps its
    value, except PATH, which comes from the caller).  Order: current first."""
    wrapped_names = {n for n, _ in wrapped if restorable(n)}
    out = [(n, v) for n, v in current if n != WRAP_NAME and n not in wrapped_names]
    out += [(n, v) for n, v in wrapped if n in wrapped_names]
    return out
