"""Does a connection to the engine service come from the glexec shim of the call it hands
over?  Pure: compares the hand-off's facts with what the kernel said about the peer.

The service trusts only the shim: a root peer (``SO_PEERCRED`` euid 0) that is the very
process the hand-off names (its pid), still running as the caller the hand-off describes
(``/proc/<pid>/status``, read while a pidfd kept that pid from being reused): real uid/gid
the caller's, effective and saved uid/gid 0 (the setuid shim before its switch), the
caller's supplementary groups.  Anything else is refused with a reason for the service's
log: a peer that is not the shim cannot make the service act for another process.
"""


def status_ids(text):
    """``{"Uid": (r, e, s, fs), "Gid": (...), "Groups": frozenset(...)}`` from the text of
    /proc/<pid>/status; ValueError if a line is missing or malformed."""
    found = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key in ("Uid", "Gid", "Groups") and key not in found:
            numbers = tuple(int(v) for v in value.split())
            found[key] = frozenset(numbers) if key == "Groups" else numbers
    if set(found) != {"Uid", "Gid", "Groups"} or len(found["Uid"]) != 4 or len(found["Gid"]) != 4:
        raise ValueError("incomplete /proc status")
    return found


def mismatch(facts, peer_pid, peer_uid, status_text):
    """None if the peer is the shim of this call, else why not (one short phrase)."""
    if peer_uid != 0:
        return f"peer euid {peer_uid} is not root"
    if facts.pid != peer_pid:
        return f"hand-off names pid {facts.pid}, peer is pid {peer_pid}"
    if not facts.privileged or facts.euid != 0 or facts.suid != 0:
        return "hand-off is not from a setuid-root shim"
    try:
        seen = status_ids(status_text)
    except ValueError as e:
        return str(e)
    if seen["Uid"] != (facts.ruid, facts.euid, facts.suid, facts.euid):
        return f"uids {seen['Uid']} are not the hand-off's"
    if seen["Gid"] != (facts.rgid, facts.egid, facts.sgid, facts.egid):
        return f"gids {seen['Gid']} are not the hand-off's"
    if seen["Groups"] != frozenset(facts.groups):
        return "supplementary groups are not the hand-off's"
    return None
