"""End-to-end: PanDA pilot 1's gLExec flow, exactly as glexec-interface.md section 13.4
describes it, run by a real pilot account against the installed glexec and the helpers
installed beside it (mkgltempdir, glexec_wrapenv.pl, glexec_unwrapenv.pl), ending with the
payload running as the target in the sandbox with its proxy and the pilot's environment.
Then what another local user (and the pilot itself) can do to the target's proxy there:
nothing (docs/mkgltempdir.md)."""
import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from glexec_py.core import sandboxdir as sd
from tests.support.runas import run_as

# The pilot, as glexec_utils.py does it: every command through a shell (`execute`).
PILOT = r'''#!/usr/bin/python3
import json, os, shutil, subprocess, sys, tempfile
glexec, modules, user_proxy_src = sys.argv[1:4]
gdir = os.path.dirname(glexec)

def execute(cmd):
    p = subprocess.Popen(cmd, shell=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = p.communicate()
    return out.decode("latin-1"), err.decode("latin-1"), p.wait()

report = {}
# probe: glexec mode only if exit 0 and empty stderr
report["probe"] = execute("export GLEXEC_CLIENT_CERT=$X509_USER_PROXY; %s /bin/true" % glexec)
# the user proxy, 0700 in a fresh temp dir
d = tempfile.mkdtemp(dir=os.getcwd())
up = os.path.join(d, "user_proxy")
shutil.copy(user_proxy_src, up)
os.chmod(up, 0o700)
os.environ["GLEXEC_SOURCE_PROXY"] = up
os.environ["GLEXEC_CLIENT_CERT"] = up
out, err, status = report["mkgltempdir"] = execute("%s -t 777" % os.path.join(gdir, "mkgltempdir"))
if status or err:
    print(json.dumps(report)); sys.exit(1)
target = out.rstrip("\n")
os.environ["GLEXEC_TARGET_DIR"] = target
os.environ["GLEXEC_TARGET_PROXY"] = os.path.join(target, "user_proxy")
for name in sorted(os.listdir(modules)):
    shutil.copy2(os.path.join(modules, name), os.path.join(target, name))
    os.chmod(os.path.join(target, name), 0o666)
report["run"] = execute("export GLEXEC_ENV=$(%s); %s %s -- 'cd %s; python -m glexec_aux 2>1;'" % (
    os.path.join(gdir, "glexec_wrapenv.pl"), glexec, os.path.join(gdir, "glexec_unwrapenv.pl"), target))
report["target"] = target
print(json.dumps(report))
'''

# The payload module the pilot ships (PanDA: glexec_aux.py): what it is and what it sees.
AUX = r'''import json, os, stat
p = os.environ.get("X509_USER_PROXY", "")
st = os.stat(p)
print(json.dumps({
    "uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(), "cwd": os.getcwd(),
    "env": {k.decode("latin-1"): v.decode("latin-1") for k, v in os.environb.items()},
    "proxy": open(p, "rb").read().decode("latin-1"), "proxy_uid": st.st_uid,
    "proxy_mode": stat.S_IMODE(st.st_mode)}))
'''

PILOT_ENV = {"PandaID": "4242", "WEIRD": "a=b\nc=d", "NONUTF8": b"\xff\xfe-\xc3", "MALLOC_CHECK_": "3",
             "LD_BIND_NOW": "1", "HOME": "/home/pilot-home", "LOGNAME": "gxtpilot"}


@pytest.fixture
def sandboxes(accounts):
    """Removes the sandboxes mkgltempdir made in /tmp for the test's target."""
    def clean():
        for p in Path("/tmp").glob("glexec_*"):
            if p.is_dir() and p.stat().st_uid in (accounts.target1.uid, accounts.target2.uid):
                shutil.rmtree(p)
    clean()
    yield
    clean()


def _pilot_box(gx):
    bindir = gx.dir("bin")
    os.symlink("/usr/bin/python3", bindir / "python")   # PanDA's `python`, from the pilot's PATH
    modules = gx.dir("modules")
    gx.file("glexec_aux.py", AUX, where=modules)
    gx.file("Monitor.py", "# shipped module\n", where=modules)
    return bindir, modules


def run_pilot(gx):
    bindir, modules = _pilot_box(gx)
    pilot = gx.script("pilot.py", PILOT)
    pilot_proxy = gx.proxy("user2")             # the pilot's own (maps to gxttarget2)
    user_proxy = gx.proxy("user1")              # the payload owner's (maps to gxttarget1)
    env = {**PILOT_ENV, "X509_USER_PROXY": str(pilot_proxy), "PATH": f"{bindir}:/usr/bin:/bin"}
    r = run_as("gxtpilot", ["/usr/bin/python3", str(pilot), gx.glexec, str(modules), str(user_proxy)],
               env=env, cwd=str(gx.box), timeout=60)
    assert r.returncode == 0, r
    return json.loads(r.stdout)


def test_panda_flow(gx, accounts, sandboxes):
    t = accounts.target1
    report = run_pilot(gx)
    assert report["probe"] == ["", "", 0]
    out, err, status = report["mkgltempdir"]
    assert (status, err) == (0, "") and out.endswith("\n") and out.count("\n") == 1
    sandbox = Path(report["target"])
    assert sandbox.parent == Path("/tmp") and sandbox.name.startswith("glexec_")

    st = os.lstat(sandbox)
    assert stat.S_ISDIR(st.st_mode) and st.st_uid == t.uid
    assert stat.S_IMODE(st.st_mode) == 0o1770           # group bits = the ACL mask
    acl = sd.parse_acl(os.getxattr(sandbox, "system.posix_acl_access"))
    assert sorted((tag, perm, ident) for tag, perm, ident in acl if tag == sd.ACL_USER) == \
        [(sd.ACL_USER, 7, accounts.pilot.uid)]
    assert sd.caller_sandbox(st.st_mode, acl, t.uid, st.st_uid, accounts.pilot.uid) == (True, None)

    out, err, status = report["run"]
    assert (status, err) == (0, ""), report
    seen = json.loads(out)
    assert (seen["uid"], seen["euid"], seen["gid"]) == (t.uid, t.uid, t.gid)
    assert seen["cwd"] == str(sandbox)
    env = seen["env"]
    assert env["X509_USER_PROXY"] == str(sandbox / "user_proxy")
    assert seen["proxy"] == gx.pkis.proxies["user1"].read_bytes().decode("latin-1")
    assert (seen["proxy_uid"], seen["proxy_mode"]) == (t.uid, 0o600)
    # the pilot's environment came across; what glexec set for the target stayed
    assert env["PandaID"] == "4242" and env["WEIRD"] == "a=b\nc=d"
    assert env["NONUTF8"] == b"\xff\xfe-\xc3".decode("latin-1")
    assert env["PATH"].startswith(str(gx.box / "bin") + ":")
    assert (env["HOME"], env["USER"], env["LOGNAME"]) == (str(t.home), t.name, t.name)
    assert env["GLEXEC_TARGET_DIR"] == str(sandbox)
    assert "GLEXEC_ENV" not in env
    assert not any(k.startswith(("LD_", "MALLOC_")) for k in env)
    # PanDA's `2>1`: the payload's stderr went to a file named 1 in the sandbox
    assert (sandbox / "1").is_file() and (sandbox / "Monitor.py").stat().st_uid == accounts.pilot.uid


def _as(user, script):
    return run_as(user, ["/bin/sh", "-c", script])


def test_another_user_cannot_touch_the_targets_proxy(gx, accounts, sandboxes):
    report = run_pilot(gx)
    sandbox = Path(report["target"])
    proxy = sandbox / "user_proxy"
    before = proxy.read_bytes()
    for script in (f'cat "{proxy}"', f'ls "{sandbox}"', f'rm -f "{proxy}"', f'mv "{proxy}" "{proxy}.x"',
                   f'echo planted > "{sandbox}/x509"', f'ln -s /etc/passwd "{sandbox}/other"'):
        r = _as("gxtoutsider", script)
        assert r.returncode != 0 and b"Permission denied" in r.stderr, (script, r)
    # the pilot may write the sandbox, but not read, remove or replace the target's proxy (sticky)
    for script in (f'cat "{proxy}"', f'rm -f "{proxy}"', f'mv -f "{proxy}" "{proxy}.x"',
                   f'echo new > "{sandbox}/new"; mv -f "{sandbox}/new" "{proxy}"'):
        r = _as("gxtpilot", script)
        assert r.returncode != 0, (script, r)
    assert proxy.read_bytes() == before and proxy.stat().st_uid == accounts.target1.uid
    assert not (sandbox / "x509").exists() and not (sandbox / "other").exists()


def _mkgltempdir(gx, user_proxy):
    r = run_as("gxtpilot", [str(gx.prefix / "sbin" / "mkgltempdir"), "-t", "777"],
               env={"GLEXEC_CLIENT_CERT": str(user_proxy)}, cwd=str(gx.box))
    assert r.returncode == 0 and r.stderr == b"", r
    return Path(r.stdout.decode().rstrip("\n"))


@pytest.mark.parametrize("plant", ["file", "symlink"])
def test_planted_target_proxy_in_the_sandbox_refused(gx, accounts, sandboxes, plant):
    """Only the pilot can plant anything there; a planted user_proxy is refused (201),
    never written through or replaced."""
    user_proxy = gx.proxy("user1")
    sandbox = _mkgltempdir(gx, user_proxy)
    dest = sandbox / "user_proxy"
    r = _as("gxtpilot", f'echo planted > "{dest}"' if plant == "file" else f'ln -s /etc/passwd "{dest}"')
    assert r.returncode == 0, r
    mark = gx.marker("ran")
    r = gx.run(["/bin/sh", "-c", f'echo ran > "{mark}"'], proxy=user_proxy,
               env={"GLEXEC_TARGET_PROXY": str(dest), "GLEXEC_SOURCE_PROXY": str(user_proxy)})
    gx.assert_refused(r, 201, "target_proxy_location")
    assert not mark.exists()
    assert os.lstat(dest).st_uid == accounts.pilot.uid
    assert (os.readlink(dest) == "/etc/passwd") if plant == "symlink" else dest.read_text() == "planted\n"


def _target_dir(gx, accounts, mode, acl):
    t = accounts.target1
    d = gx.out / f"sandbox-{mode:o}-{len(acl or ())}"
    d.mkdir()
    os.chown(d, t.uid, t.gid)
    os.chmod(d, mode)
    if acl is not None:
        os.setxattr(d, "system.posix_acl_access", sd.encode_acl(acl))
        os.chmod(d, mode)
    return d


def _acl(user, perm=7, group_obj=0):
    return [(sd.ACL_USER_OBJ, 7, None), (sd.ACL_USER, perm, user), (sd.ACL_GROUP_OBJ, group_obj, None),
            (sd.ACL_MASK, 7, None), (sd.ACL_OTHER, 0, None)]


@pytest.mark.parametrize("case", ["world_writable_sticky", "acl_for_another_user", "acl_without_sticky",
                                  "acl_group_writable"])
def test_other_writable_directories_refused(gx, accounts, sandboxes, case):
    """What a naive `-t 777` would make (1777), or an ACL that lets someone other than the
    caller write, or no sticky bit: the engine refuses to put the proxy there."""
    pilot, outsider = accounts.pilot.uid, accounts.outsider.uid
    mode, acl = {"world_writable_sticky": (0o1777, None),
                 "acl_for_another_user": (0o1770, _acl(outsider)),
                 "acl_without_sticky": (0o770, _acl(pilot)),
                 "acl_group_writable": (0o1770, _acl(pilot, group_obj=7))}[case]
    d = _target_dir(gx, accounts, mode, acl)
    mark = gx.marker("ran")
    r = gx.run(["/bin/sh", "-c", f'echo ran > "{mark}"'], env={"GLEXEC_TARGET_PROXY": str(d / "user_proxy")})
    gx.assert_refused(r, 201, "target_proxy_location")
    assert not mark.exists() and not (d / "user_proxy").exists()


def test_the_same_acl_for_the_caller_accepted(gx, accounts, sandboxes):
    """The control for the cases above: the caller's own ACL sandbox works."""
    d = _target_dir(gx, accounts, 0o1770, _acl(accounts.pilot.uid))
    r = gx.run(["/bin/true"], env={"GLEXEC_TARGET_PROXY": str(d / "user_proxy")})
    gx.assert_granted(r)
    assert (d / "user_proxy").stat().st_uid == accounts.target1.uid


def test_mkgltempdir_700_and_refusals(gx, accounts, sandboxes):
    r = run_as("gxtpilot", [str(gx.prefix / "sbin" / "mkgltempdir")],
               env={"GLEXEC_CLIENT_CERT": str(gx.proxy("user1"))}, cwd=str(gx.box))
    assert r.returncode == 0 and r.stderr == b"", r
    d = Path(r.stdout.decode().rstrip("\n"))
    st = os.lstat(d)
    assert st.st_uid == accounts.target1.uid and stat.S_IMODE(st.st_mode) == 0o700
    with pytest.raises(OSError):
        os.getxattr(d, "system.posix_acl_access")
    # no credential: glexec's own refusal and exit code come through
    r = run_as("gxtpilot", [str(gx.prefix / "sbin" / "mkgltempdir"), "-t", "777"], cwd=str(gx.box))
    assert r.returncode == 201 and r.stdout == b"" and r.stderr.startswith(b"glexec: "), r
    r = run_as("gxtpilot", [str(gx.prefix / "sbin" / "mkgltempdir"), "-t", "9z"], cwd=str(gx.box))
    assert r.returncode == 1 and r.stderr.count(b"\n") == 1 and r.stderr.startswith(b"mkgltempdir: "), r


@pytest.mark.parametrize("blob", ["", "garbage", "gxenv1:AAAA"])
def test_unwrap_of_a_bad_glexec_env_runs_nothing(gx, blob):
    """Through the installed glexec: the unwrapper says why in one line, exits 201 (glexec
    reports that payload status as 204) and the command never runs."""
    mark = gx.marker("ran")
    unwrap = str(gx.prefix / "sbin" / "glexec_unwrapenv.pl")
    r = gx.run([unwrap, "--", f'echo ran > "{mark}"'], env={"GLEXEC_ENV": blob})
    gx.assert_granted(r, 204, stderr=None)
    assert r.stderr.startswith(b"glexec_unwrapenv.pl: ") and r.stderr.count(b"\n") == 1, r
    assert r.stdout == b"" and not mark.exists()
