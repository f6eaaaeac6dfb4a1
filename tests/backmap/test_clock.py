"""Record times under concurrency (issue 9 section 5, item 3): appended records are in time
order, and the back-mapper tells a record appended late (its clock read before a later
writer's) from a clock step by the records' ``mono`` (CLOCK_MONOTONIC) field."""
import multiprocessing
import os
import time

from glexec_tools.backmap import plan as bm
from glexec_py.core.audit import encode
from glexec_tools.backmap.plan import parse_time
from glexec_py.effects import auditlog
from tests.backmap.backmap_helpers import S, T0, record, write

BOOT = "0f0e0d0c-0b0a-0908-0706-050403020100"


def rec(event, t, mono, *, boot=BOOT, **kw):
    """A record with the engine's ``boot_id`` and ``mono`` (seconds, float) fields."""
    return record(event, t, boot_id=boot, mono=mono / S, **kw)


def flags_of(lines):
    _occs, flags, _cov = bm.build_history({"s": lines})
    return [f.kind for f in flags]


M0 = 5000 * S      # monotonic time of T0


def test_late_appended_record_is_not_a_clock_step():
    # B read the clock 3 s after A but was appended first (old engines: clock before lock)
    lines = [rec("grant", T0, M0, pid=1), rec("grant", T0 + 5 * S, M0 + 5 * S, pid=2, uid=47012),
             rec("end", T0 + 2 * S, M0 + 2 * S, pid=1), rec("end", T0 + 9 * S, M0 + 9 * S, pid=2, uid=47012)]
    assert "clock_step" not in flags_of(lines)
    occs, flags, cov = bm.build_history({"s": lines})
    a = bm.answer_at({}, T0 + S, [o for o in occs if o.uid == 47011], flags, cov)
    assert a.status == "known" and a.matches[0].identity.dn == "/CN=Alice"


def test_wall_clock_step_is_still_a_step():
    # the wall clock goes back 50 s while CLOCK_MONOTONIC goes on
    lines = [rec("grant", T0, M0, pid=1), rec("end", T0 + 100 * S, M0 + 100 * S, pid=1),
             rec("refuse", T0 + 50 * S, M0 + 101 * S)]
    assert "clock_step" in flags_of(lines)


def test_step_hidden_in_a_late_append_is_a_step():
    # appended late (mono 2 s back) but the wall time went back 2.5 s: a 0.5 s step
    lines = [rec("grant", T0 + 5 * S, M0 + 5 * S, pid=1),
             rec("refuse", T0 + 2 * S + S // 2, M0 + 3 * S)]
    assert "clock_step" in flags_of(lines)


def test_other_boot_or_no_mono_is_a_step():
    late = [rec("grant", T0 + 5 * S, M0 + 5 * S, pid=1), rec("refuse", T0 + 2 * S, M0 + 2 * S, boot="other")]
    assert "clock_step" in flags_of(late)
    plain = [record("grant", T0 + 5 * S, pid=1), record("refuse", T0 + 2 * S)]
    assert "clock_step" in flags_of(plain)


def test_index_resumes_the_clock_across_refreshes(setup):
    audit, index = setup
    write(audit, [rec("grant", T0, M0, pid=1), rec("grant", T0 + 5 * S, M0 + 5 * S, pid=2, uid=47012)])
    index.refresh([audit])
    write(audit, [rec("end", T0 + 2 * S, M0 + 2 * S, pid=1),
                  rec("end", T0 + 9 * S, M0 + 9 * S, pid=2, uid=47012)], mode="ab")
    index.refresh([audit])
    a = index.uid_at(47011, T0 + S)
    assert a.status == "known", a.why
    assert not [f for f in a.flags if f.kind == "clock_step"]
    # and a real step after a refresh is still found
    write(audit, [rec("refuse", T0 + 4 * S, M0 + 20 * S)], mode="ab")
    index.refresh([audit])
    assert any(f.kind == "clock_step" for f in index.uid_at(47012, T0 + 6 * S).flags)


# -- concurrent writers through auditlog.append -----------------------------------------------

def _writer(path, n, late, seed):
    host = os.uname().nodename
    for i in range(n):
        r = {"time": None, "event": "refuse", "host": host, "boot_id": BOOT, "mono": None,
             "pid": os.getpid(), "n": i}
        if late:     # the old engine: clock read before the append lock
            now = time.time()
            r["time"], r["mono"] = auditlog.iso_time(now), round(time.monotonic(), 6)
        time.sleep(((seed * 7919 + i * 104729) % 1000) / 2e6)     # a writer preempted before the lock
        auditlog.append(path, encode(r) if late else auditlog.stamper(r, encode))


def _run_writers(path, late, procs=8, n=40):
    ctx = multiprocessing.get_context("fork")
    ps = [ctx.Process(target=_writer, args=(path, n, late, k)) for k in range(procs)]
    for p in ps:
        p.start()
    for p in ps:
        p.join(60)
        assert p.exitcode == 0
    with open(path, "rb") as f:
        return f.read().splitlines(keepends=True)


def _times(lines):
    import json
    return [parse_time(json.loads(line)["time"]) for line in lines]


def test_concurrent_appends_are_in_time_order(private_dir):
    lines = _run_writers(os.path.join(private_dir, "audit.jsonl"), late=False)
    times = _times(lines)
    assert len(times) == 8 * 40
    assert all(a <= b for a, b in zip(times, times[1:])), "a record is earlier than the one before it"


def test_backmap_calls_late_appends_no_clock_step(setup):
    audit, index = setup
    lines = _run_writers(audit, late=True)
    times = _times(lines)
    assert any(b < a for a, b in zip(times, times[1:])), "the writers never raced: test proves nothing"
    index.refresh([audit])
    flags = index.uid_at(47011, times[len(times) // 2]).flags
    assert not [f for f in flags if f.kind == "clock_step"], flags
    assert "clock_step" not in flags_of(lines)
