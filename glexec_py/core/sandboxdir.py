"""The caller's sandbox directory (``mkgltempdir -t 777``, docs/mkgltempdir.md).  Pure.

A directory that the target owns and that, besides the target, only the *caller* may
write: the pilot copies its modules in, glexec writes the target proxy there as the target,
the payload runs there.  It is made that way by POSIX ACLs (the ``system.posix_acl_access``
extended attribute), never by group or other permission bits, and it carries the sticky bit
so the caller can neither remove nor rename the target's files (its proxy).

``parse_acl`` reads the attribute's binary form (Linux ``posix_acl_xattr``: a little-endian
u32 version 2, then (u16 tag, u16 perm, u32 id) entries); ``caller_sandbox`` decides.
"""

ACL_USER_OBJ, ACL_USER, ACL_GROUP_OBJ, ACL_GROUP, ACL_MASK, ACL_OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
ACL_VERSION = 2
W = 0o2
S_ISVTX = 0o1000


def parse_acl(raw):
    """``[(tag, perm, id)]`` from the xattr bytes; ValueError if it is not that format."""
    import struct
    raw = bytes(raw)
    if len(raw) < 4 or (len(raw) - 4) % 8 or struct.unpack_from("<I", raw)[0] != ACL_VERSION:
        raise ValueError("not a POSIX ACL (version 2) attribute")
    return [struct.unpack_from("<HHI", raw, off) for off in range(4, len(raw), 8)]


def encode_acl(entries):
    """The xattr bytes for ``[(tag, perm, id)]`` (ids of USER_OBJ, GROUP_OBJ, MASK and
    OTHER entries are ignored by the kernel; written as 0xffffffff like libacl)."""
    import struct
    out = [struct.pack("<I", ACL_VERSION)]
    for tag, perm, ident in entries:
        out.append(struct.pack("<HHI", tag, perm, 0xFFFFFFFF if ident is None else ident))
    return b"".join(out)


def caller_sandbox(mode, acl, target_uid, owner_uid, caller_uid):
    """Is a directory with ``mode`` (st_mode), owner ``owner_uid`` and access ACL ``acl``
    (``parse_acl`` entries, or None when it has none) one that only the target and the
    caller may write, with the sticky bit?  Returns (True, None) or (False, why)."""
    if owner_uid != target_uid:
        return False, "not owned by the target"
    if not mode & S_ISVTX:
        return False, "no sticky bit (the caller could replace the target's files)"
    if mode & 0o002:
        return False, "writable by others"
    if acl is None:
        return False, "group-writable without an ACL naming the caller"
    for tag, perm, ident in acl:
        if tag == ACL_GROUP_OBJ and perm & W:
            return False, "writable by its group"
        if tag == ACL_GROUP and perm & W:
            return False, f"ACL lets group {ident} write"
        if tag == ACL_USER and perm & W and ident not in (caller_uid, target_uid):
            return False, f"ACL lets user {ident} write"
        if tag == ACL_OTHER and perm & W:
            return False, "writable by others"
    return True, None
