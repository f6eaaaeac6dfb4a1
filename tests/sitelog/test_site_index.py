"""The site index on a real PostgreSQL: de-duplication, per-host chains, gaps and
tampering, answered like the per-node index."""
import json

from glexec_tools.backmap import plan as bm
from glexec_tools.backmap.site import SiteIndex
from tests.sitelog.shipping import S, T0, record, ship_all, stage


def _history(private_dir, host, n_jobs=4, uid=47011, dn="/CN=Alice", t0=T0):
    recs = []
    for j in range(n_jobs):
        t = t0 + j * 100 * S
        recs += [record("grant", t, host=host, uid=uid, dn=dn, pid=10 + j),
                 record("end", t + 50 * S, host=host, uid=uid, dn=dn, pid=10 + j)]
    return ship_all(f"{private_dir}/{host}.jsonl", host, recs)


def test_two_hosts_same_uid_kept_apart_and_duplicates_dropped(private_dir, site_db):
    a = _history(private_dir, "wnA", dn="/CN=Alice")
    b = _history(private_dir, "wnB", dn="/CN=Bob")
    idx = SiteIndex(site_db)
    stage(idx.conn, a + b + a[:3] + b[2:4])          # at-least-once: repeats
    stats = idx.ingest()
    assert stats == {"received": 21, "stored": 16, "duplicates": 5, "rejected": 0}
    ans = idx.uid_at(47011, T0 + 10 * S)
    assert ans.status == "known"
    assert sorted((m.host, m.identity.dn) for m in ans.matches) == [("wnA", "/CN=Alice"), ("wnB", "/CN=Bob")]
    assert idx.uid_at(47011, T0 + 10 * S, host="wnB").matches[0].identity.dn == "/CN=Bob"
    assert idx.uid_at(47011, T0 + 70 * S).status == "none"
    assert not idx._flags(bm.NEVER, bm.FOREVER)
    # a second ingest of the same lines again changes nothing
    stage(idx.conn, a)
    assert idx.ingest()["duplicates"] == 5 + 8 and idx.uid_at(47011, T0 + 10 * S).status == "known"
    idx.close()


def test_lost_lines_are_a_gap_answered_unknown_only_on_that_host(private_dir, site_db):
    a = _history(private_dir, "wnA")
    b = _history(private_dir, "wnB", dn="/CN=Bob")
    idx = SiteIndex(site_db)
    stage(idx.conn, a[:2] + a[4:] + b)                # wnA's records 3 and 4 (job 2) lost
    idx.ingest()
    inside = T0 + 120 * S
    ans = idx.uid_at(47011, inside, host="wnA")
    assert ans.status == "unknown"
    assert [f.kind for f in ans.flags] == ["shipping_gap"] and "records 3..4" in ans.flags[0].why
    on_b = idx.uid_at(47011, inside, host="wnB")          # the other host is not in doubt
    assert on_b.status == "known" and not on_b.flags and on_b.matches[0].identity.dn == "/CN=Bob"
    assert idx.uid_at(47011, T0 + 10 * S, host="wnA").status == "known"     # before the gap
    assert idx.uid_at(47011, T0 + 210 * S, host="wnA").status == "known"    # after it
    # the lost lines arrive late (a queue drained): the gap closes
    stage(idx.conn, a[2:4])
    idx.ingest()
    assert idx.uid_at(47011, inside, host="wnA").status == "known"
    assert idx.uid_at(47011, T0 + 160 * S, host="wnA").status == "none"
    assert not idx._flags(bm.NEVER, bm.FOREVER)
    idx.close()


def test_tampered_records_are_detected(private_dir, site_db):
    a = _history(private_dir, "wnA")
    idx = SiteIndex(site_db)
    # altered in transit: the record no longer hashes to the sha256 its sender wrote
    altered = a[2].replace("/CN=Alice", "/CN=Mallory")
    # rewritten with a matching sha256: the next record's prev gives it away
    env, rec = a[4].split(',"rec":', 1)
    forged_rec = rec[:-1].replace("/CN=Alice", "/CN=Mallory")
    import hashlib
    head = json.loads(env + "}")
    head["sha256"] = hashlib.sha256(forged_rec.encode()).hexdigest()
    forged = json.dumps(head, separators=(",", ":"))[:-1] + ',"rec":' + forged_rec + "}"
    stage(idx.conn, a[:2] + [altered] + a[3:4] + [forged] + a[5:])
    stats = idx.ingest()
    assert stats["rejected"] == 1 and stats["stored"] == 7
    cur = idx.conn.cursor()
    cur.execute("SELECT why FROM site_rejects")
    assert cur.fetchone()[0].startswith("record altered in transit")
    kinds = {f.kind for f in idx._flags(bm.NEVER, bm.FOREVER)}
    assert kinds == {"shipping_gap", "chain_break"}
    assert idx.uid_at(47011, T0 + 210 * S).status == "unknown"      # the forged job
    assert idx.uid_at(47011, T0 + 110 * S).status == "unknown"      # the rejected grant
    # job 1 stays proven (the rejected grant's end is an orphan: a candidate from -inf,
    # as in the per-node index, so the answer there names both)
    first = idx.uid_at(47011, T0 + 10 * S).matches
    assert any(m.certain and m.identity.dn == "/CN=Alice" for m in first)
    idx.close()


def test_a_node_cannot_ship_for_another(private_dir, site_db):
    a = _history(private_dir, "wnA")
    idx = SiteIndex(site_db)
    stage(idx.conn, a, hostname="wnB")
    assert idx.ingest()["rejected"] == len(a)
    assert idx.uid_at(47011, T0 + 10 * S).status == "unknown"      # no history at all
    # nor wrap another host's record in its own envelope
    from glexec_py.effects import auditlog
    line, chain = auditlog.append(f"{private_dir}/b.jsonl", record("grant", T0, host="wnB"))
    stage(idx.conn, [auditlog.ship_message(line, chain, "wnA", "b").decode()], hostname="wnA")
    assert idx.ingest()["rejected"] == len(a) + 1
    cur = idx.conn.cursor()
    cur.execute("SELECT why FROM site_rejects ORDER BY id DESC LIMIT 1")
    assert cur.fetchone() == ("record of another host than its envelope",)
    idx.close()


def test_a_broken_chain_on_one_host_leaves_the_others_known(private_dir, site_db):
    a = _history(private_dir, "wnA")
    b = _history(private_dir, "wnB", dn="/CN=Bob")
    idx = SiteIndex(site_db)
    edited = a[3].replace('"pid":11', '"pid":12')         # a matching sha256, a broken chain
    env, rec = edited.split(',"rec":', 1)
    import hashlib
    head = json.loads(env + "}")
    head["sha256"] = hashlib.sha256(rec[:-1].encode()).hexdigest()
    edited = json.dumps(head, separators=(",", ":"))[:-1] + ',"rec":' + rec
    stage(idx.conn, a[:3] + [edited] + a[4:] + b)
    idx.ingest()
    breaks = [f for f in idx._flags(bm.NEVER, bm.FOREVER) if f.kind == "chain_break"]
    assert breaks and {f.host for f in breaks} == {"wnA"}
    t = T0 + 110 * S
    assert idx.uid_at(47011, t, host="wnA").status == "unknown"
    on_b = idx.uid_at(47011, t, host="wnB")
    assert on_b.status == "known" and not on_b.flags
    idx.close()


def test_leases_are_a_second_source(private_dir, site_db):
    """SiteIndex.add_leases (what refresh_leases stores from the PostgreSQL lease backend):
    a lease seen holding the account settles a grant whose end is not recorded yet, as in
    the per-node index; the answer is the record's (the records win)."""
    a = ship_all(f"{private_dir}/wnA.jsonl", "wnA", [record("grant", T0, host="wnA", pid=9),
                                                      record("refuse", T0 + 100 * S, host="wnA")])
    idx = SiteIndex(site_db)
    stage(idx.conn, a)
    idx.ingest()
    assert idx.uid_at(47011, T0 + 50 * S).status == "unknown"        # end not recorded
    idx.add_leases([("wnA", 47011, "pool47011", "/CN=Alice", T0, T0 + 90 * S, False)], T0 + 90 * S)
    ans = idx.uid_at(47011, T0 + 50 * S)
    assert ans.status == "known" and [m.kind for m in ans.matches] == ["audit"], ans.why
    assert not ans.why.startswith("lease only")
    later = ship_all(f"{private_dir}/wnA.jsonl", "wnA", [record("refuse", T0 + 110 * S, host="wnA")])
    stage(idx.conn, later)                                  # the host rebuilt: leases stay
    assert idx.ingest()["stored"] == 3
    assert idx.uid_at(47011, T0 + 50 * S).status == "known"
    idx.close()
