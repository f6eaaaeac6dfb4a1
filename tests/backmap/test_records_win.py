"""The site index's rule for its second source (plan.records_first, answer_range with
records_win): the PostgreSQL lease backend's leases beside the audit records.  Pure."""
from hypothesis import given, strategies as st

from glexec_tools.backmap import plan as bm
from tests.backmap.backmap_helpers import S, T0, record


def history(lines):
    return bm.build_history({"s": lines})


def db_lease(dn, start, end, host="wn1", ended=True):
    return bm.lease_occupation(host, 47011, "pool47011", dn, start, end, source="lease_db", ended=ended)


def site(t, occs, flags, coverage, host=None):
    return bm.answer_at({}, t, occs, flags, coverage, host, records_win=True)


JOB = [record("grant", T0, dn="/CN=A", pid=1), record("end", T0 + 50 * S, dn="/CN=A", pid=1),
       record("refuse", T0 + 200 * S)]


def test_records_win_over_a_lease_of_the_same_holder():
    occs, flags, cov = history(JOB)
    a = site(T0 + 10 * S, occs + [db_lease("/CN=A", T0 - S, T0 + 100 * S)], flags, cov)
    assert a.status == "known" and [m.kind for m in a.matches] == ["audit"], a.why
    assert not a.why.startswith("lease only")


def test_records_win_over_a_lease_of_another_identity_and_say_so():
    occs, flags, cov = history(JOB)
    a = site(T0 + 10 * S, occs + [db_lease("/CN=B", T0 - S, T0 + 100 * S)], flags, cov)
    assert a.status == "known" and [m.identity.dn for m in a.matches] == ["/CN=A"]
    assert "records win over 1 lease(s) of another identity (/CN=B)" in a.why
    # the per-node rule (no records_win) reports both: a shared account
    b = bm.answer_at({}, T0 + 10 * S, occs + [db_lease("/CN=B", T0 - S, T0 + 100 * S)], flags, cov)
    assert {m.identity.dn for m in b.matches} == {"/CN=A", "/CN=B"}


def test_beside_an_open_record_another_identitys_lease_stays_a_candidate():
    occs, flags, cov = history([record("grant", T0, dn="/CN=A", pid=1), record("refuse", T0 + 200 * S)])
    a = site(T0 + 10 * S, occs + [db_lease("/CN=B", T0 + 5 * S, T0 + 100 * S)], flags, cov)
    assert a.status == "unknown"
    assert {m.identity.dn for m in a.matches} == {"/CN=A", "/CN=B"}


def test_a_lease_of_the_holder_settles_its_open_record():
    occs, flags, cov = history([record("grant", T0, dn="/CN=A", pid=1), record("refuse", T0 + 200 * S)])
    a = site(T0 + 10 * S, occs + [db_lease("/CN=A", T0 - S, T0 + 100 * S, ended=False)], flags, cov)
    assert a.status == "known" and [m.kind for m in a.matches] == ["audit"], a.why


def test_a_lease_alone_is_labelled_lease_only():
    occs, flags, cov = history(JOB)
    t = T0 + 120 * S                                   # after the job, inside the history
    assert site(t, occs, flags, cov).status == "none"
    a = site(t, occs + [db_lease("/CN=A", T0 - S, T0 + 150 * S)], flags, cov)
    assert a.status == "known" and a.why.startswith("lease only"), a.why
    assert [(m.kind, m.identity.dn) for m in a.matches] == [("lease", "/CN=A")]
    assert "site lease database" in a.matches[0].why() and "release" in a.matches[0].why()
    assert site(T0 + 151 * S, occs + [db_lease("/CN=A", T0 - S, T0 + 150 * S)], flags, cov).status == "none"


def test_a_lease_on_another_host_is_no_answer_for_this_one():
    occs, flags, cov = history(JOB)
    lease = db_lease("/CN=B", T0 - S, T0 + 150 * S, host="wn2")
    a = site(T0 + 10 * S, occs + [lease], flags, cov)          # both hosts: both holders
    assert sorted((m.host, m.identity.dn) for m in a.matches) == [("wn1", "/CN=A"), ("wn2", "/CN=B")]
    assert site(T0 + 120 * S, occs + [lease], flags, cov, host="wn1").status == "none"


def test_a_flagged_region_stays_unknown_whatever_the_leases_say():
    lines = [record("grant", T0, dn="/CN=A", pid=1), record("end", T0 + 50 * S, dn="/CN=A", pid=1),
             b'{"time": "broken\n', record("refuse", T0 + 200 * S)]
    occs, flags, cov = history(lines)
    assert flags
    a = site(T0 + 100 * S, occs + [db_lease("/CN=A", T0 - S, T0 + 190 * S)], flags, cov)
    assert a.status == "unknown", a.why


@given(st.lists(st.tuples(st.sampled_from(["/CN=A", "/CN=B", "/CN=C"]),
                          st.sampled_from(["wn1", "wn2"]), st.booleans()), max_size=6),
       st.integers(0, 199))
def test_records_first_never_drops_a_record_and_keeps_only_uncontested_leases(leases, dt):
    """Property: every audit occupation survives; a lease is dropped only beside a record of
    its host and uid (same DN: folded; other DN: only beside certain records)."""
    occs, flags, cov = history(JOB + [record("grant", T0 + 60 * S, dn="/CN=C", pid=2, host="wn2"),
                                      record("refuse", T0 + 200 * S, host="wn2")])
    ls = [db_lease(dn, T0 - S, T0 + 190 * S, host=h, ended=e) for dn, h, e in leases]
    t = T0 + dt * S
    matches = [o for o in occs + ls if o.covers(t)]
    kept, overruled = bm.records_first(matches)
    records = [m for m in matches if m.kind != "lease"]
    assert [m for m in kept if m.kind != "lease"] == records
    for m in ls:
        if not m.covers(t):
            continue
        beside = [r for r in records if (r.host, r.uid) == (m.host, m.uid)]
        if not beside:
            assert m in kept
        elif any(r.identity.dn == m.identity.dn for r in beside):
            assert m not in kept and m not in overruled
        elif all(r.certain for r in beside):
            assert m in overruled and m not in kept
        else:
            assert m in kept
