"""The SQLite index on real files: incremental reads, rotation, gzip, truncation, damage."""
import gzip
import os

import pytest

from glexec_tools.backmap.apply import Index
from glexec_py.errors import SystemFault
from tests.backmap.backmap_helpers import S, T0, record, write


def grant_end(t, uid=47011, pid=100, dn="/CN=Alice", length=10):
    return [record("grant", t, uid=uid, pid=pid, dn=dn), record("end", t + length * S, uid=uid, pid=pid, dn=dn)]


def test_index_file_is_private(setup, private_dir):
    st = os.stat(os.path.join(private_dir, "backmap.sqlite"))
    assert st.st_mode & 0o777 == 0o600 and st.st_uid == 0


def test_refuses_untrusted_index_dir(private_dir):
    os.chmod(private_dir, 0o777)
    from glexec_py.effects import trust
    trust._trusted_dirs.discard(private_dir)
    try:
        with pytest.raises(SystemFault):
            Index(os.path.join(private_dir, "x.sqlite"))
    finally:
        os.chmod(private_dir, 0o700)


def test_incremental_and_rotation_with_gzip(setup):
    audit, index = setup
    write(audit, grant_end(T0, pid=1))
    index.refresh([audit])
    assert index.uid_at(47011, T0 + 5 * S).status == "known"
    # more lines, then logrotate: audit.jsonl -> .1 -> .2.gz, a new active file
    with open(audit, "ab") as f:
        f.write(b"".join(grant_end(T0 + 20 * S, pid=2, dn="/CN=Bob")))
    os.rename(audit, audit + ".1")
    write(audit, grant_end(T0 + 40 * S, pid=3, dn="/CN=Carol"))
    index.refresh([audit])
    assert [m.identity.dn for m in index.uid_at(47011, T0 + 25 * S).matches] == ["/CN=Bob"]
    with open(audit + ".1", "rb") as src, gzip.open(audit + ".2.gz", "wb") as dst:
        dst.write(src.read())
    os.unlink(audit + ".1")
    os.chmod(audit + ".2.gz", 0o600)
    os.rename(audit, audit + ".1")
    write(audit, grant_end(T0 + 60 * S, pid=4, dn="/CN=Dave"))
    index.refresh([audit])
    n = index.db.execute("SELECT count(*) FROM occupations").fetchone()[0]
    assert n == 4                                  # recognised by first line: nothing read twice
    assert [m.identity.dn for m in index.uid_at(47011, T0 + 65 * S).matches] == ["/CN=Dave"]
    assert index.uid_at(47011, T0 + 15 * S).status == "none"


def test_reindex_reads_gzip_from_scratch(setup):
    audit, index = setup
    with gzip.open(audit + ".2.gz", "wb") as f:
        f.write(b"".join(grant_end(T0, pid=1)))
    os.chmod(audit + ".2.gz", 0o600)
    write(audit + ".1", grant_end(T0 + 20 * S, pid=2))
    write(audit, grant_end(T0 + 40 * S, pid=3))
    index.refresh([audit], rebuild=True)
    assert index.uid_at(47011, T0 + 5 * S).status == "known"
    assert index.uid_at(47011, T0 + 45 * S).status == "known"


def test_truncation_is_a_new_source(setup):
    audit, index = setup
    write(audit, grant_end(T0, pid=1))
    index.refresh([audit])
    with open(audit, "rb") as f:                                     # logrotate copytruncate:
        write(audit + ".1", [f.read()])                             # the copy keeps the records,
    write(audit, grant_end(T0 + 20 * S, pid=2, dn="/CN=Bob"))      # same inode, new content
    index.refresh([audit])
    assert [m.identity.dn for m in index.uid_at(47011, T0 + 5 * S).matches] == ["/CN=Alice"]
    assert [m.identity.dn for m in index.uid_at(47011, T0 + 25 * S).matches] == ["/CN=Bob"]


def test_torn_line_in_active_file_waits_then_completes(setup):
    audit, index = setup
    lines = grant_end(T0, pid=1)
    write(audit, [lines[0], lines[1][:40]])
    index.refresh([audit])
    assert index.uid_at(47011, T0 + 5 * S).status == "unknown"       # end not read yet
    write(audit, [lines[1][40:], record("refuse", T0 + 30 * S)], mode="ab")
    index.refresh([audit])
    assert index.uid_at(47011, T0 + 5 * S).status == "known"


def test_torn_line_in_rotated_file_is_damage(setup):
    audit, index = setup
    write(audit + ".1", grant_end(T0, pid=1) + [record("grant", T0 + 20 * S, pid=2)[:60]])
    write(audit, [record("refuse", T0 + 30 * S), record("refuse", T0 + 90 * S)])
    index.refresh([audit])
    a = index.uid_at(47011, T0 + 25 * S)
    assert a.status == "unknown" and any(f.kind == "damaged" for f in a.flags)
    assert index.uid_at(47011, T0 + 5 * S).status == "known"


def test_clock_step_is_unknown(setup):
    audit, index = setup
    write(audit, grant_end(T0, pid=1, length=100) + [record("refuse", T0 + 40 * S)]
          + grant_end(T0 + 200 * S, pid=2, uid=47012))
    index.refresh([audit])
    a = index.uid_at(47011, T0 + 70 * S)
    assert a.status == "unknown" and any(f.kind == "clock_step" for f in a.flags)


def test_missing_rotated_file_is_a_gap(setup):
    audit, index = setup
    with gzip.open(audit + ".3.gz", "wb") as f:
        f.write(b"".join(grant_end(T0, pid=1)))
    os.chmod(audit + ".3.gz", 0o600)
    write(audit + ".1", grant_end(T0 + 100 * S, pid=2))
    write(audit, grant_end(T0 + 200 * S, pid=3))
    index.refresh([audit])
    a = index.uid_at(47011, T0 + 50 * S)
    assert a.status == "unknown" and any(f.kind == "missing_file" for f in a.flags)
    assert index.uid_at(47011, T0 + 150 * S).status == "none"


def test_user_writable_audit_file_is_not_evidence(setup):
    audit, index = setup
    write(audit, grant_end(T0, pid=1))
    os.chmod(audit, 0o666)
    index.refresh([audit])
    a = index.uid_at(47011, T0 + 5 * S)
    assert a.status == "unknown" and a.matches == []


def test_reverse_dn_and_payload_pid(setup):
    audit, index = setup
    write(audit, grant_end(T0, pid=1, uid=47011) + grant_end(T0 + 20 * S, pid=2, uid=47012))
    index.refresh([audit])
    a = index.by_dn("/CN=Alice")
    assert a.status == "known" and sorted(m.uid for m in a.matches) == [47011, 47012]
    assert index.by_dn("/CN=Nobody").status == "none"
    # the end record names no payload_pid in this helper: add one
    write(audit, [record("grant", T0 + 40 * S, pid=3), record("end", T0 + 45 * S, pid=3, payload_pid=4242)], mode="ab")
    index.refresh([audit])
    b = index.by_payload_pid(4242)
    assert b.status == "known" and b.matches[0].payload_pid == 4242


# -- incremental == one-shot ----------------------------------------------------------------

from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from glexec_tools.backmap import plan as bm  # noqa: E402
from tests.backmap.test_planner import histories  # noqa: E402

_EXAMPLE = __import__("itertools").count()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(histories(), st.lists(st.integers(0, 30), max_size=4), st.data())
def test_incremental_refreshes_answer_like_one_pass(private_dir, hist, cuts, data):
    """Appending the log in pieces (refresh after each) gives the same answers as reading
    it at once: the index resumes open grants, pending damage and clock state correctly."""
    events, model = hist
    lines = [record(kind, t, uid=uid, dn=dn, pid=pid) for t, kind, uid, dn, pid in events]
    trouble = data.draw(st.sampled_from([None, "damage", "step"]))
    if trouble:
        bad = b'{"time":"2026-11-\x00\n' if trouble == "damage" else record("refuse", T0 - 7)
        lines.insert(data.draw(st.integers(0, len(lines))), bad)
    occs, flags, coverage = bm.build_history({"s": lines})
    audit = os.path.join(private_dir, "audit-%d.jsonl" % next(_EXAMPLE))   # the dir outlives examples
    index = Index(os.path.join(private_dir, os.path.basename(audit) + ".sqlite"))
    try:
        start = 0
        for cut in sorted(set(c for c in cuts if c < len(lines))) + [len(lines)]:
            write(audit, lines[start:cut], mode="ab")
            index.refresh([audit])
            start = cut
        uids = sorted({m[0] for m in model})
        probes = sorted({p + d for m in model for p in (m[2], m[3]) if p is not None for d in (-1, 0, 1)})
        for uid in uids:
            for t in probes:
                want = bm.answer_at({}, t, [o for o in occs if o.uid == uid], flags, coverage)
                got = index.uid_at(uid, t)
                assert (got.status, sorted(m.identity.dn for m in got.matches)) == \
                       (want.status, sorted(m.identity.dn for m in want.matches)), (uid, t)
    finally:
        index.close()


def test_deleted_rotated_segment_is_not_answered(setup):
    audit, index = setup
    write(audit + ".2", grant_end(T0, pid=1))
    write(audit + ".1", grant_end(T0 + 100 * S, pid=2, dn="/CN=Bob"))
    write(audit, grant_end(T0 + 200 * S, pid=3, dn="/CN=Carol"))
    index.refresh([audit])
    assert index.uid_at(47011, T0 + 5 * S).status == "known"
    assert index.uid_at(47011, T0 + 105 * S).status == "known"
    os.unlink(audit + ".2")                       # logrotate dropped the oldest segment
    index.refresh([audit])
    a = index.uid_at(47011, T0 + 5 * S)
    assert a.status == "unknown" and a.matches == [], a.why           # not from the index
    assert index.by_dn("/CN=Alice").status == "none"
    assert index.uid_at(47011, T0 + 105 * S).status == "known"       # what is left still answers


def test_deleted_middle_segment_is_a_gap(setup):
    audit, index = setup
    write(audit + ".3", grant_end(T0, pid=1))
    write(audit + ".2", grant_end(T0 + 100 * S, pid=2, dn="/CN=Bob"))
    write(audit + ".1", grant_end(T0 + 200 * S, pid=3, dn="/CN=Carol"))
    write(audit, grant_end(T0 + 300 * S, pid=4, dn="/CN=Dave"))
    index.refresh([audit])
    assert index.uid_at(47011, T0 + 105 * S).status == "known"
    os.unlink(audit + ".2")
    index.refresh([audit])
    a = index.uid_at(47011, T0 + 105 * S)
    assert a.status == "unknown" and any(f.kind == "missing_file" for f in a.flags), a.why
    assert index.by_dn("/CN=Bob").status == "unknown"                 # damage could hide it
    for t in (T0 + 5 * S, T0 + 205 * S, T0 + 305 * S):
        assert index.uid_at(47011, t).status == "known"


def test_active_file_emptied_in_place_is_not_answered(setup):
    audit, index = setup
    write(audit, grant_end(T0, pid=1) + [record("refuse", T0 + 50 * S)])
    index.refresh([audit])
    assert index.uid_at(47011, T0 + 5 * S).status == "known"
    write(audit, [record("refuse", T0 + 60 * S)])          # no copy: those records are gone
    index.refresh([audit])
    a = index.uid_at(47011, T0 + 5 * S)
    assert a.status == "unknown" and a.matches == [], a.why


def test_refresh_reports_progress_and_ends_it(setup, monkeypatch):
    """A long index build calls its progress callback as records are read (front.Progress
    draws a line on a terminal) and closes it at the end, also when nothing was new."""
    from glexec_tools.backmap import apply
    audit, index = setup
    monkeypatch.setattr(apply, "PROGRESS_EVERY", 10)
    write(audit, [record("grant" if i % 2 == 0 else "end", T0 + i * S, pid=100 + i // 2)
                  for i in range(45)])

    class Seen(list):
        ended = 0

        def __call__(self, done, total=None, what=""):
            self.append((done, what))

        def done(self):
            self.ended += 1
    seen = Seen()
    index.refresh([audit], progress=seen)
    assert [d for d, _ in seen] == [10, 20, 30, 40] and seen.ended == 1
    assert all(w == "audit records indexed" for _, w in seen)
    again = Seen()
    index.refresh([audit], progress=again)
    assert again == [] and again.ended == 1
