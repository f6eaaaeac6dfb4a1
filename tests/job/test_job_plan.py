"""glexec-job run's pure rules (plan.py): the job: section of glexec.yaml, the limits a pilot
may ask for, the status that separates application, limit and infrastructure failures, the
exit code passed on, the declared environment; and the wrapper's output pump (the started
marker taken off stderr, the output cap)."""
import os

import pytest
from hypothesis import given, strategies as st

from glexec_py.errors import ConfigError
from glexec_tools.job import plan
from glexec_tools.job.pilot import _Pump
from tests.support.glexec_yaml import with_section


def test_section_defaults_and_values():
    cfg = plan.parse_section(with_section("job", None), "g.yaml")
    assert cfg.scratch_root == "/tmp" and cfg.wall_time == 7 * 86400 and cfg.cpu_time == 0
    cfg = plan.parse_section(with_section("job", "scratch_root: /scratch\nwall_time: 60\ngrace: 2"), "g.yaml")
    assert (cfg.scratch_root, cfg.wall_time, cfg.grace) == ("/scratch", 60, 2)


@pytest.mark.parametrize("body, what", [
    ("scratch_root: tmp", "absolute path"), ("scratch_root: /a/../b", "plain absolute"),
    ("wall_time: -1", "between"), ("wall_time: ten", "integer"), ("nope: 1", "unknown key"),
    ("heartbeat: 0", "at least 1"), ("state_dir: /x", "not set per tool")])
def test_section_refusals(body, what):
    with pytest.raises(ConfigError) as e:
        plan.parse_section(with_section("job", body), "g.yaml")
    assert what in str(e.value) and "g.yaml:" in str(e.value)


def _site(**kw):
    base = plan.parse_section(with_section("job", None), "g.yaml")
    return plan.JobConfig(**{**base.__dict__, **kw})


def test_limits_only_lower_the_site_ceiling():
    site = _site(wall_time=100, cpu_time=0)
    assert plan.effective_limits(site, {})["wall_time"] == 100
    assert plan.effective_limits(site, {"wall_time": 5})["wall_time"] == 5
    assert plan.effective_limits(site, {"cpu_time": 7})["cpu_time"] == 7      # site: none
    for asked in ({"wall_time": 101}, {"wall_time": 0}, {"wall_time": -1}):
        with pytest.raises(plan.Refused):
            plan.effective_limits(site, asked)


@given(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 10**6))
def test_limits_never_above_the_ceiling(ceiling, asked, used):
    site = _site(wall_time=ceiling)
    try:
        got = plan.effective_limits(site, {"wall_time": asked})["wall_time"]
    except plan.Refused:
        assert ceiling and (asked == 0 or asked > ceiling)
        return
    assert not ceiling or 0 < got <= ceiling
    over = plan.limit_reached({**dict.fromkeys(plan.LIMITS, 0), "wall_time": got}, used, 0, 0, 0)
    assert over == ("wall_time" if got and used > got else None)


@given(st.integers(0, 255), st.integers(1, 64))
def test_exit_of_wait_is_the_shells(code, sig):
    assert plan.exit_of_wait(code << 8) == code
    assert plan.exit_of_wait(sig) == 128 + sig
    assert plan.exit_of_wait(sig | 0x80) == 128 + sig        # core dumped


def test_outcome_separates_the_kinds():
    assert plan.job_outcome(True, 0, None, None) == ("ok", 0, None)
    assert plan.job_outcome(True, 3, None, None)[:2] == ("application", 3)
    assert plan.job_outcome(True, 143, "wall_time", None)[:2] == ("limit", 143)
    assert plan.job_outcome(False, 201, None, None)[:2] == ("infrastructure", 201)
    assert plan.job_outcome(False, 0, None, None)[:2] == ("infrastructure", plan.EXIT_INFRASTRUCTURE)
    assert plan.job_outcome(False, None, None, "input refused")[:2] == ("infrastructure", plan.EXIT_INFRASTRUCTURE)


def test_env_assignments():
    assert plan.parse_env_assignments(["A=1", "B=x=y", "C="]) == [(b"A", b"1"), (b"B", b"x=y"), (b"C", b"")]
    for bad in (["A"], ["=1"], ["A=1", "A=2"], ["A=\0"]):
        with pytest.raises(plan.Refused):
            plan.parse_env_assignments(bad)


def _pump(chunks_err, chunks_out=(), limit=0):
    r_out, w_out = os.pipe()
    r_err, w_err = os.pipe()
    s_out, s_out_w = os.pipe()
    s_err, s_err_w = os.pipe()
    p = _Pump({r_out: s_out_w, r_err: s_err_w}, r_err, limit)
    for c in chunks_out:
        os.write(w_out, c)
        p.run(0.05)
    for c in chunks_err:
        os.write(w_err, c)
        p.run(0.05)
    os.close(w_out)
    os.close(w_err)
    p.drain(1)
    os.close(s_out_w)
    os.close(s_err_w)
    got_out, got_err = os.read(s_out, 1 << 20), os.read(s_err, 1 << 20)
    os.close(s_out)
    os.close(s_err)
    return p, got_out, got_err


def test_pump_marker_in_pieces_and_after_stdout():
    m = plan.STARTED_MARKER
    p, out, err = _pump([m[:3], m[3:10], m[10:] + b"payload err\n"], [b"early stdout\n"])
    assert p.started and err == b"payload err\n" and out == b"early stdout\n"


def test_pump_glexec_refusal_is_not_started():
    p, out, err = _pump([b"glexec: not authorized\n"])
    assert not p.started and err == b"glexec: not authorized\n"
    p, _, err = _pump([m := plan.STARTED_MARKER[:5]])        # a prefix, then EOF
    assert not p.started and err == m


def test_pump_output_cap():
    p, out, err = _pump([plan.STARTED_MARKER + b"e" * 50], [b"o" * 80], limit=100)
    assert p.over and p.total == 100 and len(out) + len(err) == 100
