"""End-to-end (issue 12): the plan is what is audited and what is executed.  The grant
record's ``plan`` (core.plan.audit_view) is compared with what the payload process
observes of itself -- ids, groups, NoNewPrivs and Seccomp, umask, rlimits, cwd, its
executable, argv and environment names, its parent-death signal, lingering or not -- and
its sha256 with a plan rebuilt from those observations and encoded again.  A target proxy
that the commit sent elsewhere changes the plan after the grant: a ``plan`` record, written
before the payload runs, carries the plan that ran."""
import fcntl
import hashlib
import os
import time

import pytest

from glexec_py.core import plan as core_plan
from glexec_py.effects.payload import FORWARDED
from tests.privileged import payloads as P
from tests.privileged.test_e2e_target_proxy_planted import planted  # noqa: F401 (cleans /tmp/x509up_u*)
from tests.support.runas import run_as

PY = os.path.realpath("/usr/bin/python3")   # /proc/self/exe names the real file
SECRET = "gxt-secret-bearer-value-0b5e"


def observed_view(d, caller_uid):
    """The plan's audit view as the payload ``d`` (payloads.DUMP) saw it from the inside;
    and the plan rebuilt from it (with the env's values, which the view leaves out)."""
    s = d["status"]
    uids, gids = {int(u) for u in s["Uid"].split()}, {int(g) for g in s["Gid"].split()}
    assert len(uids) == 1 and len(gids) == 1, s      # real = effective = saved = fs
    linger = d["pid"] != d["sid"]   # in place, the payload is glexec, a session leader here
    view = {"path": d["exe"], "argv": d["cmdline"], "env": [e.partition("=")[0] for e in d["environ"]],
            "uid": uids.pop(), "gid": gids.pop(), "groups": sorted(d["groups"]), "cwd": d["cwd"],
            "umask": int(s["Umask"], 8),
            "rlimits": {str(r): v for r, v in enumerate(d["limits"])},
            "switch_identity": True, "no_new_privs": s["NoNewPrivs"] == "1", "tty_guard": s["Seccomp"] == "2",
            "linger": linger, "pdeathsig": d["pdeathsig"],
            "forward_signals": sorted(int(x) for x in FORWARDED) if linger else [], "caller_ruid": caller_uid}
    b = lambda v: v.encode("latin-1")
    plan = core_plan.Plan(path=b(view["path"]), argv=map(b, view["argv"]), env=map(b, d["environ"]),
                          uid=view["uid"], gid=view["gid"], groups=view["groups"], cwd=b(view["cwd"]),
                          umask=view["umask"], rlimits={int(r): v for r, v in view["rlimits"].items()},
                          **{k: view[k] for k in ("switch_identity", "no_new_privs", "tty_guard", "linger",
                                                   "pdeathsig", "forward_signals", "caller_ruid")})
    return view, plan


def assert_ran_as_audited(view, d, caller_uid):
    seen, rebuilt = observed_view(d, caller_uid)
    recorded = dict(view)
    digest = recorded.pop("sha256")
    # all 16 limits: the caller's, as the executor can give them (core.plan.within)
    assert recorded == seen, {k: (recorded.get(k), v) for k, v in seen.items() if recorded.get(k) != v}
    assert digest == hashlib.sha256(core_plan.encode(rebuilt)).hexdigest()


@pytest.mark.parametrize("linger", [True, False])
def test_the_grant_records_plan_is_what_the_payload_got(gx, accounts, linger):
    gx.config(payload={"linger": linger})
    r = gx.run([PY, "-c", P.DUMP], env={"GLEXEC_GXT_SECRET": SECRET})
    gx.assert_granted(r, linger=linger)
    d = P.load_dump(r.stdout)
    assert (d["ppid"] == r.pid) if linger else (d["pid"] == r.pid)
    assert d["resuid"][0] == accounts.target1.uid          # the identity switch happened
    grant = r.grants[0]
    view = grant["plan"]
    assert_ran_as_audited(view, d, grant["caller"]["uid"])
    assert view["tty_guard"] and view["pdeathsig"] == (9 if linger else 0)
    assert "GLEXEC_GXT_SECRET" in view["env"]
    # env values are never logged, anywhere in the file
    assert SECRET.encode() not in gx.audit_file.read_bytes()
    assert not [x for x in r.records if x["event"] == "plan"]


def test_caller_limits_umask_and_no_new_privs_are_audited_as_run(gx, accounts):
    gx.config(payload={"no_new_privs": True})
    proxy = gx.proxy("user1")
    before = len(gx.audit())
    r = run_as("gxtpilot", ["/usr/bin/prlimit", "--nofile=256:512", "--core=0:0", "--",
                            "/bin/sh", "-c", 'umask 027; exec "$0" "$@"', gx.glexec, PY, "-c", P.DUMP],
               env={"GLEXEC_CLIENT_CERT": str(proxy)}, cwd=str(gx.box))
    assert r.returncode == 0, r
    grant = [x for x in gx.audit()[before:] if x["event"] == "grant"][0]
    d = P.load_dump(r.stdout)
    assert grant["plan"]["umask"] == 0o027 and grant["plan"]["rlimits"]["7"] == [256, 512]
    assert grant["plan"]["no_new_privs"] is True
    assert_ran_as_audited(grant["plan"], d, grant["caller"]["uid"])


def test_a_proxy_copy_only_call_has_no_plan(gx):
    r = gx.run([])
    assert r.returncode == 0, r
    assert len(r.grants) == 1 and "plan" not in r.grants[0], r


def _wait_blocked_on(path, timeout=20):
    """Until some process waits for a lock on ``path`` (a ``->`` line in /proc/locks)."""
    ino = os.stat(path).st_ino
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open("/proc/locks") as f:
            if any(line.split()[1] == "->" and line.split()[6].endswith(f":{ino}") for line in f):
                return
        time.sleep(0.02)
    raise AssertionError("glexec never waited for the audit file's lock")


def test_a_proxy_moved_at_commit_is_on_record_before_the_payload_runs(gx, accounts, planted):
    """A file planted at the default target-proxy name after staging, before the commit
    (here: while glexec waits for the audit file's lock to write its grant record) sends the
    proxy to a fresh name: the payload's X509_USER_PROXY differs from the planned one, so the
    grant's digest is not the run's; a ``plan`` record says so, with the plan that ran."""
    default = planted
    if not gx.audit_file.exists():
        gx.assert_granted(gx.run(["/bin/true"]))
        os.unlink(default)
    before = len(gx.audit())
    fd = os.open(gx.audit_file, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        p = gx.popen([PY, "-c", P.DUMP])
        try:
            _wait_blocked_on(gx.audit_file)
            assert not os.path.lexists(default)      # staged only: nothing visible yet
            r = run_as("gxtoutsider", ["/bin/sh", "-c", f'echo planted > "{default}"'])
            assert r.returncode == 0, r
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
        out, err = p.communicate(timeout=60)
    finally:
        os.close(fd)
    assert p.returncode == 0, (out, err)
    recs = gx.audit()[before:]
    assert [x["event"] for x in recs] == ["grant", "plan", "end"], recs
    grant, moved = recs[0], recs[1]
    d = P.load_dump(out)
    dest = P.env_dict(d)["X509_USER_PROXY"]
    assert dest.startswith(default + ".")
    assert moved["changed"] == "target_proxy_moved" and moved["target_proxy"] == dest
    assert_ran_as_audited(moved["plan"], d, grant["caller"]["uid"])
    # the grant's plan is the one decided before: same fields, another env value
    assert grant["plan"]["sha256"] != moved["plan"]["sha256"]
    assert {**grant["plan"], "sha256": None} == {**moved["plan"], "sha256": None}
    assert open(default).read() == "planted\n"
