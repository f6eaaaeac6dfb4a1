"""The whole life of one pool account on a real Slurm (issue 5, section 5 "Together").

Everything runs against the INSTALLED setuid glexec and the INSTALLED site tools
(``PREFIX/sbin/prune-users``, ``glexec-sweep``, ``glexec-leases``, ``glexec-backmap``), all
reading the one glexec.yaml written here (the tools' sections beside the engine's); real accounts (gxt*, uids/gids 47800-47899 only);
a real private Slurm (tests/support/slurm.py).

1. A pool of ONE account (gxtlcpool01), a gridmapfile mapping two DNs (A and B) to
   ``.gxtlcpool``; two user certs and grid-proxy-init proxies owned by the pilot.
2. Job 1 (sbatch as the pilot): glexec with A's proxy runs a payload that leaves a daemon
   (``setsid -f``) and files in a swept scratch dir (1777), backdated with ``touch -d``.
   The sweep rule ages by **mtime only** (``age_by: m``) for this test, because ctime cannot
   be backdated and the default ``amc`` would keep files that are seconds old.
3. While A holds the lease, B is refused: 203 ``pool_exhausted``.
4. The site's cron cycle, as docs/man/glexec-leases.8 describes it, repeated until the lease
   is free: ``glexec-leases expire --older-than 0 --grace 0 --settle 0 --yes``, then
   ``prune-users``, then ``glexec-sweep``.  (Drain first: glexec-sweep never touches an
   account with an active lease, and a confirmation only counts if made after the drain.)
   With proctrack/cgroup Slurm kills the daemon when job 1 ends, so prune-users finds nothing;
   with proctrack/linuxproc the daemon escapes and prune-users must kill it.  Either way prune
   records ``no_processes`` and glexec-sweep ``no_files`` (all files gone).
5. Job 2: B is granted, and gets the same pool account.
6. ``glexec-backmap --uid <uid> --at T`` answers A inside job 1's [grant, end], B inside
   job 2's, and nobody ("none") in between, with the exact times of the audit records
   (boundaries inclusive, one microsecond outside = nobody).

Timings of each phase are printed (``-s`` shows them) and kept in ``TIMINGS``.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from glexec_py.core.leases import lease_name
from tests.support import accounts as acc
from tests.support import install as inst
from tests.support.pki import TestPKI
from tests.support.runas import read_audit, run_as

ID_MIN, ID_MAX = 47800, 47899
PILOT, PILOT_UID = "gxtlcpilot", 47800
POOLGRP, POOLGRP_GID = "gxtlcpool", 47850
POOL_ACCOUNT, POOL_UID = "gxtlcpool01", 47801
DN_A = "/DC=test/DC=glexec-py/CN=Lifecycle User A"
DN_B = "/DC=test/DC=glexec-py/CN=Lifecycle User B"
TOOL_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}
TIMINGS: dict[str, float] = {}

for _i in (PILOT_UID, POOLGRP_GID, POOL_UID):
    assert ID_MIN <= _i <= ID_MAX


def _y(v) -> str:
    """A YAML scalar (JSON strings are valid double-quoted YAML scalars)."""
    return json.dumps(str(v)) if isinstance(v, (str, Path)) else json.dumps(v)


def _write_root(path: Path, text: str, mode: int = 0o644) -> Path:
    path.write_text(text)
    os.chown(path, 0, 0)
    os.chmod(path, mode)
    return path


def _chown_to(path: Path, uid: int, gid: int, mode: int) -> Path:
    os.chown(path, uid, gid)
    os.chmod(path, mode)
    return path


class World:
    """Paths and helpers of one lifecycle run."""

    def __init__(self, run: Path, prefix: Path):
        self.run = run
        self.prefix = prefix
        self.glexec = inst.glexec_path(prefix)
        self.bin = prefix / "sbin"
        self.etc = prefix / "etc" / "glexec-py"
        self.state_dir = prefix / "var" / "lib" / "glexec-py"
        self.gridmapdir = self.state_dir / "gridmapdir"
        self.audit_file = inst.audit_path(prefix)
        self.scratch = run / "scratch"      # swept root (root 1777)
        self.out = run / "out"              # payload markers (root 1777, not swept)
        self.pilot_dir = run / "pilot"      # the pilot's proxies and job dirs
        self.lease = self.gridmapdir / lease_name(DN_A.encode()).decode()
        self.lease_b = self.gridmapdir / lease_name(DN_B.encode()).decode()
        self.proxy_a = self.proxy_b = None
        self.payload = run / "payload.sh"

    def tool(self, name, *args, timeout=60):
        """An installed tool with this prefix's glexec.yaml (after a leases subcommand)."""
        t0 = time.monotonic()
        args = [str(a) for a in args]
        at = 1 if name == "glexec-leases" else 0
        args[at:at] = ["--config", str(self.etc / "glexec.yaml")]
        p = subprocess.run([str(self.bin / name), *args], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, env=TOOL_ENV, timeout=timeout)
        p.seconds = time.monotonic() - t0
        p.cmd = f"{self.bin / name} {' '.join(map(str, args))}"
        return p

    def audit(self):
        return read_audit(self.audit_file) if self.audit_file.is_file() else []


def _show(p) -> str:
    return (f"command: {p.cmd}\nexit: {p.returncode}\nstdout: {p.stdout[-4000:]}\n"
            f"stderr: {p.stderr[-2000:]}")


def _json(p):
    try:
        return json.loads(p.stdout)
    except ValueError:
        pytest.fail(f"not JSON output\n{_show(p)}")


def _json_lines(p):
    out = []
    for line in p.stdout.splitlines():
        line = line.strip()
        if line:
            try:
                out.append(json.loads(line))
            except ValueError:
                pytest.fail(f"not a JSON line: {line!r}\n{_show(p)}")
    return out


PAYLOAD = r"""#!/bin/sh
# $1 = A or B.  Runs as the pool account, started by glexec inside a Slurm job.
tag=$1
OUT=@OUT@
SCRATCH=@SCRATCH@
id -u > "$OUT/$tag.uid"
id -un > "$OUT/$tag.user"
if [ "$tag" = A ]; then
    mkdir "$SCRATCH/work-A"
    echo result > "$SCRATCH/work-A/result.dat"
    echo log > "$SCRATCH/A-top.log"
    ln -s /etc/hostname "$SCRATCH/work-A/link"
    # old mtimes (the sweep rule of this test ages by mtime: ctime cannot be backdated)
    touch -h -d '2 hours ago' "$SCRATCH/work-A/result.dat" "$SCRATCH/work-A/link" "$SCRATCH/A-top.log"
    touch -d '2 hours ago' "$SCRATCH/work-A"
    # the daemon: own session, reparented away from the payload
    setsid -f /bin/sh -c 'echo $$ > '"$OUT"'/A.daemon; exec /bin/sleep 1000' </dev/null >/dev/null 2>&1
    i=0
    while [ ! -s "$OUT/A.daemon" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done
fi
echo done > "$OUT/$tag.done"
"""

JOB = """#!/bin/sh
GLEXEC_CLIENT_CERT={proxy}
export GLEXEC_CLIENT_CERT
{glexec} /bin/sh {payload} {tag}
echo "glexec_rc=$?"
"""


def _remove_accounts():
    acc.kill_uid_processes(range(ID_MIN, ID_MAX + 1))
    for name in (POOL_ACCOUNT, PILOT):
        acc.remove_user(name)
    for name in (POOLGRP, PILOT):
        acc.remove_group(name)
    acc.kill_uid_processes(range(ID_MIN, ID_MAX + 1))


@pytest.fixture(scope="module")
def world(life_lock):
    t0 = time.monotonic()
    acc.cleanup_leftovers(ID_MIN, ID_MAX)
    run = prefix = None
    try:
        acc.create_group(PILOT, PILOT_UID)
        acc.create_group(POOLGRP, POOLGRP_GID)
        acc.create_user(PILOT, PILOT_UID, PILOT)
        acc.create_user(POOL_ACCOUNT, POOL_UID, POOLGRP)

        run = inst.make_run_dir("lifecycle")
        pki_dir = run / "pki"
        pki_dir.mkdir(mode=0o700)
        pki = TestPKI(pki_dir / "ca")
        t1 = time.monotonic()
        prefix = inst.install_prefix()
        TIMINGS["make install"] = time.monotonic() - t1
        w = World(run, prefix)
        inst.install_trust_dir(prefix, pki)
        inst.write_gridmap(prefix, [(DN_A, "." + POOLGRP), (DN_B, "." + POOLGRP)])

        # pilot-owned proxies (grid-proxy-init)
        w.pilot_dir.mkdir()
        _chown_to(w.pilot_dir, PILOT_UID, PILOT_UID, 0o755)
        for tag, dn in (("a", DN_A), ("b", DN_B)):
            p = pki.proxy(pki.user(dn), w.pilot_dir / f"proxy-{tag}.pem")
            _chown_to(p, PILOT_UID, PILOT_UID, 0o600)
            setattr(w, f"proxy_{tag}", p)

        # the pool: one entry
        w.gridmapdir.mkdir(mode=0o755)
        (w.gridmapdir / POOL_ACCOUNT).touch(mode=0o644)
        inst.write_config(prefix, callers={"users": [PILOT], "groups": []},
                          # one pilot, a pool of one: step 3 is about pool_exhausted,
                          # not the per-caller lease limit (which would answer first)
                          mapping={"gridmapdir": str(w.gridmapdir), "max_leases_per_caller": 0},
                          target_proxy={"create": False})

        for d in (w.scratch, w.out):
            d.mkdir()
            _chown_to(d, 0, 0, 0o1777)
        _write_root(w.payload, PAYLOAD.replace("@OUT@", str(w.out))
                    .replace("@SCRATCH@", str(w.scratch)), 0o755)

        # the tools' sections of the one glexec.yaml (its audit file, state dir, gridmapdir
        # and min_uid are the engine's, as on a site)
        text = inst.config_path(prefix).read_text() + "\n".join([
            "prune:",
            f"  pool_accounts: [{_y('.' + POOLGRP)}]",
            "  min_age: 0",
            "  term_grace: 1",
            "  time_limit: 20",
            # 0: a leased account is not protected by freshness alone (a payload inside a job
            # is still kept by the job-cgroup / slurmstepd rules); needed when the daemon
            # escaped the job (proctrack/linuxproc) and expire cannot drain a busy account.
            "  lease_fresh: 0",
            "sweep:",
            f"  pool: [{_y(POOL_ACCOUNT)}]",
            "  sweep_draining: true",
            "  workers: 1",
            "  roots:",
            f"    - path: {_y(w.scratch)}",
            "      age: 1h",
            "      age_by: m          # mtime only: ctime cannot be backdated with touch",
            "      dir_age_by: m",
            "      types: [file, symlink, dir]",
        ]) + "\n"
        inst.write_config_text(prefix, text)
        TIMINGS["setup"] = time.monotonic() - t0
        yield w
    finally:
        try:
            _remove_accounts()
        finally:
            if prefix is not None:
                inst.remove_prefix(prefix)
            if run is not None:
                inst._safe_rmtree(run)


# --- helpers ------------------------------------------------------------------------------------

def _submit(slurm, w: World, tag: str, proxy: Path):
    jobdir = w.pilot_dir / f"job-{tag}"
    jobdir.mkdir()
    _chown_to(jobdir, PILOT_UID, PILOT_UID, 0o755)
    script = JOB.format(proxy=proxy, glexec=w.glexec, payload=w.payload, tag=tag)
    return slurm.submit(PILOT, script, cwd=jobdir), jobdir


def _wait_job(slurm, jobid, jobdir, timeout=40):
    st = slurm.wait_state(jobid, {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL",
                                  "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", "PREEMPTED"},
                          timeout=timeout)
    outs = list(Path(jobdir).glob("slurm-*.out"))
    text = outs[0].read_text(errors="replace") if outs else "(no job output)"
    return st, text


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def _uid_of(pid: int):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Uid:"):
                    return int(line.split()[1])
    except OSError:
        return None


def _procs_incl_zombies(uid):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            st = open(f"/proc/{d}/status").read()
        except OSError:
            continue
        for line in st.splitlines():
            if line.startswith("Uid:") and uid in {int(x) for x in line.split()[1:]}:
                info = {l.split(":")[0]: l.split(":", 1)[1].strip() for l in st.splitlines()
                        if l.split(":")[0] in ("Name", "State", "PPid", "Uid")}
                out.append((d, info))
    return out


def _pids_of_uid(uid: int):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit() and _uid_of(int(d)) == uid and _alive(int(d)):
            out.append(int(d))
    return out


def _t(s: str) -> _dt.datetime:
    """An audit time ('2026-...T..:..:..[.ffffff]Z') as an aware datetime."""
    s = s.rstrip("Z")
    fmt = "%Y-%m-%dT%H:%M:%S.%f" if "." in s else "%Y-%m-%dT%H:%M:%S"
    return _dt.datetime.strptime(s, fmt).replace(tzinfo=_dt.timezone.utc)


def _iso(t: _dt.datetime) -> str:
    return t.astimezone(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _records(w, **match):
    return [r for r in w.audit() if all(r.get(k) == v for k, v in match.items())]


def _phase(name, t0):
    TIMINGS[name] = time.monotonic() - t0
    sys.stderr.write(f"[lifecycle] {name}: {TIMINGS[name]:.2f} s\n")


# --- the test -----------------------------------------------------------------------------------

def test_pool_account_whole_life(slurm, world):
    w = world
    t_all = time.monotonic()
    findings: list[str] = []          # documented behaviour not met: pytest.fail at the end

    # ---- 2. job 1: A is granted the only pool account; the payload leaves a daemon + files
    t0 = time.monotonic()
    job1, jobdir1 = _submit(slurm, w, "A", w.proxy_a)
    st1, out1 = _wait_job(slurm, job1, jobdir1)
    _phase("job 1 (A) submit..end", t0)
    assert st1 == "COMPLETED", f"job 1 {st1}:\n{out1}\n{slurm.log_tail()}"
    assert "glexec_rc=0" in out1, out1
    assert (w.out / "A.uid").read_text().strip() == str(POOL_UID), out1
    assert (w.out / "A.user").read_text().strip() == POOL_ACCOUNT
    grants_a = _records(w, event="grant")
    assert len(grants_a) == 1, grants_a
    grant_a = grants_a[0]
    ends_a = _records(w, event="end")
    assert len(ends_a) == 1, ends_a
    end_a = ends_a[0]
    assert os.stat(w.lease).st_nlink == 2 and \
        os.stat(w.lease).st_ino == os.stat(w.gridmapdir / POOL_ACCOUNT).st_ino
    daemon = int((w.out / "A.daemon").read_text().strip())
    files_a = [w.scratch / "work-A" / "result.dat", w.scratch / "work-A" / "link",
               w.scratch / "A-top.log", w.scratch / "work-A"]
    for f in files_a:
        assert os.lstat(f).st_uid == POOL_UID, f

    # did the daemon escape the job?  proctrack/cgroup: Slurm kills the whole job cgroup.
    deadline = time.monotonic() + slurm.kill_wait + 10
    while _alive(daemon) and slurm.proctrack == "cgroup" and time.monotonic() < deadline:
        time.sleep(0.1)
    escaped = _alive(daemon) and _uid_of(daemon) == POOL_UID
    sys.stderr.write(f"[lifecycle] proctrack/{slurm.proctrack}: daemon pid {daemon} "
                     f"{'escaped the job' if escaped else 'was killed with the job'}\n")
    if slurm.proctrack == "cgroup":
        assert not escaped, f"proctrack/cgroup: the daemon {daemon} outlived job 1"
    else:
        assert escaped, f"proctrack/linuxproc: the daemon {daemon} was expected to escape"

    # ---- 3. B is refused while A holds the lease
    t0 = time.monotonic()
    before = len(w.audit())
    r = run_as(PILOT, [str(w.glexec), "/bin/true"], env={"GLEXEC_CLIENT_CERT": str(w.proxy_b)},
               cwd=str(w.pilot_dir), timeout=30, executable=str(w.glexec))
    recs = w.audit()[before:]
    _phase("B refused", t0)
    assert r.returncode == 203, (r.returncode, r.stderr, recs)
    assert len(recs) == 1 and recs[0]["event"] == "refuse", recs
    assert recs[0].get("reason") == "pool_exhausted", recs
    assert not w.lease_b.exists()

    # ---- 4. the cron cycle until the account is free: expire, prune-users, glexec-sweep
    t0 = time.monotonic()
    rounds = []
    released = None
    prune_recs, sweep_recs = [], []
    MAX_ROUNDS, PACE = 8, 0.5        # a cron cycle, compressed: rounds >= PACE s apart
    t_round = 0.0
    for n in range(1, MAX_ROUNDS + 1):
        time.sleep(max(0.0, t_round + PACE - time.monotonic()))
        t_round = time.monotonic()
        procs_before = _procs_incl_zombies(POOL_UID)
        ex = w.tool("glexec-leases", "expire", "--older-than", "0", "--grace", "0",
                    "--settle", "0", "--yes", "--json")
        exj = _json(ex)
        assert ex.returncode in (0, 1), _show(ex)
        acts = {(p["account"], p["action"]) for p in exj["plan"]}
        rounds.append({"round": n, "expire": [(p["action"], p["why"]) for p in exj["plan"]],
                       "done": [d["done"] for d in exj["done"]], "left": exj["left"],
                       "t_expire": round(ex.seconds, 2)})
        if any(d["done"] == "released" and d["account"] == POOL_ACCOUNT for d in exj["done"]):
            released = exj
            break
        # a 'wait' whose only reason is a record judged older than the drain, although the
        # record was written after the drain, contradicts docs/man/glexec-leases.8
        for p in exj["plan"]:
            c = p.get("confirmation") or {}
            if p["action"] == "wait" and "record older than drain" in c.get("why", "") \
                    and sweep_recs and prune_recs:
                d_at = c.get("drained_at")
                last_sweep = sweep_recs[-1]
                sw_t = _t(last_sweep["time"]).timestamp()
                if d_at is not None and sw_t >= d_at and prune_recs[-1]["time"] >= d_at:
                    findings.append(
                        f"round {n}: `{ex.cmd}` answered wait ({c['why']}) although "
                        f"glexec-sweep's run was recorded at {last_sweep['time']} "
                        f"({sw_t:.6f}) and prune-users' at {prune_recs[-1]['time']:.6f}, "
                        f"both after the drain at {d_at:.6f}; evidence: "
                        f"{json.dumps({k: c.get(k) for k in ('prune', 'sweep')})}")
        if (POOL_ACCOUNT, "skip") in acts:
            # glexec-leases counts every /proc entry of the uid, zombies too: the daemon
            # killed with job 1 may still be an unreaped zombie of pid 1 at this moment
            assert procs_before or escaped, \
                f"expire skipped the account although no process of it runs: {exj['plan']}"
            rounds[-1]["skip_because"] = procs_before

        pr = w.tool("prune-users", "--json")
        prj = _json(pr)
        assert pr.returncode in (0, 1), _show(pr)
        rounds[-1].update(prune_exit=pr.returncode, t_prune=round(pr.seconds, 2),
                          prune_killed=[(k["pid"], k["uid"], k["why"]) for k in prj["killed"]])
        rec = json.loads((w.state_dir / "prune" / f"{POOL_ACCOUNT}.json").read_text())
        prune_recs.append(rec)
        rounds[-1]["prune_result"] = rec["result"]

        sw = w.tool("glexec-sweep", "--json")
        swj = _json_lines(sw)
        assert sw.returncode in (0, 1), _show(sw)
        summ = swj[-1] if swj else {}
        rounds[-1].update(sweep_exit=sw.returncode, t_sweep=round(sw.seconds, 2),
                          sweep_spared=summ.get("spared"))
        swept = [a for a in summ.get("swept", []) if a.get("account") == POOL_ACCOUNT]
        if not swept:      # spared (active lease or processes): no state record written
            continue
        srec = json.loads((w.state_dir / "sweep" / f"{POOL_ACCOUNT}.json").read_text())
        audit_sw = _records(w, event="sweep", account=POOL_ACCOUNT)
        assert audit_sw, "glexec-sweep swept the account but wrote no audit record"
        sweep_recs.append(audit_sw[-1])
        rounds[-1].update(sweep_state=srec["state"], sweep_why=srec["why"],
                          sweep_removed=srec["removed"])
    _phase("prune/sweep/expire cycle", t0)
    sys.stderr.write("[lifecycle] rounds:\n" + "\n".join(
        "  " + json.dumps(r, default=str) for r in rounds) + "\n")
    if released is None:
        pytest.fail(f"glexec-leases expire did not release the lease after {MAX_ROUNDS} rounds of "
                    "expire/prune-users/glexec-sweep:\n" + json.dumps(rounds, indent=1,
                                                                       default=str))

    # what prune-users did and recorded
    all_killed = [k for r_ in rounds for k in r_.get("prune_killed", [])]
    if escaped:
        assert any(pid == daemon for pid, _u, _w in all_killed), all_killed
        kills = _records(w, event="prune_kill")
        assert any(k["pid"] == daemon and k["uid"] == POOL_UID for k in kills), kills
    else:
        assert not [k for k in all_killed if k[1] == POOL_UID], all_killed
        assert not _records(w, event="prune_kill")
    assert not _alive(daemon) or _uid_of(daemon) != POOL_UID
    assert _pids_of_uid(POOL_UID) == []
    assert prune_recs[-1]["result"] == "no_processes", prune_recs[-1]
    assert prune_recs[-1]["account"] == POOL_ACCOUNT and prune_recs[-1]["uid"] == POOL_UID

    # what glexec-sweep did and recorded
    for f in files_a:
        assert not os.path.lexists(f), f"{f} survived glexec-sweep"
    assert os.path.exists("/etc/hostname")            # the symlink's target is untouched
    srec = json.loads((w.state_dir / "sweep" / f"{POOL_ACCOUNT}.json").read_text())
    assert srec["state"] == "no_files" and srec["uid"] == POOL_UID, srec
    removed = sum(r_.get("sweep_removed", 0) for r_ in rounds)
    assert removed == 4, rounds              # 2 files + 1 symlink + 1 dir
    sweep_audit = _records(w, event="sweep", account=POOL_ACCOUNT)
    assert sweep_audit and sweep_audit[-1]["state"] == "no_files", sweep_audit

    # what glexec-leases did: drain, then release, each on record; the account is free
    admin = [(r_["action"], r_.get("account")) for r_ in _records(w, event="lease_admin")]
    assert admin == [("expire_drain", POOL_ACCOUNT), ("expire_release", POOL_ACCOUNT)], admin
    rel = [d for d in released["done"] if d["done"] == "released"][0]
    assert rel["confirmation"]["ok"] is True, rel
    drained_at = rel["confirmation"]["drained_at"]
    assert prune_recs[-1]["time"] >= drained_at
    assert not os.path.lexists(w.lease)
    assert os.stat(w.gridmapdir / POOL_ACCOUNT).st_nlink == 1
    assert not (w.gridmapdir / ".glexec-py" / POOL_ACCOUNT).exists()

    # ---- 5. job 2: B is granted the same account
    t0 = time.monotonic()
    job2, jobdir2 = _submit(slurm, w, "B", w.proxy_b)
    st2, out2 = _wait_job(slurm, job2, jobdir2)
    _phase("job 2 (B) submit..end", t0)
    assert st2 == "COMPLETED", f"job 2 {st2}:\n{out2}"
    assert "glexec_rc=0" in out2, out2
    assert (w.out / "B.uid").read_text().strip() == str(POOL_UID)
    assert (w.out / "B.user").read_text().strip() == POOL_ACCOUNT
    grants = _records(w, event="grant")
    ends = _records(w, event="end")
    assert len(grants) == 2 and len(ends) == 2, (grants, ends)
    grant_b, end_b = grants[1], ends[1]
    assert os.stat(w.lease_b).st_nlink == 2
    assert os.stat(w.lease_b).st_ino == os.stat(w.gridmapdir / POOL_ACCOUNT).st_ino

    # ---- 6. glexec-backmap with the exact times of the audit records
    t0 = time.monotonic()
    sA, eA, sB, eB = (_t(grant_a["time"]), _t(end_a["time"]), _t(grant_b["time"]),
                      _t(end_b["time"]))
    assert sA <= eA < sB <= eB
    us = _dt.timedelta(microseconds=1)
    # B's lease, still in the gridmapdir, is a second source: the engine made it (under the
    # lease lock) a moment before it wrote the grant record, so "1 us before job 2 grant"
    # may already be B's by the lease alone -- never A's, never by an audit record.
    q = w.tool("glexec-backmap", "--dn", DN_B, "--json")
    lease_b = [m for m in _json(q).get("matches", []) if m["kind"] == "lease"]
    assert len(lease_b) == 1 and lease_b[0]["account"] == POOL_ACCOUNT, _show(q)
    lease_b_start = _t(lease_b[0]["start"])
    assert eA < lease_b_start <= sB and _t(lease_b[0]["end"]) >= eB, (lease_b, sA, eA, sB, eB)
    before_b = ("known", DN_B) if lease_b_start <= sB - us else ("none", None)
    queries = [
        ("inside job 1", sA + (eA - sA) / 2, "known", DN_A),
        ("job 1 grant instant (inclusive)", sA, "known", DN_A),
        ("job 1 end instant (inclusive)", eA, "known", DN_A),
        ("1 us after job 1 end", eA + us, "none", None),
        ("between the holders", eA + (sB - eA) / 2, "none", None),
        ("1 us before job 2 grant", sB - us, *before_b),
        ("job 2 grant instant (inclusive)", sB, "known", DN_B),
        ("inside job 2", sB + (eB - sB) / 2, "known", DN_B),
        ("job 2 end instant (inclusive)", eB, "known", DN_B),
    ]
    answers = []
    for what, at, want, dn in queries:
        q = w.tool("glexec-backmap", "--uid", POOL_UID, "--at", _iso(at), "--json")
        j = _json(q)
        got_dns = sorted({m.get("dn") for m in j.get("matches", [])})
        answers.append((what, _iso(at), j.get("status"), got_dns, q.returncode,
                        round(q.seconds, 3)))
        if j.get("status") != want or (dn is not None and got_dns != [dn]) \
                or (dn is None and got_dns) or q.returncode != (0 if want == "known" else 1):
            pytest.fail(f"glexec-backmap at {what} ({_iso(at)}): want {want} {dn}, got "
                        f"{j.get('status')} {got_dns}: {j.get('why')}\n{_show(q)}")
        audit = [m for m in j.get("matches", []) if m["kind"] == "audit"]
        if at < sB and at >= lease_b_start:
            assert not audit and {m["kind"] for m in j["matches"]} == {"lease"}, j
        elif dn is not None:
            assert len(audit) == 1, j
            m = audit[0]
            assert m["account"] == POOL_ACCOUNT and m["uid"] == POOL_UID, m
            assert m["caller"]["uid"] == PILOT_UID and m["caller"]["user"] == PILOT, m
            assert m["end_known"] is True and m["certain"] is True, m
            assert m["records"], m
    _phase("backmap queries", t0)
    sys.stderr.write("[lifecycle] backmap:\n" + "\n".join(f"  {a}" for a in answers) + "\n")

    # reverse look-up: each DN held the account for exactly its job's interval
    for dn, s, e in ((DN_A, sA, eA), (DN_B, sB, eB)):
        q = w.tool("glexec-backmap", "--dn", dn, "--json")
        j = _json(q)
        spans = [(m["account"], m["start"], m["end"]) for m in j.get("matches", []) if m["kind"] == "audit"]
        assert spans == [(POOL_ACCOUNT, _iso(s), _iso(e))], (spans, _show(q))
        leases = [m for m in j["matches"] if m["kind"] == "lease"]
        assert len(leases) == (1 if dn == DN_B else 0), _show(q)   # A's lease went before any scan

    TIMINGS["test body"] = time.monotonic() - t_all
    sys.stderr.write("[lifecycle] timings: " + ", ".join(f"{k} {v:.1f} s"
                                                         for k, v in TIMINGS.items()) + "\n")
    if findings:
        pytest.fail("glexec-leases expire did not act as docs/man/glexec-leases.8 says "
                    "(\"each made at least --grace seconds after the drain\", --grace 0): "
                    "the lease was released only in round "
                    f"{len(rounds)}.\n" + "\n".join(findings))
