"""End-to-end: ``glexec-job run`` (issue 11) as the real pilot account gxtpilot, with the
installed glexec-job and setuid glexec of the test prefix, for the job owner user1 ->
gxttarget1.  Each test checks what the pilot gets (exit code, JSON status, stdout/stderr,
outputs.tar + manifest) and what is left afterwards: no process of the target, no job
directory, no target proxy, no live record; and that the payload never reads the pilot's
own proxy (X509_USER_PROXY of the pilot, a real proxy owned by gxtpilot 0600)."""
import hashlib
import json
import os
import signal
import tarfile
import time
from pathlib import Path

import pytest

from tests.support import accounts as acc
from tests.support.job_payload import PAYLOAD, tar_gz as _tar
from tests.support.runas import popen_as, run_as


class Pilot:
    def __init__(self, gx, name, owner="user1", state=None):
        self.gx = gx
        a = gx.accounts
        self.tool = str(gx.prefix / "sbin" / "glexec-job")
        self.state = state or gx.dir(f"state-{name}", mode=0o700)
        self.outdir = gx.dir(f"out-{name}", mode=0o700)
        self.inputs = gx.file(f"in-{name}.tar.gz", _tar({"payload.py": PAYLOAD.encode(),
                                                        "data/in.txt": b"input data\n"}), mode=0o600)
        self.user_proxy = gx.proxy(owner, name=f"owner-{name}.pem")
        self.pilot_proxy = gx.proxy("user2", name=f"pilot-own-proxy-{name}.pem")
        self.scratch = gx.out
        self.target = a.target1 if owner == "user1" else a.target2

    def argv(self, mode, *extra, outputs=("result.txt", "res", "leak.txt", "missing.txt")):
        out = [self.tool, "run", "--json", "--state-dir", str(self.state), "--proxy", str(self.user_proxy),
               "--outdir", str(self.outdir), "--input", str(self.inputs), "--env", "JOBNAME=job-" + mode,
               "--env", f"PILOT_PROXY={self.pilot_proxy}", *extra]
        for o in outputs:
            out += ["--output", o]
        return out + ["--", "/usr/bin/python3", "payload.py", mode]

    def env(self):
        return {"X509_USER_PROXY": str(self.pilot_proxy), "HOME": str(self.gx.box)}

    def run(self, mode, *extra, timeout=120, **kw):
        r = run_as("gxtpilot", self.argv(mode, *extra, **kw), env=self.env(), cwd=str(self.gx.box), timeout=timeout)
        status = json.loads(r.stdout.splitlines()[-1]) if r.stdout.strip() else None
        return r, status

    def popen(self, mode, *extra):
        return popen_as("gxtpilot", self.argv(mode, *extra), env=self.env(), cwd=str(self.gx.box))

    def seen(self):
        lines = (self.outdir / "stdout").read_text().splitlines()
        return json.loads([ln for ln in lines if ln.startswith("{") and "uid" in ln][-1])

    def jobs(self):
        p = self.state / "jobs.jsonl"
        return [json.loads(x) for x in p.read_text().splitlines()] if p.exists() else []

    def live(self):
        return sorted((self.state / "live").iterdir()) if (self.state / "live").exists() else []


@pytest.fixture
def pilot(gx):
    gx.config(job={"scratch_root": str(gx.out), "grace": 2, "disk_check_interval": 1, "heartbeat": 1})
    return Pilot(gx, "a")


def _assert_nothing_left(p, status, alone=True):
    assert status["processes_left"] == 0, status
    assert status["wipe"]["gone"] is True, status
    assert not Path(status["job_dir"]).exists()
    if alone:
        assert not list(p.scratch.glob("glexec-job.*"))
    assert acc.live_uid_processes([p.target.uid]) == []
    assert not Path(f"/tmp/x509up_u{p.target.uid}").exists()
    assert p.live() == []


def test_job_inputs_outputs_daemon_and_wipe(pilot):
    p = pilot
    r, s = p.run("daemon")
    assert r.returncode == 0, r
    assert s["kind"] == "ok" and s["exit"] == 0 and s["started"] is True, s
    seen = p.seen()
    t = p.target
    job = s["job_dir"]
    assert seen["uid"] == t.uid and seen["cwd"] == job and seen["input"] == "input data\n"
    env = seen["env"]
    assert env["TMPDIR"] == job + "/.tmp" and env["X509_USER_PROXY"] == job + "/.proxy/x509up"
    assert env["JOBNAME"] == "job-daemon" and env["GLEXEC_JOB_DIR"] == job
    assert not any(k.startswith("GLEXEC_ENV") or k.startswith("GLEXEC_CLIENT") for k in env)
    # the job owner's proxy is there for the payload; the pilot's is never readable
    assert seen["proxy"] == "READ:" + hashlib.sha256(p.user_proxy.read_bytes()).hexdigest()
    assert seen["pilot_proxy"] == "Permission denied"
    assert str(p.pilot_proxy) not in json.dumps({k: v for k, v in env.items() if k != "PILOT_PROXY"})
    # the daemon (setsid + double fork) is gone
    assert not Path(f"/proc/{seen['daemon']}").exists() or seen["daemon"] not in acc.live_uid_processes([t.uid])
    _assert_nothing_left(p, s)
    # outputs: exact honest files, hostile links refused, missing reported, pilot-owned
    tar = p.outdir / "outputs.tar"
    assert tar.stat().st_uid == p.gx.accounts.pilot.uid
    with tarfile.open(tar) as tf:
        files = {m.name: tf.extractfile(m).read() for m in tf.getmembers() if m.isfile()}
        assert all(m.isfile() or m.isdir() for m in tf.getmembers())
    assert files == {"result.txt": b"result of job-daemon\n", "res/sub/r.dat": b"\x00\x01" * 1000}
    man = json.loads((p.outdir / "manifest.json").read_text())
    assert {f["name"]: f["sha256"] for f in man["files"]} == {n: hashlib.sha256(d).hexdigest() for n, d in files.items()}
    assert {x["name"]: x["reason"] for x in man["refused"]} == {
        "leak.txt": "a symlink (not followed)", "res/shadow": "a symlink (not followed)"}
    assert man["missing"] == ["missing.txt"]
    assert p.pilot_proxy.read_bytes() not in tar.read_bytes()
    # the audit record of the job names the glexec calls it made
    (rec,) = [j for j in p.jobs() if j["event"] == "job"]
    assert rec["job"] == s["job"] and rec["kind"] == "ok"
    assert [c["action"] for c in rec["glexec_calls"]][:3] == ["mkjob", "unpack", "exec"]
    assert rec["glexec_calls"][-1]["action"] == "wipe"
    grants = [g for g in p.gx.audit() if g.get("event") == "grant"]
    pids = {g["caller"]["pid"] for g in grants}
    assert {c["glexec_pid"] for c in rec["glexec_calls"]} <= pids


@pytest.mark.parametrize("mode, code", [("exit0", 0), ("exit3", 3), ("exit255", 255), ("sig10", 138), ("sig9", 137)])
def test_exit_status_passes_through(pilot, mode, code):
    r, s = pilot.run(mode, outputs=("result.txt",))
    assert r.returncode == code, r
    assert s["exit"] == code and s["kind"] == ("ok" if code == 0 else "application") and s["limit"] is None, s
    if code > 128:
        assert s["signal"] == code - 128
    _assert_nothing_left(pilot, s)


def test_wall_time_limit_kills_payload_and_stubborn_daemon(pilot):
    t0 = time.monotonic()
    r, s = pilot.run("stubborn", "--wall-time", "3", outputs=("result.txt",))
    took = time.monotonic() - t0
    assert s["kind"] == "limit" and s["limit"] == "wall_time", s
    assert r.returncode == s["exit"] == 128 + signal.SIGTERM, (r, s)   # python dies by the forwarded TERM
    assert took < 3 + 2 * 2 + 15, took
    assert pilot.seen()["daemon"] not in acc.live_uid_processes([pilot.target.uid])
    _assert_nothing_left(pilot, s)
    # outputs made before the stop still come back
    with tarfile.open(pilot.outdir / "outputs.tar") as tf:
        assert tf.extractfile("result.txt").read() == b"result of job-stubborn\n"


def test_over_the_site_limit_is_refused(pilot):
    pilot.gx.config(job={"scratch_root": str(pilot.scratch), "wall_time": 10})
    r, s = pilot.run("exit0", "--wall-time", "11")
    assert r.returncode == 2 and s is None and r.stderr.count(b"\n") == 1 and b"site's limit" in r.stderr, r


def test_glexec_refusal_is_infrastructure(pilot):
    pilot.gx.gridmap([])                          # nobody is mapped
    r, s = pilot.run("exit0")
    assert r.returncode == 75, r                  # refused at the first step (mkjob)
    assert s["kind"] == "infrastructure" and s["started"] is False and "job directory" in s["reason"], s
    assert s["wipe"]["never_made"] is True and pilot.live() == []
    assert not list(pilot.scratch.glob("glexec-job.*"))


def test_hostile_input_is_infrastructure_and_nothing_left(pilot):
    bad = pilot.gx.file("bad.tar.gz", _tar({"../escape": b"x"}), mode=0o600)
    pilot.inputs = bad
    r, s = pilot.run("exit0")
    assert r.returncode == 75 and s["kind"] == "infrastructure" and "input sandbox" in s["reason"], s
    assert not (pilot.scratch / "escape").exists()
    _assert_nothing_left(pilot, s)


def _wait_live(p, timeout=30):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for f in p.live():
            if f.suffix == ".json":
                rec = json.loads(f.read_text())
                if rec.get("target_uid") is not None:
                    return rec
        time.sleep(0.1)
    raise AssertionError("no live job record")


def _wait_stdout(p, text, timeout=30):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if (p.outdir / "stdout").exists() and text in (p.outdir / "stdout").read_text():
            return
        time.sleep(0.05)
    raise AssertionError(f"payload never printed {text!r}")


def test_renew_mid_job_is_seen_whole(pilot):
    p = pilot
    new = p.gx.pkis.pki.proxy(p.gx.pkis.user1, p.gx.box / "renewed.pem")
    os.chown(new, p.gx.accounts.pilot.uid, p.gx.accounts.pilot.gid)
    os.chmod(new, 0o600)
    old_sha = hashlib.sha256(p.user_proxy.read_bytes()).hexdigest()
    new_sha = hashlib.sha256(new.read_bytes()).hexdigest()
    assert old_sha != new_sha
    proc = p.popen("renew")
    try:
        rec = _wait_live(p)
        _wait_stdout(p, '"ready"')
        r = run_as("gxtpilot", [p.tool, "renew", "--json", "--state-dir", str(p.state), "--job", rec["id"],
                                "--proxy", str(new)], env=p.env(), cwd=str(p.gx.box), timeout=60)
        assert r.returncode == 0, r
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    s = json.loads(out.splitlines()[-1])
    assert proc.returncode == 0 and s["kind"] == "ok", (s, err)
    seen = p.seen()
    assert set(seen["proxies"]) <= {old_sha, new_sha} and new_sha in seen["proxies"], seen
    assert [j["event"] for j in p.jobs()] == ["renew", "job"]
    _assert_nothing_left(p, s)


def test_renew_with_another_owners_proxy_is_refused(pilot):
    p = pilot
    proc = p.popen("sleep", "--wall-time", "30")
    try:
        rec = _wait_live(p)
        other = p.gx.proxy("user2", name="other-owner.pem")
        r = run_as("gxtpilot", [p.tool, "renew", "--state-dir", str(p.state), "--job", rec["id"],
                                "--proxy", str(other)], env=p.env(), cwd=str(p.gx.box), timeout=60)
        assert r.returncode == 1 and r.stderr.count(b"\n") == 1, r
    finally:
        os.kill(proc.pid, signal.SIGTERM)          # the batch system ends the slot
        out, _ = proc.communicate(timeout=60)
    s = json.loads(out.splitlines()[-1])
    assert s["kind"] == "limit" and s["limit"] == "signal SIGTERM", s
    _assert_nothing_left(p, s)


def test_wrapper_sigkill_then_recovery_wipes_everything(pilot):
    p = pilot
    proc = p.popen("sleep")
    try:
        rec = _wait_live(p)
        _wait_stdout(p, '"daemon"')
        job_dir = Path(rec["job_dir"])
        assert job_dir.is_dir()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    daemon = p.seen()["daemon"]
    assert daemon in acc.live_uid_processes([p.target.uid])       # left behind by the dead wrapper
    assert job_dir.is_dir() and len(p.live()) == 3
    r = run_as("gxtpilot", [p.tool, "recover", "--json", "--state-dir", str(p.state)], env=p.env(),
               cwd=str(p.gx.box), timeout=60)
    assert r.returncode == 0, r
    (done,) = json.loads(r.stdout)["recovered"]
    assert done["event"] == "recovered" and done["wipe"]["gone"] is True, done
    assert not job_dir.exists() and p.live() == []
    assert acc.live_uid_processes([p.target.uid], grace=5) == []
    assert [j["event"] for j in p.jobs()] == ["recovered"]


def test_next_run_recovers_a_dead_wrappers_job(pilot):
    p = pilot
    proc = p.popen("sleep")
    rec = _wait_live(p)
    _wait_stdout(p, '"daemon"')
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    p.outdir = p.gx.dir("out-b", mode=0o700)
    r, s = p.run("exit0", outputs=())
    assert r.returncode == 0, r
    assert [x["job"] for x in s["recovered"]] == [rec["id"]] and s["recovered"][0]["event"] == "recovered"
    assert not Path(rec["job_dir"]).exists()
    _assert_nothing_left(p, s)


def test_dry_run_prints_the_plan_and_does_nothing(pilot):
    p = pilot
    before = len(p.gx.audit())
    r = run_as("gxtpilot", p.argv("exit0")[:2] + ["--dry-run"] + p.argv("exit0")[2:], env=p.env(),
               cwd=str(p.gx.box))
    assert r.returncode == 0, r
    steps = [s["step"] for s in json.loads(r.stdout)["steps"]]
    assert steps == ["recover", "mkjob", "unpack", "exec", "sweep", "collect", "wipe"]
    assert not list(p.scratch.glob("glexec-job.*")) and not (p.outdir / "stdout").exists()
    assert p.gx.audit()[before:] == []                  # glexec was not called


def test_two_owners_at_once_in_one_pilot(pilot):
    """Job A (user1 -> gxttarget1) runs for a few seconds with a daemon; job B (user2 ->
    gxttarget2) starts meanwhile with the same state directory: B's start-up recovery must
    leave the live job A alone (its wrapper holds the lock), both end with exact outputs and
    nothing of either is left."""
    a = pilot
    b = Pilot(a.gx, "b", owner="user2", state=a.state)
    proc = a.popen("slow")
    try:
        rec_a = _wait_live(a)
        _wait_stdout(a, '"daemon"')
        r, sb = b.run("daemon")
        assert r.returncode == 0 and sb["recovered"] == [], (r, sb)
        assert Path(rec_a["job_dir"]).is_dir() and proc.poll() is None      # A untouched
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    sa = json.loads(out.splitlines()[-1])
    assert proc.returncode == 0 and sa["kind"] == "ok", (sa, err)
    assert a.seen()["uid"] == a.target.uid and b.seen()["uid"] == b.target.uid
    for p, s in ((a, sa), (b, sb)):
        with tarfile.open(p.outdir / "outputs.tar") as tf:
            assert tf.extractfile("result.txt").read() == f"result of job-{'slow' if p is a else 'daemon'}\n".encode()
        _assert_nothing_left(p, s, alone=False)
    assert not list(a.scratch.glob("glexec-job.*"))
    assert acc.live_uid_processes([b.target.uid]) == []


def test_shared_outdir_is_refused(pilot):
    os.chmod(pilot.outdir, 0o770)                 # the pilot's group could swap the outputs
    r, s = pilot.run("exit0")
    assert r.returncode == 75 and s is None and r.stderr.count(b"\n") == 1, r
    assert b"output directory" in r.stderr
    assert not list(pilot.scratch.glob("glexec-job.*")) and pilot.live() == []


@pytest.mark.parametrize("mode, option, value, limit", [
    ("burn", "--cpu-time", "1", "cpu_time"), ("spew", "--max-output-bytes", "100000", "max_output_bytes"),
    ("fill", "--max-disk-bytes", "1000000", "max_disk_bytes")])
def test_limits_stop_the_job(pilot, mode, option, value, limit):
    status_file = pilot.outdir / "status.json"
    r, s = pilot.run(mode, option, value, "--status-file", str(status_file), outputs=("result.txt",))
    assert s["kind"] == "limit" and s["limit"] == limit, s
    assert r.returncode == s["exit"] and s["exit"] in (128 + signal.SIGTERM, 128 + signal.SIGKILL), (r, s)
    if limit == "max_output_bytes":
        out = (pilot.outdir / "stdout").stat().st_size + (pilot.outdir / "stderr").stat().st_size
        assert out == 100000 == s["output_bytes"]
    if limit == "cpu_time":
        assert 1 < s["cpu"] < 10, s
    if limit == "max_disk_bytes":
        assert s["disk_bytes"] > 1000000
    on_disk = json.loads(status_file.read_text())
    assert on_disk["phase"] == "done" and on_disk["kind"] == "limit" and on_disk["heartbeat"] > 0
    _assert_nothing_left(pilot, s)
