"""Batch-compatibility checks of glexec (``glexec-sutest``): the checks as data and the
verdicts.  Pure: every function works on observations that the tool collected (job output
records, /proc/PID/stat texts, batch-system answers) and returns a ``Verdict`` that says
pass/fail/warn/skip and why, with the evidence.

The checks (reference: ../shared/reference/batch.md section 10):

identity    payload uid/gids are the mapped account's; the payload is in the job's session
            and process group; caller groups in the tracking ranges (Grid Engine / HTCondor
            tracking gids) survive the switch, other caller groups do not; the batch system
            lists the payload among the job's processes.
suspend     every payload process reaches T (SIGSTOP) or D (cgroup freezer) within a bound and
            its utime+stime stops advancing; includes a payload that catches SIGTSTP.
resume      the same processes run again and their ticks advance.
kill        cancelling the job removes every payload process within KillWait + margin,
            including one that ignores SIGTERM and a forked child.
escape      a daemonizing payload (setsid + fork, double fork): did the batch system kill it?
            Verdict relative to what the process tracking predicts (cgroup: must be killed;
            process-tree tracking: survival is a known limitation -> warn, prune-users needed).
accounting  a payload that burns N s of CPU is seen by the batch system (sstat AveCPU of the
            batch step) at >= 90 %.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

PASS, FAIL, WARN, SKIP = "pass", "fail", "warn", "skip"
STATUSES = (PASS, FAIL, WARN, SKIP)
RECORD_PREFIX = "SUTEST "
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


@dataclass(frozen=True)
class Check:
    name: str
    title: str
    needs_root: bool = False


CHECKS = (
    Check("identity", "payload runs as the mapped account, in the job's session and process "
          "group, keeping the tracking groups"),
    Check("suspend", "suspending the job stops every payload process (T or D) and its CPU ticks",
          needs_root=True),
    Check("resume", "resuming the job makes the payload run again", needs_root=True),
    Check("kill", "cancelling the job removes every payload process within KillWait + margin"),
    Check("escape", "a daemonizing payload (setsid; double fork) is killed with the job"),
    Check("accounting", "the batch system accounts the payload's CPU time"),
)
CHECK_NAMES = tuple(c.name for c in CHECKS)
# which job of the tool serves which check
JOB_OF = {"identity": "main", "suspend": "main", "resume": "main", "kill": "main",
          "escape": "escape", "accounting": "accounting"}


@dataclass
class Verdict:
    check: str
    status: str
    summary: str
    evidence: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(self.status)
        if self.check not in CHECK_NAMES:
            raise ValueError(self.check)


def skipped(check: str, why: str, **evidence) -> Verdict:
    return Verdict(check, SKIP, why, dict(evidence))


# --- parsing ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ProcStat:
    pid: int
    comm: str
    state: str
    ppid: int
    pgrp: int
    session: int
    utime: int
    stime: int
    starttime: int

    @property
    def ticks(self) -> int:
        return self.utime + self.stime


def parse_stat(text: str) -> ProcStat:
    """/proc/PID/stat (comm may hold spaces and parentheses: split at the last ')')."""
    head, _, rest = text.rpartition(")")
    pid_s, _, comm = head.partition(" (")
    f = rest.split()
    if len(f) < 20:
        raise ValueError("short /proc/PID/stat")
    # f[0] is field 3 (state); field n is f[n - 3]
    return ProcStat(pid=int(pid_s), comm=comm, state=f[0], ppid=int(f[1]), pgrp=int(f[2]),
                    session=int(f[3]), utime=int(f[11]), stime=int(f[12]),
                    starttime=int(f[19]))


def parse_records(text: str) -> list[dict]:
    """The ``SUTEST {json}`` lines the job script and the payloads print (others ignored)."""
    out = []
    for line in text.splitlines():
        if not line.startswith(RECORD_PREFIX):
            continue
        try:
            rec = json.loads(line[len(RECORD_PREFIX):])
        except ValueError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def parse_gid_ranges(text: str) -> tuple[tuple[int, int], ...]:
    """``"65400-65500,47650"`` -> ((65400, 65500), (47650, 47650))."""
    out = []
    for part in (text or "").replace(" ", "").split(","):
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise ValueError(f"not a gid or gid range: {part!r}")
        a, b = int(lo), int(hi) if sep else int(lo)
        if a > b:
            raise ValueError(f"empty gid range: {part!r}")
        out.append((a, b))
    return tuple(out)


def in_ranges(gid: int, ranges) -> bool:
    return any(lo <= gid <= hi for lo, hi in ranges)


def parse_duration(text: str) -> float | None:
    """Slurm's ``[D-][HH:]MM:SS[.fff]`` in seconds; None if not one."""
    text = (text or "").strip()
    if not text:
        return None
    days = 0
    if "-" in text:
        d, text = text.split("-", 1)
        if not d.isdigit():
            return None
        days = int(d)
    secs = 0.0
    parts = text.split(":")
    if len(parts) > 3:
        return None
    for p in parts:
        try:
            v = float(p)
        except ValueError:
            return None
        if v < 0:
            return None
        secs = secs * 60 + v
    return days * 86400 + secs


def parse_kill_wait(show_config: str) -> int | None:
    """KillWait from ``scontrol show config`` (``KillWait = 5 sec``)."""
    for line in show_config.splitlines():
        k, _, v = line.partition("=")
        if k.strip() == "KillWait":
            f = v.split()
            if f and f[0].isdigit():
                return int(f[0])
    return None


def parse_config_value(show_config: str, key: str) -> str | None:
    for line in show_config.splitlines():
        k, _, v = line.partition("=")
        if k.strip() == key:
            return v.strip()
    return None


def predicted_escape_kill(proctrack: str | None) -> bool | None:
    """Does this process tracking kill a payload that reparented to init?  cgroup: yes;
    process tree (linuxproc) or process group (pgid): no; unknown: None."""
    p = (proctrack or "").lower()
    if "cgroup" in p:
        return True
    if "linuxproc" in p or "pgid" in p:
        return False
    return None


# --- verdicts -----------------------------------------------------------------------------------

def judge_identity(job: dict | None, payloads: list[dict], *, pilot_uid: int,
                   expect_uid: int | None, expect_groups, tracking,
                   tracked_pids=None, expected_count: int | None = None) -> Verdict:
    """``job``: the job script's record (uid, sid, pgid, groups); ``payloads``: one record per
    payload process (uid/gid triples, groups, sid, pgid, pid); ``expect_groups``: the mapped
    account's own groups (initgroups) or None; ``tracking``: gid ranges that must be kept;
    ``tracked_pids``: the batch system's pid list for the job (None = not available)."""
    ev = {"job": job, "payloads": payloads, "expect_uid": expect_uid,
          "tracking_ranges": [list(r) for r in tracking]}
    if job is None:
        return Verdict("identity", FAIL, "the job script reported nothing (did the job run?)", ev)
    if not payloads:
        return Verdict("identity", FAIL, "no payload reported (glexec refused or failed: see "
                       "the job's output)", ev)
    problems = []
    if expected_count is not None and len(payloads) < expected_count:
        problems.append(f"only {len(payloads)} of {expected_count} payload processes reported "
                        "(a glexec call failed? see job_output_tail)")
    job_groups = set(job.get("groups", ())) | {job.get("gid", [None])[0]}
    must_keep = sorted(g for g in job_groups if g is not None and in_ranges(g, tracking))
    ev["tracking_groups_of_job"] = must_keep
    for p in payloads:
        who = f"payload {p.get('tag')}/{p.get('role')} pid {p.get('pid')}"
        uids, gids = p.get("uid", []), p.get("gid", [])
        if len(set(uids)) != 1:
            problems.append(f"{who}: real/effective/saved uid differ: {uids}")
        uid = uids[0] if uids else None
        if uid in (0, pilot_uid):
            problems.append(f"{who}: still runs as uid {uid} (no identity switch)")
        elif expect_uid is not None and uid != expect_uid:
            problems.append(f"{who}: uid {uid}, want the mapped uid {expect_uid}")
        if len(set(gids)) != 1:
            problems.append(f"{who}: real/effective/saved gid differ: {gids}")
        groups = set(p.get("groups", ())) | ({gids[0]} if gids else set())
        missing = [g for g in must_keep if g not in groups]
        if missing:
            problems.append(f"{who}: tracking groups of the job dropped: {missing}")
        if expect_groups is not None:
            want = set(expect_groups) | set(must_keep)
            if groups != want:
                problems.append(f"{who}: groups {sorted(groups)}, want {sorted(want)} "
                                "(the account's groups + kept tracking groups)")
        else:
            leaked = sorted(g for g in (groups & job_groups) if g not in must_keep)
            if leaked:
                ev.setdefault("caller_groups_also_in_payload", {})[str(p.get("pid"))] = leaked
        if p.get("sid") != job.get("sid"):
            problems.append(f"{who}: session {p.get('sid')}, the job's is {job.get('sid')}")
        if p.get("pgid") != job.get("pgid"):
            problems.append(f"{who}: process group {p.get('pgid')}, the job's is "
                            f"{job.get('pgid')}")
        if tracked_pids is not None and p.get("pid") not in tracked_pids:
            problems.append(f"{who}: not among the job's processes known to the batch system")
    if tracked_pids is None:
        ev["batch_pid_list"] = "not available"
    else:
        ev["batch_pid_list"] = sorted(tracked_pids)
    if problems:
        return Verdict("identity", FAIL, "; ".join(problems), ev)
    uid = payloads[0]["uid"][0]
    note = (f"tracking groups {must_keep} kept" if must_keep else
            "no caller group in the tracking ranges: tracking-group survival not exercised")
    return Verdict("identity", PASS,
                   f"{len(payloads)} payload process(es) as uid {uid} (caller {pilot_uid}), in "
                   f"the job's session {job.get('sid')} and process group {job.get('pgid')}; "
                   f"{note}", ev)


def judge_suspend(procs: dict, *, timeout: float, tolerance: int = 2) -> Verdict:
    """``procs``: pid -> {"tag", "stopped_after": seconds or None, "state": last state,
    "ticks_delta": ticks gained during the frozen window, "window": seconds,
    "tstp_caught": n}."""
    ev = {"processes": procs, "timeout_s": timeout, "tick_tolerance": tolerance}
    if not procs:
        return Verdict("suspend", FAIL, "no payload process to observe", ev)
    problems = []
    for pid, p in procs.items():
        who = f"pid {pid} ({p.get('tag')})"
        if p.get("stopped_after") is None:
            problems.append(f"{who} still in state {p.get('state')!r} after {timeout} s")
        elif p.get("ticks_delta") is None:
            problems.append(f"{who}: ticks not measured")
        elif p["ticks_delta"] > tolerance:
            problems.append(f"{who} gained {p['ticks_delta']} CPU ticks in "
                            f"{p.get('window')} s while suspended")
    if problems:
        return Verdict("suspend", FAIL, "; ".join(problems), ev)
    worst = max(p["stopped_after"] for p in procs.values())
    states = sorted({p.get("state") for p in procs.values()})
    caught = sum(p.get("tstp_caught") or 0 for p in procs.values())
    extra = f"; the SIGTSTP-catching payload saw {caught} SIGTSTP and still stopped" \
        if any(p.get("catches_tstp") for p in procs.values()) else ""
    return Verdict("suspend", PASS, f"{len(procs)} payload process(es) stopped (state "
                   f"{'/'.join(states)}) within {worst:.1f} s, no CPU ticks gained{extra}", ev)


def judge_resume(procs: dict, *, min_ticks: int = 5) -> Verdict:
    """``procs``: pid -> {"tag", "state", "ticks_delta", "window"}."""
    ev = {"processes": procs, "min_ticks": min_ticks}
    if not procs:
        return Verdict("resume", FAIL, "no payload process to observe", ev)
    problems = []
    for pid, p in procs.items():
        who = f"pid {pid} ({p.get('tag')})"
        if p.get("state") in ("T", "t", "D", None):
            problems.append(f"{who} still in state {p.get('state')!r}")
        elif (p.get("ticks_delta") or 0) < min_ticks:
            problems.append(f"{who} gained only {p.get('ticks_delta')} ticks in "
                            f"{p.get('window')} s")
    if problems:
        return Verdict("resume", FAIL, "; ".join(problems), ev)
    return Verdict("resume", PASS, f"{len(procs)} payload process(es) running again, "
                   f"{min(p['ticks_delta'] for p in procs.values())}+ ticks each", ev)


def judge_kill(procs: dict, *, kill_wait: int | None, margin: float, how: str) -> Verdict:
    """``procs``: pid -> {"tag", "gone_after": seconds or None, "ignores_term": bool}."""
    limit = (kill_wait or 0) + margin
    ev = {"processes": procs, "kill_wait_s": kill_wait, "limit_s": limit, "cancelled_with": how}
    if not procs:
        return Verdict("kill", FAIL, "no payload process to observe", ev)
    alive = [f"pid {pid} ({p.get('tag')})" for pid, p in procs.items()
             if p.get("gone_after") is None or p["gone_after"] > limit]
    if alive:
        return Verdict("kill", FAIL, f"still alive {limit:.0f} s after {how}: "
                       + ", ".join(alive), ev)
    worst = max(p["gone_after"] for p in procs.values())
    term = [pid for pid, p in procs.items() if p.get("ignores_term")]
    note = f", including {len(term)} ignoring SIGTERM" if term else ""
    return Verdict("kill", PASS, f"{how} removed {len(procs)} payload process(es){note} in "
                   f"{worst:.1f} s (limit KillWait {kill_wait} + {margin:.0f} s)", ev)


def judge_escape(daemons: dict, *, proctrack: str | None, wait: float) -> Verdict:
    """``daemons``: pid -> {"tag", "gone_after": seconds or None, "sid", "ppid_now"}."""
    predicted = predicted_escape_kill(proctrack)
    ev = {"daemons": daemons, "proctrack": proctrack,
          "predicted": {True: "killed", False: "survives", None: "unknown"}[predicted],
          "waited_s": wait}
    if not daemons:
        return Verdict("escape", FAIL, "the daemonizing payload reported no daemon", ev)
    survivors = [pid for pid, d in daemons.items() if d.get("gone_after") is None]
    ev["killed_by_batch_system"] = not survivors
    if not survivors:
        return Verdict("escape", PASS, f"all {len(daemons)} daemonized payload process(es) "
                       f"were killed with the job ({proctrack})", ev)
    what = ", ".join(f"pid {pid} ({daemons[pid].get('tag')})" for pid in survivors)
    if predicted is True:
        return Verdict("escape", FAIL, f"{what} survived the job although {proctrack} should "
                       "track it", ev)
    return Verdict("escape", WARN, f"{what} survived the job: {proctrack or 'this tracking'} "
                   "follows the process tree, so a payload that reparents to init escapes; "
                   "run prune-users from the epilogue or cron, or use cgroup tracking", ev)


def judge_accounting(burned: float | None, seen: float | None, *, ratio: float = 0.9,
                     source: str = "sstat AveCPU") -> Verdict:
    ev = {"payload_cpu_s": burned, "batch_cpu_s": seen, "min_ratio": ratio, "source": source}
    if burned is None:
        return Verdict("accounting", FAIL, "the CPU-burning payload did not report", ev)
    if seen is None:
        return Verdict("accounting", FAIL, f"{source} reported nothing for the job", ev)
    r = seen / burned if burned > 0 else 0.0
    ev["ratio"] = round(r, 3)
    if r < ratio:
        return Verdict("accounting", FAIL, f"{source} saw {seen:.1f} s of the payload's "
                       f"{burned:.1f} s CPU ({r:.0%} < {ratio:.0%})", ev)
    return Verdict("accounting", PASS, f"{source} saw {seen:.1f} s of the payload's "
                   f"{burned:.1f} s CPU ({r:.0%})", ev)


# --- report -------------------------------------------------------------------------------------

def exit_code(verdicts) -> int:
    return EXIT_FAILED if any(v.status == FAIL for v in verdicts) else EXIT_OK


def report_dict(verdicts, meta: dict) -> dict:
    return {"meta": meta, "result": "fail" if exit_code(verdicts) else "pass",
            "checks": [asdict(v) for v in verdicts]}


def _brief(obj, limit=300) -> str:
    s = json.dumps(obj, sort_keys=True, default=str)
    return s if len(s) <= limit else s[:limit] + "..."


def render_text(verdicts, meta: dict, *, verbose: bool = False) -> str:
    lines = [f"glexec-sutest: {meta.get('batch')} ({meta.get('proctrack', '?')}), glexec "
             f"{meta.get('glexec')}, pilot {meta.get('pilot')}"]
    for v in verdicts:
        lines.append(f"{v.status.upper():4} {v.check:10} {v.summary}")
        if verbose or v.status in (FAIL, WARN):
            for k, val in v.evidence.items():
                lines.append(f"     {k}: {_brief(val)}")
    n = {s: sum(1 for v in verdicts if v.status == s) for s in STATUSES}
    lines.append(f"{'FAILED' if n[FAIL] else 'OK'}: {n[PASS]} pass, {n[FAIL]} fail, "
                 f"{n[WARN]} warn, {n[SKIP]} skip")
    return "\n".join(lines) + "\n"
