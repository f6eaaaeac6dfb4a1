"""The pure semantics: generated grant/end histories against a brute-force model."""
from hypothesis import given, settings, strategies as st

from glexec_tools.backmap import plan as bm
from tests.backmap.backmap_helpers import S, T0, record


def history(lines):
    occs, flags, coverage = bm.build_history({"s": lines})
    return occs, flags, coverage


def ask(lines, uid, t):
    occs, flags, coverage = history(lines)
    return bm.answer_at({}, t, [o for o in occs if o.uid == uid], flags, coverage)


def test_boundaries_are_inclusive_at_both_ends():
    lines = [record("grant", T0), record("end", T0 + 10 * S), record("refuse", T0 + 20 * S)]
    assert ask(lines, 47011, T0).status == "known"
    assert ask(lines, 47011, T0 + 10 * S).status == "known"
    assert ask(lines, 47011, T0 - 1).status == "unknown"            # before the history
    assert ask(lines, 47011, T0 + 10 * S + 1).status == "none"
    assert ask(lines, 47011, T0 + 10 * S + 1).matches == []


def test_grant_without_end_is_unknown_until_the_next_grant():
    lines = [record("grant", T0, dn="/CN=A", pid=1), record("grant", T0 + 5 * S, dn="/CN=B", pid=2),
             record("end", T0 + 9 * S, dn="/CN=B", pid=2)]
    a = ask(lines, 47011, T0 + 2 * S)
    assert a.status == "unknown" and "end not recorded" in a.why
    assert [m.identity.dn for m in a.matches] == ["/CN=A"] and a.matches[0].end is None
    at_cut = ask(lines, 47011, T0 + 5 * S)                           # cut is exclusive
    assert at_cut.status == "known" and [m.identity.dn for m in at_cut.matches] == ["/CN=B"]


def test_reboot_marker_cuts_open_grants():
    lines = [record("grant", T0, pid=1), record("boot", T0 + 3 * S), record("refuse", T0 + 9 * S)]
    assert ask(lines, 47011, T0 + 1 * S).status == "unknown"
    assert ask(lines, 47011, T0 + 4 * S).status == "none"


def test_orphan_end_has_unknown_start():
    lines = [record("refuse", T0), record("end", T0 + 5 * S, pid=7)]
    a = ask(lines, 47011, T0 + 1 * S)
    assert a.status == "unknown" and "start not recorded" in a.why


def test_clock_step_makes_region_unknown():
    lines = [record("grant", T0, pid=1), record("end", T0 + 100 * S, pid=1),
             record("refuse", T0 + 50 * S), record("grant", T0 + 200 * S, pid=2, uid=47012),
             record("end", T0 + 300 * S, pid=2, uid=47012)]
    assert ask(lines, 47011, T0 + 70 * S).status == "unknown"
    assert ask(lines, 47011, T0 + 10 * S).status == "known"
    assert ask(lines, 47011, T0 + 101 * S).status == "none"


def test_damaged_line_is_unknown_around_it_and_salvages_the_uid():
    good = [record("grant", T0, pid=1), record("end", T0 + 10 * S, pid=1)]
    full = record("grant", T0 + 20 * S, pid=2, uid=47012)
    torn = full[:full.index(b'"groups":[47000]')] + b"\n"           # cut after the target uid
    lines = good + [torn, record("refuse", T0 + 30 * S), record("refuse", T0 + 60 * S)]
    assert ask(lines, 47011, T0 + 25 * S).status == "unknown"          # inside [prev, next]
    assert ask(lines, 47011, T0 + 40 * S).status == "none"
    assert ask(lines, 47012, T0 + 40 * S).status == "unknown"          # a possibly lost grant


def test_shared_account_reports_both_identities():
    lines = [record("grant", T0, dn="/CN=A", pid=1), record("grant", T0 + S, dn="/CN=B", pid=2),
             record("end", T0 + 5 * S, dn="/CN=A", pid=1), record("end", T0 + 6 * S, dn="/CN=B", pid=2)]
    a = ask(lines, 47011, T0 + 2 * S)
    assert a.status == "known" and {m.identity.dn for m in a.matches} == {"/CN=A", "/CN=B"}


# -- generated histories against a reference model -----------------------------------------

@st.composite
def histories(draw):
    """Per uid a sequence of non-overlapping occupations (some without end), in log order."""
    uids = draw(st.lists(st.integers(47000, 47003), min_size=1, max_size=4, unique=True))
    events, model, pid = [], [], 1000
    for uid in uids:
        t = T0 + draw(st.integers(0, 50))
        for _ in range(draw(st.integers(1, 5))):
            start = t + draw(st.integers(1, 40))
            end = start + draw(st.integers(0, 40))
            ended = draw(st.integers(0, 4)) > 0              # one in five never ends
            dn = "/CN=%d" % draw(st.integers(0, 3))
            pid += 1
            events.append((start, "grant", uid, dn, pid))
            if ended:
                events.append((end, "end", uid, dn, pid))
            model.append([uid, dn, start, end if ended else None, pid])
            t = end
    order = {id(e): i for i, e in enumerate(events)}
    events.sort(key=lambda e: (e[0], order[id(e)]))      # log order: by time, then as generated
    # an open occupation is a candidate until the uid's next grant (exclusive)
    for occ in model:
        if occ[3] is None:
            later = [m[2] for m in model if m[0] == occ[0] and m[2] > occ[2]]
            occ.append(min(later) - 1 if later else None)
    return events, model


def reference(events, model, uid, t):
    first, last = events[0][0], events[-1][0]
    holders, open_hit = set(), False
    for u, dn, start, end, _pid, *cut in model:
        if u != uid:
            continue
        if end is not None and start <= t <= end:
            holders.add(dn)
        elif end is None and start <= t and (cut[0] is None or t <= cut[0]):
            open_hit = True
            holders.add(dn)
    if open_hit or t < first or t > last:      # candidates are still named outside the history
        return "unknown", holders
    return ("known" if holders else "none"), holders


@settings(max_examples=300, deadline=None)
@given(histories(), st.data())
def test_query_equals_reference_model(hist, data):
    events, model = hist
    lines = [record(kind, t, uid=uid, dn=dn, pid=pid) for t, kind, uid, dn, pid in events]
    occs, flags, coverage = history(lines)
    assert flags == []
    uids = sorted({m[0] for m in model})
    boundaries = sorted({p for m in model for p in (m[2], m[3]) if p is not None})
    probes = boundaries + [b - 1 for b in boundaries] + [b + 1 for b in boundaries]
    probes += [data.draw(st.integers(T0 - 5, T0 + 500)) for _ in range(5)]
    for uid in uids:
        for t in probes:
            answer = bm.answer_at({}, t, [o for o in occs if o.uid == uid], flags, coverage)
            status, holders = reference(events, model, uid, t)
            assert answer.status == status, (uid, t, answer.why)
            assert {m.identity.dn for m in answer.matches} == holders
            assert len({m.identity for m in answer.matches if m.certain}) <= 1   # never two owners


@given(st.integers(0, 253402300799999999))          # 1970 .. 9999
def test_time_round_trip(us):
    assert bm.parse_time(bm.format_time(us)) == us


@given(st.binary(max_size=300))
def test_parser_never_raises(line):
    item = bm.parse_record(line, bm.Ref(1, 0, 1))
    assert isinstance(item, (bm.Event, bm.Damaged))


# The positional time parser against the regular expression it replaced (kept here as the
# oracle): same value, or None, for any text made of the characters that matter.
_ISO_ORACLE = r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,6}))?(Z|[+-]\d{2}:?\d{2})?\Z"


def _oracle_time(text):
    import re
    m = re.match(_ISO_ORACLE, text, re.ASCII)
    if m is None:
        return None
    y, mo, d, h, mi, s = (int(g) for g in m.groups()[:6])
    if not (1 <= mo <= 12 and 1 <= d <= 31 and h <= 23 and mi <= 59 and s <= 60):
        return None
    us = int((m.group(7) or "0").ljust(6, "0"))
    offset = 0
    if m.group(8) and m.group(8) != "Z":
        digits = m.group(8)[1:].replace(":", "")
        offset = (-1 if m.group(8)[0] == "-" else 1) * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    return (bm._days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s - offset) * 1_000_000 + us


_TIME_CHARS = st.sampled_from(list("0123456789-:T .,Z+x\u0663"))


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(_TIME_CHARS, max_size=34),
                 st.builds(str.__add__, st.sampled_from(["2026-11-21T22:33:04", "2026-02-30 23:59:60",
                                                         "0001-01-01T00:00:00"]),
                           st.text(_TIME_CHARS, max_size=10))))
def test_parse_time_agrees_with_the_iso_pattern(text):
    assert bm.parse_time(text) == _oracle_time(text)


def test_parse_time_forms():
    base = bm.parse_time("2026-11-21T22:33:04Z")
    assert base == bm.parse_time("2026-11-21 22:33:04") == bm.parse_time("2026-11-22T00:33:04+02:00") \
        == bm.parse_time("2026-11-21T21:33:04-0100")
    assert bm.parse_time("2026-11-21T22:33:04.5Z") == base + 500_000
    assert bm.parse_time("2026-11-21T22:33:04,000001") == base + 1
    for bad in ("2026-11-21T22:33:04.Z", "2026-11-21T22:33:04.1234567Z", "2026-13-01T00:00:00Z",
                "2026-11-21T22:33:04+2:00", "2026-11-21T22:33", "2026-11-21T22:33:04ZZ", "\u0663" * 19):
        assert bm.parse_time(bad) is None, bad


def test_lease_and_grant_of_one_identity_are_one_holder():
    # A running payload (grant, no end) whose pool lease the gridmapdir shows: the lease
    # settles the grant, and the two describe ONE holder, not a shared account.
    occs, flags, coverage = history([record("grant", T0, dn="/CN=A", pid=1),
                                     record("refuse", T0 + 100 * S)])
    lease = bm.lease_occupation("wn1", 47011, "pool47011", "/CN=A", T0, T0 + 90 * S)
    a = bm.answer_at({}, T0 + 50 * S, occs + [lease], flags, coverage)
    assert a.status == "known", a.why
    assert "shared" not in a.why and len({m.kind for m in a.matches}) == 2
    # a lease of ANOTHER identity at the same instant is a second holder
    other = bm.lease_occupation("wn1", 47011, "pool47011", "/CN=B", T0, T0 + 90 * S)
    b = bm.answer_at({}, T0 + 50 * S, occs + [lease, other], flags, coverage)
    assert "/CN=B" in {m.identity.dn for m in b.matches}
    assert b.status == "known" and "2 identities" in b.why, b.why


def test_settle_running_only_for_one_open_identity_with_a_younger_process():
    occs, flags, coverage = history([record("grant", T0, dn="/CN=A", pid=1)])
    now = T0 + 100 * S

    def at_now(starts, candidates=occs, host="wn1"):
        a = bm.answer_at({}, now, candidates, flags, coverage)
        assert a.status == "unknown"                   # after the last record, end not recorded
        return bm.settle_running(a, now, host, starts).status

    assert at_now([T0 + 3 * S]) == "known"
    assert at_now([]) == "unknown"                     # nothing of the uid runs
    assert at_now([T0 - 5 * S]) == "unknown"           # older than the grant: not its payload
    assert at_now([T0 + 3 * S], host="wn2") == "unknown"   # the process is on another host
    other, _, _ = history([record("grant", T0 + S, dn="/CN=B", pid=2, uid=47011, host="wn1")])
    other[0].notes.append("clock_step")
    assert at_now([T0 + 3 * S], occs + other) == "unknown"   # a doubtful second candidate
