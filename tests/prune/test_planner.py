"""Pure planner tests: glexec_tools.prune.plan."""
import os

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from glexec_tools.prune import plan as P
from glexec_py.errors import ConfigError
from tests.support.glexec_yaml import with_section

POOL = {47401: "pool01", 47402: "pool02"}
HZ = 100


def proc(pid, ppid, uid, start=100, comm=b"sleep", state="S", cgroup=(), ruid=None, **kw):
    r = uid if ruid is None else ruid
    return P.Proc(pid, ppid, r, uid, uid, start, comm, state, cgroup=tuple(cgroup), **kw)


def snap(*procs, uptime=10000.0):
    base = [proc(1, 0, 0, start=1, comm=b"init")]
    return P.Snapshot({p.pid: p for p in base + list(procs)}, uptime, HZ)


def cfg(**kw):
    kw.setdefault("min_age", 0)
    return P.default_config(**kw)


def scope(**kw):
    return P.Scope(POOL, spared={65534: "nobody"}, min_uid=1000, **kw)


def decisions(s, c=None, sc=None):
    return {d.proc.pid: d for d in P.plan_prune(s, c or cfg(), sc or scope()).decisions}


def test_descendant_of_root_slurmstepd_kept_orphan_killed():
    s = snap(proc(10, 1, 0, comm=b"slurmstepd"), proc(11, 10, 47401), proc(12, 11, 47401),
             proc(20, 1, 47401))
    d = decisions(s)
    assert d[11].action == d[12].action == "keep"
    assert d[12].reason == "job_daemon" and d[12].detail["daemon_pid"] == 10
    assert d[20].action == "kill" and d[20].reason == "orphan"


def test_user_process_named_slurmstepd_is_no_daemon():
    s = snap(proc(10, 1, 47402, comm=b"slurmstepd"), proc(11, 10, 47401))
    d = decisions(s)
    assert d[11].action == "kill" and d[10].action == "kill"
    assert d[11].reason == "stray_descendant"


def test_own_comm_never_decides():
    s = snap(proc(20, 1, 47401, comm=b"slurmstepd"), proc(21, 1, 47401, comm=b"sshd"))
    assert {x.action for x in decisions(s, cfg(spare_ssh=True)).values()} == {"kill"}


def test_job_cgroup_anchored():
    s = snap(proc(20, 1, 47401, cgroup=["4:freezer:/slurm/uid_47001/job_7/step_0"]),
             proc(21, 1, 47401, cgroup=["0::/user.slice/user-47401.slice/slurm/uid_1/job_7"]),
             proc(22, 1, 47401, cgroup=["0::/system.slice/slurmstepd.scope/job_9/step_batch"]))
    d = decisions(s)
    assert d[20].reason == "job_cgroup" and "job_7" in d[20].text
    assert d[21].action == "kill"            # a user-made look-alike below its own slice
    assert d[22].reason == "job_cgroup"


def test_floor_spared_mixed_and_zombie_and_kthread():
    s = snap(proc(20, 1, 47401, ruid=0), proc(21, 1, 65534), proc(22, 1, 47401, state="Z"),
             proc(23, 2, 47401))
    d = decisions(P.Snapshot(s.procs, s.uptime), sc=P.Scope(POOL, {65534: "nobody"},
                                                            ranges=((47000, 65534),)))
    assert d[20].reason == "uid_floor" and d[21].reason == "uid_spared"
    assert d[22].reason == "zombie" and d[23].reason == "kernel_thread"


def test_young_grace_and_no_grace_and_stray_parent():
    s = snap(proc(20, 1, 47401, start=(10000 - 2) * HZ),
             proc(30, 1, 47402, start=100), proc(31, 30, 47402, start=(10000 - 1) * HZ))
    d = decisions(s, cfg(min_age=10))
    assert d[20].reason == "young"
    assert d[31].reason == "stray_descendant"        # a fork of a stray has no grace
    d = decisions(s, cfg(min_age=10), scope(no_grace={47401}))
    assert d[20].action == "kill"


def test_lease_protected_and_ssh():
    s = snap(proc(20, 1, 47401), proc(30, 1, 0, comm=b"sshd"), proc(31, 30, 47402))
    d = decisions(s, cfg(spare_ssh=True), scope(protected={47401: "lease just granted"}))
    assert d[20].reason == "lease_protected" and d[31].reason == "ssh_session"
    assert decisions(s)[31].action == "kill"


def test_ancestry_incomplete_and_reused_parent():
    s = snap(proc(20, 99, 47401), proc(21, 22, 47401, start=500), proc(22, 1, 0, start=900,
                                                                        comm=b"slurmstepd"))
    d = decisions(s)
    assert d[20].reason == "ancestry_incomplete"
    assert d[21].reason == "ancestry_incomplete"   # parent started after its child: reused


def test_parse_stat_hostile_comm():
    data = b"123 (a) R 1 (\nx)) S 77 123 123 0 -1 4194560 1 2 3 4 5 6 7 8 20 0 1 0 4242 1 2\n"
    pid, comm, state, ppid, flags, start = P.parse_stat(data)
    assert (pid, comm, state, ppid, start) == (123, b"a) R 1 (\nx)", "S", 77, 4242)


def _stat_line(pid, comm, state, ppid, flags, start):
    # the 52 fields of a 6.x stat line, the ones the parser reads at their real positions
    f = [str(pid).encode(), b"(" + comm + b")", state.encode(), str(ppid).encode()]
    f += [b"0"] * 4 + [str(flags).encode()] + [b"7"] * 12 + [str(start).encode()]
    f += [b"18446744073709551615"] + [b"0"] * 29
    assert len(f) == 52
    return b" ".join(f) + b"\n"


@pytest.mark.parametrize("comm", [b"sleep", b"a b", b"a) R 1 (", b")", b"(", b") S 1 2 3",
                                  b"x\ny) Z 0 0", b"", b" ", b"((()))", b"\xff\x00)"])
def test_parse_stat_comm_spaces_parens(comm):
    assert P.parse_stat(_stat_line(4242, comm, "S", 17, 4194560, 987654321)) == \
        (4242, comm, "S", 17, 4194560, 987654321)


@settings(max_examples=500, deadline=None)
@given(st.integers(1, 4194304), st.binary(max_size=64), st.sampled_from("RSDZTtWXxKPI?"),
       st.integers(0, 4194304), st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1))
def test_parse_stat_roundtrip_property(pid, comm, state, ppid, flags, start):
    assert P.parse_stat(_stat_line(pid, comm, state, ppid, flags, start)) == \
        (pid, comm, state, ppid, flags, start)


@pytest.mark.parametrize("data", [b"", b"123", b"123 (sleep", b"123 sleep) S 1",
                                  b"123 (sleep) S 1 2 3", b"123 (sleep)S 1" + b" 0" * 30,
                                  b"x (sleep) S 1" + b" 0" * 30, b"1 (a) S x" + b" 0" * 30])
def test_parse_stat_refuses_garbage(data):
    with pytest.raises((ValueError, IndexError)):
        P.parse_stat(data)


def test_parse_stat_real_hostile_comm():
    """A live process renames itself (prctl PR_SET_NAME) to a comm with spaces and ')':
    the real /proc line parses to its real ppid and a start time."""
    import subprocess
    import sys
    code = ("import ctypes, sys; ctypes.CDLL(None).prctl(15, b'a) R 1 (b', 0, 0, 0); "
            "print('ok', flush=True); sys.stdin.read()")
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE)
    try:
        assert child.stdout.readline() == b"ok\n"
        with open(f"/proc/{child.pid}/stat", "rb") as f:
            pid, comm, state, ppid, flags, start = P.parse_stat(f.read())
        assert (pid, comm, ppid) == (child.pid, b"a) R 1 (b", os.getpid())
        assert state in ("S", "R") and start > 0 and not flags & P.PF_KTHREAD
    finally:
        child.stdin.close()
        child.wait()


def test_unconfirmed_partial():
    p = proc(20, 1, 47401)
    p.full = False
    plan = P.plan_prune(snap(p), cfg(), scope())
    assert [d.proc.pid for d in plan.unconfirmed] == [20]


def parse(body, **main):
    return P.parse_section(with_section("prune", body, **main), "glexec.yaml")


@pytest.mark.parametrize("body,main,what", [
    ("pool_accounts: []\nuid_ranges: []\n", {}, "both empty"),
    ("pool_accounts: []\n", {}, "both empty"),
    ("uid_ranges: ['0-60000']\n", {}, "uid 0"),
    ("uid_ranges: [0]\n", {}, "uid 0"),
    ("uid_ranges: ['500-2000']\n", {}, "below min_uid"),
    ("uid_ranges: ['2000-3000']\n", {"min_uid": 2500}, "below min_uid"),
    ("pool_accounts: ['.pool']\nbogus: 1\n", {}, "unknown key 'bogus' in 'prune'"),
    ("pool_accounts: ['.pool']\npool_accounts: ['x']\n", {}, "duplicate"),
    ("pool_accounts: ['*']\n", {}, "wildcards"),
    ("pool_accounts: ['.pool']\nspare_ssh: 'yes'\n", {}, "boolean"),
    ("pool_accounts: &a ['.pool']\n", {}, "anchors"),
    ("pool_accounts: ['.pool']\njob_cgroups: ['/']\n", {}, "below the root"),
    ("pool_accounts: ['.pool']\nmin_age: -1\n", {}, "between"),
    ("daemons: []\n", {}, "must not be empty"),
    # the old prune.yaml's shared keys: set once in glexec.yaml
    ("min_uid: 5\n", {}, "'mapping.min_uid'"),
    ("state_dir: /x\n", {}, "top-level 'state_dir'"),
    ("audit_file: /x\n", {}, "'audit.file'"),
    ("gridmapdir: /x\n", {}, "'mapping.gridmapdir'"),
    ("- a\n", {}, "must be a mapping"),
])
def test_config_refused(body, main, what):
    with pytest.raises(ConfigError) as e:
        parse(body, **main)
    assert what in e.value.message
    assert e.value.message.startswith("glexec.yaml:") and e.value.line > 8   # the section's line


def test_engine_errors_come_first():
    with pytest.raises(ConfigError) as e:
        P.parse_section("prune:\n  min_age: 1\n", "glexec.yaml")
    assert "credentials" in e.value.message or "state_dir" in e.value.message


def test_config_ok_and_scope_check():
    c = parse("pool_accounts: ['.pool']\nuid_ranges: ['47400-47499', 5]\n", min_uid=5)
    assert c.uid_ranges == ((47400, 47499), (5, 5)) and c.daemons == P.DEFAULT_DAEMONS
    assert c.min_uid == 5 and c.state_dir == "/var/lib/x" and c.audit_file == "/var/log/x.jsonl"
    with pytest.raises(ValueError):
        P.check_scope(cfg(), {999: "sys"}, {})
    with pytest.raises(ValueError):
        P.check_scope(cfg(), {0: "root"}, {})


@pytest.mark.parametrize("body", [None, "", "min_age: 30\n"])
def test_defaults_from_glexec_yaml(body):
    """No section, an empty one, or one without a scope: every value from the defaults and
    glexec.yaml's own settings; the scope is the gridmapfile's pools (pool_accounts None)."""
    c = parse(body, gridmapdir="/var/lib/gmd", min_uid=2000)
    assert c.pool_accounts is None and c.uid_ranges == ()
    assert (c.gridmapdir, c.gridmapfile, c.min_uid) == ("/var/lib/gmd",
                                                        "/etc/grid-security/grid-mapfile", 2000)
    assert c.min_age == (30 if body else 10) and c.signal == "SIGTERM"


# --- property: generated process trees ---------------------------------------------------

DAEMON_NAMES = [b"slurmstepd", b"pbs_mom", b"sleep", b"sshd", b"res", b"bash"]
UIDS = [0, 1, 999, 47401, 47402, 47403, 65534]


@st.composite
def trees(draw):
    n = draw(st.integers(1, 40))
    procs = [P.Proc(1, 0, 0, 0, 0, 1, b"init")]
    for i in range(n):
        pid = 100 + i
        ppid = draw(st.sampled_from([1] + [p.pid for p in procs[1:]] + [99999]))
        r = draw(st.sampled_from(UIDS))
        e = draw(st.sampled_from([r, r, r] + UIDS))
        cg = draw(st.sampled_from([(), ("1:cpu:/slurm/uid_5/job_3/step_0",),
                                   ("0::/user.slice/slurm/uid_5/job_3",)]))
        state = draw(st.sampled_from("SSSRTZ"))
        start = draw(st.integers(1, 2000))
        procs.append(P.Proc(pid, ppid, r, e, r, start, draw(st.sampled_from(DAEMON_NAMES)),
                            state, cgroup=cg))
    return P.Snapshot({p.pid: p for p in procs}, 1000.0, 1)


def _oracle_ancestors(p, procs):
    out = []
    seen = set()
    while p.ppid not in (0, 1) and p.ppid in procs and p.ppid not in seen:
        seen.add(p.ppid)
        p = procs[p.ppid]
        out.append(p)
    return out


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trees(), st.booleans(), st.integers(0, 500))
def test_property_kill_only_strays(s, ssh, min_age):
    c = cfg(min_age=min_age, spare_ssh=ssh)
    sc = P.Scope({47401: "a", 47402: "b"}, {65534: "nobody"}, min_uid=1000)
    plan = P.plan_prune(s, c, sc)
    for d in plan.decisions:
        p = d.proc
        assert any(u in (47401, 47402) for u in p.uids)       # only candidate processes listed
        if d.action != "kill":
            continue
        assert all(u >= 1000 and u != 65534 for u in p.uids)  # never below floor or spared
        assert set(p.uids) <= {47401, 47402, 47403}
        assert p.state != "Z"
        assert not any("/slurm/uid_5/job_3" in l and l.startswith("1:") for l in p.cgroup)
        for a in _oracle_ancestors(p, s.procs):               # no root-owned daemon above
            assert not (a.ruid == 0 and a.comm in (b"slurmstepd", b"pbs_mom", b"res"))
            assert not (ssh and a.ruid == 0 and a.comm == b"sshd")
    # and every candidate process whose chain is complete, with a root daemon above, is kept
    for d in plan.decisions:
        anc = _oracle_ancestors(d.proc, s.procs)
        if any(a.ruid == 0 and a.comm in (b"slurmstepd", b"pbs_mom") for a in anc):
            assert d.action == "keep"


def test_text_report_shows_ages_and_iso_times_json_keeps_ticks():
    """prune-users' text names a process's age ("3h12m") and start time (ISO, UTC), not
    raw clock ticks; the JSON report keeps the ticks and the scan clock to convert them."""
    import io
    from glexec_tools.prune import cli
    now = 1_795_300_000.0                              # 2026-11-21T21:46:40Z
    uptime, hz = 100_000.0, 100
    started = uptime - (3 * 3600 + 12 * 60 + 5)        # seconds after boot
    row = {"pid": 4242, "ppid": 1, "uid": 47401, "euid": 47401, "suid": 47401,
           "account": "pool01", "starttime": int(started * hz), "comm": "sleep", "state": "S",
           "action": "kill", "reason": "orphan", "why": "orphan (ppid 1)"}
    out = io.StringIO()
    cli._text({"dry_run": True, "plan": [row], "would_kill": 1,
               "scan": {"time": now, "uptime": uptime, "hz": hz}}, False, out)
    line = out.getvalue().splitlines()[0]
    assert "age 3h12m (since 2026-11-21T19:14:35Z)" in line, line
    assert str(row["starttime"]) not in line
