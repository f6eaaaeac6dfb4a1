"""glexec-sutest against a real private Slurm (and its Torque wrappers qsub/qdel), with the
installed setuid glexec, real accounts and a real proxy.  Plus pure tests of the verdicts.

Which process tracking ran is printed and recorded in the report. The test Slurm uses
proctrack/cgroup (cgroup v1, or cgroup v2 without systemd: tests/support/slurm.py), and the
daemonized payload must be killed with the job; process-tree tracking (proctrack/linuxproc,
where it escapes) fails the containment check.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from glexec_tools.sutest import plan as core
from tests.support import accounts as acc

# the same values as tests/batch/conftest.py (not importable: no package)
TRACKING = "47650-47659"
GROUPS = {"gxtbpilot": 47600, "gxtbtarget": 47601, "gxtbtrack": 47650, "gxtbextra": 47660}


def run_sutest(binstall, slurm, *args, timeout=170):
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C", **slurm.env}
    t0 = time.monotonic()
    p = subprocess.run([str(binstall.sutest), "--glexec", str(binstall.glexec),
                        "--proxy", str(binstall.proxy), "--pilot", "gxtbpilot",
                        "--target-user", "gxtbtarget", "--json", *args],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                       timeout=timeout)
    took = time.monotonic() - t0
    assert p.returncode in (0, 1), f"setup error rc={p.returncode}: {p.stderr}\n{p.stdout}"
    report = json.loads(p.stdout)
    checks = {c["check"]: c for c in report["checks"]}
    sys.stderr.write(f"\n[batch] glexec-sutest {' '.join(args)}: {took:.1f} s, proctrack "
                     f"{report['meta']['proctrack']}; "
                     + ", ".join(f"{k}={v['status']}" for k, v in checks.items()) + "\n")
    return p.returncode, report, checks


def _show(c):
    return json.dumps(c, indent=1, default=str)[:6000]


def test_sutest_all_checks_on_slurm(slurm, binstall, baccounts):
    rc, report, checks = run_sutest(binstall, slurm)
    meta = report["meta"]
    assert meta["proctrack"] == f"proctrack/{slurm.proctrack}"
    assert meta["tracking_ranges"] == [[47650, 47659]], meta   # from the installed config

    ident = checks["identity"]
    assert ident["status"] == "pass", _show(ident)
    ev = ident["evidence"]
    assert ev["tracking_groups_of_job"] == [GROUPS["gxtbtrack"]]
    assert len(ev["payloads"]) == 3, _show(ident)    # A, B and B's forked child
    for p in ev["payloads"]:
        assert p["uid"] == [baccounts.target.uid] * 3
        assert p["gid"] == [baccounts.target.gid] * 3
        assert GROUPS["gxtbtrack"] in p["groups"]    # tracking group kept
        assert GROUPS["gxtbextra"] not in p["groups"]  # other caller groups dropped
        assert (p["sid"], p["pgid"]) == (ev["job"]["sid"], ev["job"]["pgid"])
        assert p["pid"] in ev["batch_pid_list"]

    for name in ("suspend", "resume", "kill", "accounting"):
        assert checks[name]["status"] == "pass", _show(checks[name])
    sus = checks["suspend"]["evidence"]["processes"]
    assert any(p["catches_tstp"] for p in sus.values())
    assert all(p["state"] in ("T", "D") for p in sus.values())
    kill = checks["kill"]["evidence"]
    assert kill["cancelled_with"] == "scancel"
    assert any(p["ignores_term"] for p in kill["processes"].values())

    # Containment: a payload that daemonizes (setsid + fork; double fork) must die with the
    # job. Only cgroup tracking can promise that; process-tree tracking is not a pass.
    esc = checks["escape"]
    assert len(esc["evidence"]["daemons"]) == 2, _show(esc)
    assert slurm.proctrack == "cgroup", (
        "containment of a daemonizing payload is not proven: the test Slurm runs with "
        f"proctrack/{slurm.proctrack} ({slurm.cgroup_error or 'no cgroup hierarchy Slurm can use'}); "
        f"escape verdict: {_show(esc)}")
    assert esc["status"] == "pass", _show(esc)
    assert esc["evidence"]["killed_by_batch_system"] is True
    for d in esc["evidence"]["daemons"].values():
        assert d["uid"] == [baccounts.target.uid] * 3, _show(esc)  # the switched payload's
        assert d["listed_by_batch_system"] is True, _show(esc)     # in the job's cgroup
        assert d["gone_after"] is not None, _show(esc)             # and killed with it
    assert rc == 0, report
    # nothing of the mapped account outlives the tool (leftover daemons are cleaned up)
    assert acc.live_uid_processes([baccounts.target.uid], grace=2) == []


def test_torque_wrappers_qsub_qdel(slurm, binstall, baccounts):
    """qsub (Slurm's Torque wrapper) runs a job whose payload goes through glexec; qdel, as
    the pilot, kills the switched payload, including the one ignoring SIGTERM."""
    rc, report, checks = run_sutest(binstall, slurm, "--batch", "torque",
                                    "--checks", "identity,kill")
    assert set(checks) == {"identity", "kill"}
    assert checks["identity"]["status"] == "pass", _show(checks["identity"])
    assert checks["kill"]["status"] == "pass", _show(checks["kill"])
    assert checks["kill"]["evidence"]["cancelled_with"] == "qdel"
    assert rc == 0
    assert acc.live_uid_processes([baccounts.target.uid], grace=2) == []


def test_unmapped_proxy_fails_identity(slurm, binstall, baccounts):
    """Negative control: glexec refuses (no mapping) -> identity fails with the job's output
    as evidence, exit 1."""
    from tests.support import install as inst
    inst.write_gridmap(binstall.prefix, [])
    try:
        rc, report, checks = run_sutest(binstall, slurm, "--checks", "identity",
                                        "--record-timeout", "4")
    finally:
        inst.write_gridmap(binstall.prefix, [(binstall.dn, "gxtbtarget")])
    assert rc == 1
    sys.stderr.write(f"[batch] refused job first seen {report['meta']['jobs']['main']['state_seen']}\n")
    ident = checks["identity"]
    assert ident["status"] == "fail"
    assert "no payload" in ident["summary"]
    assert any("glexec" in line for line in ident["evidence"]["job_output_tail"]), _show(ident)


# --- pure: the verdict logic ----------------------------------------------------------------------

JOB = {"ev": "job", "uid": [1000] * 3, "gid": [1000] * 3, "groups": [1000, 5, 65401],
       "sid": 10, "pgid": 11, "pid": 12}


def _payload(**kw):
    p = {"ev": "proc", "tag": "A", "role": "main", "pid": 20, "uid": [2000] * 3,
         "gid": [2000] * 3, "groups": [2000, 65401], "sid": 10, "pgid": 11}
    p.update(kw)
    return p


@pytest.mark.parametrize("change,fragment", [
    ({}, None),
    ({"groups": [2000]}, "tracking groups of the job dropped"),
    ({"sid": 99}, "session 99"),
    ({"pgid": 98}, "process group 98"),
    ({"uid": [1000] * 3}, "no identity switch"),
    ({"uid": [2000, 0, 0]}, "real/effective/saved uid differ"),
    ({"groups": [2000, 5, 65401]}, "want [2000, 65401]"),
])
def test_judge_identity(change, fragment):
    v = core.judge_identity(JOB, [_payload(**change)], pilot_uid=1000, expect_uid=2000,
                            expect_groups=[2000], tracking=((65400, 65500),),
                            tracked_pids=[20])
    if fragment is None:
        assert v.status == core.PASS, v
        assert "tracking groups [65401] kept" in v.summary
    else:
        assert v.status == core.FAIL and fragment in v.summary, v


def test_judge_identity_untracked_pid_and_no_output():
    v = core.judge_identity(JOB, [_payload()], pilot_uid=1000, expect_uid=None,
                            expect_groups=None, tracking=(), tracked_pids=[1])
    assert v.status == core.FAIL and "not among the job's processes" in v.summary
    assert core.judge_identity(None, [], pilot_uid=1, expect_uid=None, expect_groups=None,
                               tracking=()).status == core.FAIL


def test_judge_suspend_resume_kill_escape_accounting():
    ok = {1: {"tag": "A", "stopped_after": 0.2, "state": "T", "ticks_delta": 0, "window": 1.5}}
    assert core.judge_suspend(ok, timeout=5).status == core.PASS
    late = {1: dict(ok[1], stopped_after=None, state="R")}
    assert core.judge_suspend(late, timeout=5).status == core.FAIL
    ticking = {1: dict(ok[1], ticks_delta=40)}
    assert core.judge_suspend(ticking, timeout=5).status == core.FAIL
    assert core.judge_resume({1: {"state": "R", "ticks_delta": 50}}).status == core.PASS
    assert core.judge_resume({1: {"state": "T", "ticks_delta": 0}}).status == core.FAIL
    assert core.judge_kill({1: {"gone_after": 1.2}}, kill_wait=5, margin=10,
                           how="scancel").status == core.PASS
    assert core.judge_kill({1: {"gone_after": None}}, kill_wait=5, margin=10,
                           how="scancel").status == core.FAIL
    survived = {1: {"tag": "setsid/daemon", "gone_after": None}}
    assert core.judge_escape(survived, proctrack="proctrack/linuxproc", wait=2).status == core.WARN
    assert core.judge_escape(survived, proctrack="proctrack/cgroup", wait=2).status == core.FAIL
    assert core.judge_escape({1: {"gone_after": 1.0}}, proctrack="proctrack/linuxproc",
                             wait=2).status == core.PASS
    assert core.judge_accounting(4.0, 3.9).status == core.PASS
    assert core.judge_accounting(4.0, 1.0).status == core.FAIL
    assert core.judge_accounting(4.0, None).status == core.FAIL
    assert core.exit_code([core.Verdict("escape", core.WARN, "")]) == 0
    assert core.exit_code([core.Verdict("kill", core.FAIL, "")]) == 1


def test_parsers():
    st = core.parse_stat("42 (a) b) (c) S 1 42 42 0 -1 4194304 0 0 0 0 17 3 0 0 20 0 1 0 "
                         "98765 1000 10 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n")
    assert (st.pid, st.comm, st.state, st.ppid, st.utime, st.stime, st.starttime) == \
        (42, "a) b) (c", "S", 1, 17, 3, 98765)
    assert core.parse_duration("00:00:07.500") == 7.5
    assert core.parse_duration("01:02.250") == 62.25
    assert core.parse_duration("1-00:00:01") == 86401
    assert core.parse_duration("") is None and core.parse_duration("x") is None
    assert core.parse_gid_ranges("65400-65500, 47650") == ((65400, 65500), (47650, 47650))
    with pytest.raises(ValueError):
        core.parse_gid_ranges("5-1")
    assert core.parse_kill_wait("KillOnBadExit = 0\nKillWait = 5 sec\n") == 5
    recs = core.parse_records('x\nSUTEST {"ev": "job"}\nSUTEST {bad\nSUTEST [1]\n')
    assert recs == [{"ev": "job"}]
    assert TRACKING == "47650-47659"


# --- pure: a job that is over before the checker polls it (the refused payload) --------------

def _tool():
    tools = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "tools")
    if tools not in sys.path:
        sys.path.insert(0, tools)
    from glexec_tools.sutest import cli as tool
    return tool


def _fake_batch(tool, states, job_output, scancel_rc=0):
    """The real Slurm submit/wait_state/cancel over a scripted squeue (``states``, one per
    poll, the last repeated) and an sbatch that leaves ``job_output`` as the job's output."""
    from types import SimpleNamespace
    seen = list(states)

    def run(argv, *, as_pilot=False, check=True, cwd=None, timeout=30):
        if argv[0] == "sbatch":
            with open(argv[argv.index("-o") + 1], "w") as f:
                f.write(job_output)
            return SimpleNamespace(returncode=0, stdout="7\n", stderr="")
        return SimpleNamespace(returncode=scancel_rc, stdout="", stderr="already completed")

    batch = object.__new__(tool.Slurm)
    batch.r, batch.torque, batch.node, batch.partition = SimpleNamespace(run=run, pilot=None), False, None, None
    batch.state = lambda jobid: seen.pop(0) if len(seen) > 1 else seen[0]
    return batch


def _checker(tool, batch, tmp_path):
    from types import SimpleNamespace
    args = SimpleNamespace(start_timeout=5, glexec="/usr/sbin/glexec", target_proxy="/dev/null")
    return tool.Sutest(args, batch, batch.r, str(tmp_path), "/proxy", None, 2000, [2000])


JOB_LINE = core.RECORD_PREFIX + json.dumps(JOB) + "\nglexec: no mapping for this identity\n"


@pytest.mark.parametrize("states", [["PENDING", "COMPLETED"], ["PENDING", "FAILED"], ["PENDING", "GONE"],
                                    ["CONFIGURING", "COMPLETING", "COMPLETED"], ["RUNNING"]])
def test_submit_sees_a_job_that_ended_between_polls(tmp_path, states):
    tool = _tool()
    checker = _checker(tool, _fake_batch(tool, states, JOB_LINE), tmp_path)
    assert checker.submit("main", ["true"]) == "7"
    assert checker.jobs["main"]["state_seen"] in ("RUNNING", "COMPLETING", "COMPLETED", "FAILED", "GONE")


@pytest.mark.parametrize("states,output", [(["PENDING", "GONE"], ""), (["PENDING", "COMPLETED"], "not a record\n"),
                                           (["PENDING", "CANCELLED"], JOB_LINE), (["NODE_FAIL"], JOB_LINE)])
def test_submit_still_refuses_a_job_that_never_ran(tmp_path, states, output):
    tool = _tool()
    checker = _checker(tool, _fake_batch(tool, states, output), tmp_path)
    with pytest.raises(tool.SetupError):
        checker.submit("main", ["true"])


def test_cancel_of_an_ended_job_is_fine_of_a_running_one_not(tmp_path):
    tool = _tool()
    _fake_batch(tool, ["COMPLETED"], "", scancel_rc=1).cancel("7")
    with pytest.raises(tool.SetupError):
        _fake_batch(tool, ["RUNNING"], "", scancel_rc=1).cancel("7")
