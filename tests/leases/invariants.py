"""Lease-store invariants shared by the crash and stateful tests (issue 4 item 5, P5)."""
import os
import stat

from glexec_py.core.leases import pool_member


def lease_map(gmd, pool=b"gxtpool"):
    """Check the on-disk invariants and return {lease: account}.

    Every pool entry has link count 1 or 2; every other non-dot name is a lease with link
    count exactly 2 whose other name is exactly one pool entry; no account holds two
    leases (bijection identity <-> account)."""
    by_ino, info = {}, {}
    for n in os.listdir(gmd):
        if n.startswith("."):
            continue
        st = os.lstat(os.path.join(gmd, n))
        b = os.fsencode(n)
        info[b] = st
        by_ino.setdefault(st.st_ino, []).append(b)
    out = {}
    for name, st in info.items():
        assert stat.S_ISREG(st.st_mode), name
        assert st.st_nlink <= 2, (name, st.st_nlink)
        if pool_member(name, pool):
            continue
        assert st.st_nlink == 2, ("lease without pool entry", name, st.st_nlink)
        others = [n for n in by_ino[st.st_ino] if n != name]
        assert len(others) == 1 and pool_member(others[0], pool), (name, others)
        out[name] = others[0]
    assert len(set(out.values())) == len(out), "one account, several leases"
    return out


def owner_map(gmd, pool=b"gxtpool"):
    """Check "one identity <-> one account, by canonical identity" and return
    {(owner key, groups, mapcount): account} for every lease whose record names an owner.

    Every leased account has at most one record, and it describes that account's lease; no
    owner (with the same groups and mapcount) holds two accounts and no account two
    owners -- whatever the lease names are (LCMAPS names are lower-cased, alternate names
    carry a digest)."""
    import json
    leases = lease_map(gmd, pool)
    out = {}
    for lease, account in leases.items():
        try:
            with open(os.path.join(gmd, ".glexec-py", os.fsdecode(account)), "rb") as f:
                rec = json.loads(f.read())
        except FileNotFoundError:
            continue                        # LCMAPS-made / crash leftover: owner-less
        if rec.get("owner") is None:
            continue
        assert rec["lease"].encode("latin-1") == lease, (account, rec["lease"], lease)
        key = (tuple(rec["owner"]), tuple(rec.get("groups", ())), max(0, rec.get("mapcount", 0)))
        assert key not in out, ("one identity, two accounts", key, out.get(key), account)
        out[key] = account
    assert len(set(out.values())) == len(out), "one account, several owners"
    return out
