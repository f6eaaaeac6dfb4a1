"""The audit chain as evidence: records written by the real audit sink (seq + prev), then
lines deleted or edited; the index must stop vouching for what the chain no longer proves."""
import os

from glexec_py.core import audit as core_audit
from glexec_tools.backmap import plan as bm
from glexec_py.effects import auditlog
from glexec_tools.backmap.apply import Index
from tests.backmap.backmap_helpers import S, T0, record


def append(audit, *records):
    for rec in records:
        auditlog.append(audit, rec)


def lines_of(audit):
    with open(audit, "rb") as f:
        return f.read().splitlines(keepends=True)


def rewrite(audit, lines):
    with open(audit, "wb") as f:
        f.write(b"".join(lines))


def history(audit):
    """Alice [T0, T0+10 s], Bob [T0+20 s, T0+30 s], Carol [T0+40 s, T0+50 s] on uid 47011."""
    append(audit, record("grant", T0, pid=1, dn="/CN=Alice"), record("end", T0 + 10 * S, pid=1, dn="/CN=Alice"),
           record("grant", T0 + 20 * S, pid=2, dn="/CN=Bob"), record("end", T0 + 30 * S, pid=2, dn="/CN=Bob"),
           record("grant", T0 + 40 * S, pid=3, dn="/CN=Carol"), record("end", T0 + 50 * S, pid=3, dn="/CN=Carol"))


def test_the_sink_writes_an_intact_chain_and_the_index_trusts_it(setup):
    audit, index = setup
    history(audit)
    assert core_audit.chain_breaks([line.rstrip(b"\n") for line in lines_of(audit)]) == []
    index.refresh([audit])
    answer = index.uid_at(47011, T0 + 25 * S)
    assert answer.status == "known" and [m.identity.dn for m in answer.matches] == ["/CN=Bob"]
    assert index.db.execute("SELECT count(*) FROM flags").fetchone()[0] == 0


def test_deleted_occupation_is_unknown_not_none(setup):
    audit, index = setup
    history(audit)
    lines = lines_of(audit)
    rewrite(audit, lines[:2] + lines[4:])            # Bob's grant and end removed
    index.refresh([audit])
    answer = index.uid_at(47011, T0 + 25 * S)        # without the chain: "none"
    assert answer.status == "unknown"
    assert [f.kind for f in answer.flags] == ["chain_break"]
    assert "sequence 5 follows 2" in answer.flags[0].why
    # The record before the break could itself have been edited (a deletion and an edit
    # look the same from the next line): Alice's occupation is in doubt too; Carol's,
    # after the break, stands.
    alice = index.uid_at(47011, T0 + 5 * S)
    assert alice.status == "unknown" and alice.matches[0].notes == ["chain_break"]
    assert index.uid_at(47011, T0 + 45 * S).status == "known"


def test_edited_grant_is_not_believed(setup):
    audit, index = setup
    history(audit)
    lines = lines_of(audit)
    lines[2] = lines[2].replace(b"/CN=Bob", b"/CN=Eve")   # the grant, edited in place
    rewrite(audit, lines)
    index.refresh([audit])
    # After the end record that exposed the edit, Eve's occupation is still in doubt.
    for t in (T0 + 20 * S, T0 + 29 * S, T0 + 30 * S):
        answer = index.uid_at(47011, t)
        assert answer.status == "unknown", (t, answer.why)
    assert index.uid_at(47011, T0 + 45 * S).status == "known"


def test_edit_found_by_a_later_refresh(setup):
    """The edited record was the last one read; its successor arrives after a refresh: the
    chain state and the last occupation are carried across refreshes."""
    audit, index = setup
    append(audit, record("grant", T0, pid=1, dn="/CN=Alice"), record("end", T0 + 10 * S, pid=1, dn="/CN=Alice"),
           record("grant", T0 + 20 * S, pid=2, dn="/CN=Bob"), record("end", T0 + 30 * S, pid=2, dn="/CN=Bob"))
    index.refresh([audit])
    assert index.uid_at(47011, T0 + 25 * S).status == "known"
    lines = lines_of(audit)
    # Bob's end is forged to an earlier time after it was indexed: the index keeps what
    # it read, but the next record's prev no longer matches the file's last line.
    lines[3] = lines[3].replace(bm.format_time(T0 + 30 * S).encode(), bm.format_time(T0 + 21 * S).encode())
    rewrite(audit, lines)
    append(audit, record("grant", T0 + 40 * S, pid=3, dn="/CN=Carol"))
    index.close()
    index = Index(index.path)
    try:
        index.refresh([audit])
        # the file changed in place (same first line): read on from the stored offset
        answer = index.uid_at(47011, T0 + 25 * S)
        assert answer.status == "unknown" and "chain_break" in {f.kind for f in answer.flags} | \
            {n for m in answer.matches for n in m.notes}
    finally:
        index.close()


def test_log_only_records_without_chain_are_not_flagged(setup):
    """Records written by the caller in log-only mode carry no chain."""
    audit, index = setup
    with open(audit, "wb") as f:
        f.write(record("grant", T0, pid=1) + record("end", T0 + 10 * S, pid=1))
    os.chmod(audit, 0o600)
    index.refresh([audit])
    assert index.uid_at(47011, T0 + 5 * S).status == "known"


def test_unchained_record_after_chained_ones_breaks(setup):
    audit, index = setup
    history(audit)
    with open(audit, "ab") as f:
        f.write(record("grant", T0 + 60 * S, pid=4, dn="/CN=Mallory"))
    index.refresh([audit])
    answer = index.uid_at(47011, T0 + 61 * S)
    assert answer.status == "unknown"


def test_old_schema_index_is_rebuilt(private_dir):
    import sqlite3
    path = os.path.join(private_dir, "old.sqlite")
    db = sqlite3.connect(path)
    db.executescript("CREATE TABLE meta(key TEXT PRIMARY KEY, value); INSERT INTO meta VALUES('schema', '1');"
                     "CREATE TABLE series(id INTEGER PRIMARY KEY, path BLOB UNIQUE, last_time INTEGER);")
    db.close()
    os.chmod(path, 0o600)
    audit = os.path.join(private_dir, "audit.jsonl")
    history(audit)
    index = Index(path)
    try:
        index.refresh([audit])
        assert index.uid_at(47011, T0 + 25 * S).status == "known"
    finally:
        index.close()
