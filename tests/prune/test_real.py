"""Real processes, real accounts (root only): gxtprune01..03, uids 47401-47403, group
gxtprune 47400 - created here and removed afterwards, also on failure."""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from tests.support.skips import optional
from tests.support.postgres import postgres  # noqa: F401  (session fixture)

pytestmark = pytest.mark.privileged

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GROUP, GID = "gxtprune", 47400
USERS = {"gxtprune01": 47401, "gxtprune02": 47402, "gxtprune03": 47403}
BASE = "/var/lib/glexec-py-tests"

DAEMON = r"""
import ctypes, os, signal, subprocess, sys
ctypes.CDLL(None).prctl(15, b"slurmstepd", 0, 0, 0)          # PR_SET_NAME
uid, gid = int(sys.argv[1]), int(sys.argv[2])
kids = [subprocess.Popen(["/bin/sleep", "600"], user=uid, group=gid, extra_groups=[]),
        subprocess.Popen(["/bin/sh", "-c", "/bin/sleep 600 & wait"], user=uid, group=gid,
                         extra_groups=[])]
print(" ".join(str(k.pid) for k in kids), flush=True)
signal.pause()
"""


def _uid_pids(uids, live=True):
    out = []
    for n in os.listdir("/proc"):
        if not n.isdigit():
            continue
        try:
            with open(f"/proc/{n}/status", "rb") as f:
                st = f.read()
        except OSError:
            continue
        u = {int(x) for x in st.split(b"\nUid:")[1].split(b"\n")[0].split()}
        state = st.split(b"\nState:")[1].split()[0]
        if u & set(uids) and not (live and state in (b"Z", b"X")):
            out.append(int(n))
    return out


def _kill_uids(uids):
    for _ in range(50):
        pids = _uid_pids(uids, live=False)
        if not pids:
            return
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)


def _remove_accounts():
    assert all(47400 <= u <= 47499 for u in USERS.values())
    _kill_uids(USERS.values())
    for name in USERS:
        subprocess.run(["userdel", name], stderr=subprocess.DEVNULL)
    subprocess.run(["groupdel", GROUP], stderr=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def accounts():
    _remove_accounts()                                   # leftovers of a crashed run
    try:
        subprocess.run(["groupadd", "-g", str(GID), GROUP], check=True)
        for name, uid in USERS.items():
            subprocess.run(["useradd", "-M", "-N", "-u", str(uid), "-g", GROUP, "-s", "/bin/sh",
                            "-d", "/nonexistent", name], check=True)
        yield USERS
    finally:
        _remove_accounts()


@pytest.fixture
def env(accounts):
    os.makedirs(BASE, mode=0o755, exist_ok=True)
    d = tempfile.mkdtemp(prefix="prune-", dir=BASE)
    procs = []
    try:
        yield d, procs
    finally:
        for p in procs:
            try:
                p.kill()
            except ProcessLookupError:
                pass
        _kill_uids(USERS.values())
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        shutil.rmtree(d, ignore_errors=True)


def make_cfg(d, **kw):
    from glexec_tools.prune.plan import default_config
    kw.setdefault("pool_accounts", (".gxtprune",))
    kw.setdefault("min_age", 0)
    kw.setdefault("term_grace", 1)
    kw.setdefault("time_limit", 20)
    kw.setdefault("syslog", False)
    return default_config(state_dir=d, audit_file=d + "/audit.jsonl", **kw)


def as_user(procs, uid, cmd):
    p = subprocess.Popen(cmd, user=uid, group=GID, extra_groups=[], start_new_session=False,
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    procs.append(p)
    return p


def start_daemon(procs, uid):
    p = subprocess.Popen([sys.executable, "-c", DAEMON, str(uid), str(GID)],
                         stdout=subprocess.PIPE, text=True)
    procs.append(p)
    kids = [int(x) for x in p.stdout.readline().split()]
    deadline = time.time() + 5
    while time.time() < deadline:       # wait for the grandchild of "sh -c 'sleep & wait'"
        if len([q for q in _uid_pids([uid]) if q not in kids]) >= 1:
            break
        time.sleep(0.05)
    with open(f"/proc/{p.pid}/comm") as f:
        assert f.read().strip() == "slurmstepd"
    return p, set(_uid_pids([uid]))


def start_strays(procs, uid):
    sh = "/bin/sh"
    as_user(procs, uid, ["/bin/sleep", "600"])                                # plain
    as_user(procs, uid, [sh, "-c", "(/bin/sleep 600 &) ; exit 0"])           # double fork
    as_user(procs, uid, [sh, "-c", "setsid /bin/sleep 600 & exit 0"])        # new session
    as_user(procs, uid, [sh, "-c", "kill -STOP $$; /bin/sleep 600"])         # stops itself
    as_user(procs, uid, [sh, "-c", "trap '' TERM; /bin/sleep 600"])          # ignores TERM
    as_user(procs, uid, [sh, "-c", "i=0; while [ $i -lt 400 ]; do (/bin/sleep 600 &); "
                                   "i=$((i+1)); /bin/sleep 0.01; done"])       # fork loop
    time.sleep(0.5)


def test_daemon_descendants_survive_strays_die(env):
    from glexec_tools.prune.apply import Pruner, read_state
    d, procs = env
    _daemon, legit = start_daemon(procs, 47401)
    assert len(legit) == 3
    start_strays(procs, 47401)
    start_strays(procs, 47402)
    t = time.monotonic()
    pr = Pruner(make_cfg(d, max_kills=5000))
    rep = pr.run()
    elapsed = time.monotonic() - t
    left1 = set(_uid_pids([47401]))
    left2 = _uid_pids([47402])
    assert left1 == legit, (left1, legit, rep.get("survivors"))
    assert left2 == []
    assert pr.exit_code == 1 and not rep["survivors"]
    assert elapsed < 25
    lines = open(d + "/audit.jsonl", "rb").readlines()
    recs = [json.loads(l) for l in lines]
    assert recs and all(r["event"] == "prune_kill" for r in recs)
    # records like every other in the audit file: the back-map reads them as events (a
    # record without host or with a float time would flag its stretch of history damaged)
    from glexec_tools.backmap.plan import Damaged, Ref, parse_record
    assert not any(isinstance(parse_record(l, Ref(1, 0, n)), Damaged) for n, l in enumerate(lines))
    assert all(r["admin"]["uid"] == 0 and r["host"] and r["tool"] == "prune-users" for r in recs)
    assert {r["pid"] for r in recs}.isdisjoint(legit)
    assert all(r["reason"] in ("orphan", "no_job_ancestor", "stray_descendant") for r in recs)
    assert read_state(d, "gxtprune02")["result"] == "no_processes"
    assert read_state(d, "gxtprune01")["result"] == "processes"
    assert read_state(d, "gxtprune03")["result"] == "no_processes"
    print(f"\nkilled {len(rep['killed'])} in {elapsed:.2f} s, {rep['rounds']} rounds")


def test_kill_all_as_pool_uid(env):
    from glexec_tools.prune.apply import Pruner
    d, procs = env
    _daemon, legit = start_daemon(procs, 47401)
    start_strays(procs, 47402)
    caller = as_user(procs, 47401, ["/bin/sleep", "600"])        # another uid's stray
    pr = Pruner(make_cfg(d, kill_all=True, signal="SIGKILL", max_kills=5000))
    rep = pr.run()
    assert _uid_pids([47402]) == []
    assert set(_uid_pids([47401])) == legit                      # 47401 has a job: no kill(-1)
    assert caller.poll() is not None or caller.wait(5) is not None
    vias = {e.get("via") for e in rep["killed"] if e["uid"] == 47402}
    assert "kill(-1) as uid" in vias
    assert pr.exit_code == 1


def test_dry_run_lists_exactly_and_kills_nothing(env):
    from glexec_tools.prune.apply import Pruner
    d, procs = env
    _daemon, legit = start_daemon(procs, 47401)
    s1 = as_user(procs, 47401, ["/bin/sleep", "600"])
    s2 = as_user(procs, 47403, ["/bin/sh", "-c", "(/bin/sleep 600 &); exit 0"])
    s2.wait()
    time.sleep(0.3)
    before = set(_uid_pids(USERS.values()))
    pr = Pruner(make_cfg(d), dry_run=True)
    rep = pr.run()
    would = {x["pid"] for x in rep["plan"] if x["action"] == "kill"}
    assert would == before - legit and s1.pid in would and len(would) == 2
    assert set(_uid_pids(USERS.values())) == before
    assert not os.path.exists(d + "/audit.jsonl") and pr.exit_code == 1
    # the CLI: same list, exit 1; a bad config is refused with 2
    from tests.support.glexec_yaml import with_section
    cfgf = d + "/glexec.yaml"
    with open(cfgf, "w") as f:
        f.write(with_section("prune", "pool_accounts: ['.gxtprune']\nmin_age: 0\n",
                             state_dir=d, audit_file=f"{d}/audit.jsonl"))
    os.chmod(cfgf, 0o644)
    r = subprocess.run([REPO + "/tools/bin/prune-users", "--config", cfgf, "--dry-run", "--json"],
                       capture_output=True, text=True)
    assert r.returncode == 1, r.stderr
    assert {x["pid"] for x in json.loads(r.stdout)["plan"] if x["action"] == "kill"} == would
    with open(cfgf, "w") as f:
        f.write(with_section("prune", "uid_ranges: ['0-60000']\n", state_dir=d,
                             audit_file=f"{d}/a.jsonl"))
    r = subprocess.run([REPO + "/tools/bin/prune-users", "--config", cfgf, "--dry-run"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "uid 0" in r.stderr and r.stderr.count("\n") == 1
    # an old prune.yaml: one line saying where its keys go now
    old = d + "/prune.yaml"
    with open(old, "w") as f:
        f.write(f"pool_accounts: ['.gxtprune']\nstate_dir: {d}\naudit_file: {d}/a.jsonl\n")
    os.chmod(old, 0o644)
    r = subprocess.run([REPO + "/tools/bin/prune-users", "--config", old, "--dry-run"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "'prune:' section of glexec.yaml" in r.stderr
    assert set(_uid_pids(USERS.values())) == before


def _spawn_at_pid(procs, target, uid):
    for _ in range(200):
        with open("/proc/sys/kernel/ns_last_pid", "w") as f:
            f.write(str(target - 1))
        p = as_user(procs, uid, ["/bin/sleep", "600"])
        if p.pid == target:
            return p
        p.kill()
        p.wait()
    pytest.skip(optional("could not get the pid reused (busy machine)"))


def test_pid_reuse_never_hit(env):
    from glexec_tools.prune import plan as core
    from glexec_tools.prune.apply import Pruner
    d, procs = env
    stray = as_user(procs, 47402, ["/bin/sleep", "600"])
    time.sleep(0.2)
    pr = Pruner(make_cfg(d))
    snap, scope, plan = pr.plan()
    dec = plan.by_pid[stray.pid]
    assert dec.action == core.KILL
    old_pfd = os.pidfd_open(stray.pid)
    stray.kill()
    stray.wait()
    newp = _spawn_at_pid(procs, dec.proc.pid, 47402)           # same pid, same uid
    assert pr.signal_verified(dec, snap, scope, signal.SIGKILL, 1) in ("changed", "gone")
    with pytest.raises(ProcessLookupError):
        signal.pidfd_send_signal(old_pfd, signal.SIGKILL)
    os.close(old_pfd)
    time.sleep(0.2)
    assert newp.poll() is None                                  # the new process lives


def test_lease_protected_account_untouched(env):
    from glexec_tools.prune.apply import Pruner
    d, procs = env
    gmd = d + "/gridmapdir"
    os.mkdir(gmd, 0o755)
    for n in USERS:
        open(f"{gmd}/{n}", "w").close()
    os.link(f"{gmd}/gxtprune02", gmd + "/%2fdc%3dorg%2fcn%3dnew")   # a lease just granted
    s = as_user(procs, 47402, ["/bin/sleep", "600"])
    o = as_user(procs, 47403, ["/bin/sleep", "600"])
    pr = Pruner(make_cfg(d, gridmapdir=gmd, lease_fresh=300))
    rep = pr.run()
    assert s.poll() is None and o.wait(5) is not None
    assert rep["accounts"]["gxtprune02"] == "spared"
    assert [x["reason"] for x in rep["plan"] if x["pid"] == s.pid] == ["lease_protected"]


def test_lock_refuses_second_run(env):
    from glexec_tools.prune.apply import PruneError, RunLock
    d, _procs = env
    cfg = make_cfg(d)
    with RunLock(cfg):
        with pytest.raises(PruneError):
            with RunLock(cfg):
                pass


def test_lease_protected_by_the_postgresql_lease_store(env, postgres):
    """mapping.lease_store: postgresql: a fresh lease in the database protects its account
    (no gridmapdir at all); an account free in the database is pruned."""
    from glexec_py.core.leases import LeaseOwner
    from glexec_py.effects.pgleases import PgLeaseStore
    from glexec_tools.prune.apply import Pruner
    d, procs = env
    conninfo = postgres.conninfo(postgres.fresh_db())
    with PgLeaseStore(conninfo, node="n") as s:
        s.add_accounts("gxtprune", list(USERS))
        s.acquire(b"/DC=org/CN=new", "gxtprune", owner=LeaseOwner(("x509", "CN=new,DC=org"), b"/DC=org/CN=new", True))
    f = d + "/leases.conninfo"
    fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, conninfo.encode())
    os.close(fd)
    s = as_user(procs, 47401, ["/bin/sleep", "600"])          # gxtprune01: leased in the database
    o = as_user(procs, 47403, ["/bin/sleep", "600"])
    pr = Pruner(make_cfg(d, lease_db={"conninfo_file": f, "connect_timeout": 2, "timeout_ms": 2000,
                                      "node": "n"}, lease_fresh=300))
    rep = pr.run()
    assert s.poll() is None and o.wait(5) is not None
    assert rep["accounts"]["gxtprune01"] == "spared"
    assert [x["reason"] for x in rep["plan"] if x["pid"] == s.pid] == ["lease_protected"]
