"""End-to-end: the installed setuid glexec, called by real users, runs the payload correctly."""
import grp
import json
import os
import stat
import subprocess

import pytest

from tests.privileged import payloads as P

SH = os.path.realpath("/bin/sh")  # clients never pass a symlinked command
TARGET_PATH = "/usr/local/bin:/usr/bin:/bin"


def _gids(values):
    """Audit groups as ints, whether recorded as gids or group names."""
    return {v if isinstance(v, int) else grp.getgrnam(v).gr_gid for v in values}


# --- the simplest call -----------------------------------------------------------------------

def test_id_runs_as_mapped_target_and_is_silent(gx):
    r = gx.run(["/usr/bin/id"])
    gx.assert_granted(r)
    assert r.stdout == (b"uid=47011(gxttarget1) gid=47011(gxttarget1) "
                        b"groups=47011(gxttarget1),47101(gxtvo)\n")


def test_second_dn_maps_to_second_target(gx):
    r = gx.run(["/usr/bin/id", "-un"], proxy=gx.proxy("user2"))
    gx.assert_granted(r)
    assert r.stdout == b"gxttarget2\n"


def test_caller_allowed_via_group(gx):
    r = gx.run(["/usr/bin/id", "-un"], user="gxtgroupie")
    gx.assert_granted(r)
    assert r.stdout == b"gxttarget1\n"
    assert r.grants[0]["caller"]["user"] == "gxtgroupie"


def test_grant_and_end_records(gx, pkis, accounts):
    r = gx.run(["/usr/bin/id"])
    gx.assert_granted(r)
    g, e = r.grants[0], r.ends[0]
    for k in ("time", "host", "caller", "dn", "issuer", "account", "uid", "gid", "groups",
              "command", "resolved", "args", "cwd", "proxy_fingerprint", "classic"):
        assert k in g, k
    c = g["caller"]
    assert (c["uid"], c["gid"], c["user"], c["group"]) == (47001, 47001, "gxtpilot", "gxtpilot")
    assert c["pid"] == r.pid and c["sid"] == r.pid and c["pgid"] == r.pid
    assert c["ppid"] == os.getpid()
    assert _gids(c["groups"]) == {47001, 47100}
    assert g["dn"] == pkis.user1.dn
    assert g["issuer"] == pkis.pki.ca_dn
    assert (g["account"], g["uid"], g["gid"]) == ("gxttarget1", 47011, 47011)
    assert 47101 in _gids(g["groups"]) and _gids(g["groups"]) <= {47011, 47101}
    assert g["command"] == "/usr/bin/id" and g["resolved"] == os.path.realpath("/usr/bin/id")
    assert g["args"] in ([], ["/usr/bin/id"])
    assert g["cwd"] == str(gx.box)
    assert isinstance(g["proxy_fingerprint"], str) and len(g["proxy_fingerprint"]) >= 16
    assert g["classic"].startswith("real_user(gxtpilot),real_group(gxtpilot)->"
                                   "mapped_user(gxttarget1),mapped_group(gxttarget1)")
    assert f'cwd: "{gx.box}"' in g["classic"] and 'cmd: "/usr/bin/id' in g["classic"]
    assert "\n" not in g["classic"]
    assert isinstance(e["payload_pid"], int) and e["payload_pid"] > 1 and e["payload_pid"] != r.pid
    assert e["status"] == 0
    assert isinstance(e["cpu_user"], float) and isinstance(e["cpu_system"], float)
    assert e["cpu_user"] >= 0 and e["cpu_system"] >= 0


def test_audit_log_is_root_only(gx):
    gx.assert_granted(gx.run(["/bin/true"]))
    st = gx.audit_file.lstat()
    assert stat.S_ISREG(st.st_mode) and st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o600


# --- what the payload process is -------------------------------------------------------------

def test_payload_identity_caps_session_env_cwd_fds(gx, accounts, pkis):
    dump = gx.script("dump.py", P.DUMP)
    proxy = gx.proxy("user1")
    r = gx.run([str(dump)], proxy=proxy,
               env={"GLEXEC_GXT_TEST": "v a\tl", "FOO": "bar", "TZ": "UTC", "HOME": "/root",
                    "USER": "gxtpilot", "SHELL": "/bin/sh", "LANG": "C.UTF-8",
                    "X509_USER_PROXY": str(proxy)})
    gx.assert_granted(r)
    d = P.load_dump(r.stdout)
    t = accounts.target1
    # identity: real = effective = saved (= fs) uid/gid of the target
    assert d["resuid"] == [t.uid] * 3 and d["resgid"] == [t.gid] * 3
    assert d["status"]["Uid"].split() == [str(t.uid)] * 4
    assert d["status"]["Gid"].split() == [str(t.gid)] * 4
    # groups: the target's from /etc/group, nothing of the caller's (gxtpilot, gxtextra)
    assert set(d["groups"]) | {t.gid} == {47011, 47101}
    assert not set(d["groups"]) & {47001, 47100, 0}
    # no capabilities at all
    assert P.caps(d) == {"CapInh": 0, "CapPrm": 0, "CapEff": 0, "CapAmb": 0}
    # same session and process group as the caller (glexec itself is r.pid, a session leader)
    assert d["sid"] == d["stat_sid"] == r.pid
    assert d["pgid"] == d["stat_pgid"] == r.pid
    # linger: glexec (the pid we spawned) is the payload's parent
    assert d["ppid"] == r.pid
    assert r.ends[0]["payload_pid"] == d["pid"]
    # environment, exactly
    env = P.env_dict(d)
    assert env == {
        "GLEXEC_CLIENT_CERT": str(proxy),
        "GLEXEC_GXT_TEST": "v a\tl",
        "HOME": str(t.home),
        "USER": "gxttarget1",
        "LOGNAME": "gxttarget1",
        "PATH": TARGET_PATH,
        "X509_USER_PROXY": f"/tmp/x509up_u{t.uid}",
    }
    # cwd is the caller's; only fds 0-2
    assert d["cwd"] == str(gx.box)
    assert d["fds"] == [0, 1, 2], d["fd_targets"]
    # default target proxy: /tmp/x509up_u<uid>, 0600, owned by the target, a real copy
    tp = f"/tmp/x509up_u{t.uid}"
    st = os.lstat(tp)
    assert stat.S_ISREG(st.st_mode) and st.st_uid == t.uid and stat.S_IMODE(st.st_mode) == 0o600
    data = open(tp, "rb").read()
    first_cert = proxy.read_bytes().split(b"-----END CERTIFICATE-----")[0]
    assert first_cert in data


def test_payload_dump_to_file_as_target(gx, accounts):
    dump = gx.script("dump.py", P.DUMP)
    outf = gx.marker("dump.json")
    r = gx.run([str(dump), str(outf)])
    gx.assert_granted(r)
    assert r.stdout == b""
    assert os.lstat(outf).st_uid == accounts.target1.uid
    d = json.loads(outf.read_text())
    assert d["resuid"] == [accounts.target1.uid] * 3


def test_preserve_env_list(gx):
    gx.config(payload={"preserve_env": ["GXT_KEEP"]})
    dump = gx.script("dump.py", P.DUMP)
    r = gx.run([str(dump)], env={"GXT_KEEP": "kept", "GXT_DROP": "dropped"})
    gx.assert_granted(r)
    env = P.env_dict(P.load_dump(r.stdout))
    assert env["GXT_KEEP"] == "kept" and "GXT_DROP" not in env


def test_no_linger_execs_in_place(gx):
    gx.config(payload={"linger": False})
    dump = gx.script("dump.py", P.DUMP)
    r = gx.run([str(dump)])
    gx.assert_granted(r, linger=False)
    assert len(r.records) == 1
    d = P.load_dump(r.stdout)
    assert d["pid"] == r.pid == d["sid"] == d["pgid"]
    assert d["resuid"] == [47011] * 3


# --- argv, stdin, exit status ----------------------------------------------------------------

def test_argv_verbatim(gx):
    prog = gx.script("argv.py", P.ARGV)
    args = [b"--", b"", b"two words", b"new\nline", b"\xff\xfe\x80 not utf-8", b"-h", b"-V",
            b"$0", b"'\"\\", b"--"]
    r = gx.run([str(prog).encode(), *args])
    gx.assert_granted(r)
    assert r.stdout == b"\0".join(args)
    for rec in r.records:  # every record is one line whatever the args
        assert isinstance(rec, dict)


def test_stdin_passes_through(gx):
    r = gx.run(["/bin/cat"], stdin=b"data\n")
    gx.assert_granted(r)
    assert r.stdout == b"data\n"


def test_large_stdin_and_stdout_stream(gx):
    blob = os.urandom(3 * 1024 * 1024)
    r = gx.run([SH, "-c", "cat; echo err >&2"], stdin=blob)
    gx.assert_granted(r, stderr=b"err\n")
    assert r.stdout == blob


@pytest.mark.parametrize("code,expect", [(0, 0), (1, 1), (7, 7), (126, 126), (127, 127),
                                         (200, 200), (201, 204), (202, 204), (203, 204),
                                         (204, 204), (205, 205), (255, 255)])
def test_payload_exit_status(gx, code, expect):
    r = gx.run([SH, "-c", f"exit {code}"])
    gx.assert_granted(r, status=expect)


def test_payload_killed_by_sigkill_gives_137(gx):
    r = gx.run([SH, "-c", "kill -KILL $$"])
    gx.assert_granted(r, status=137)


def test_payload_killed_by_sigsegv_gives_139(gx):
    r = gx.run([SH, "-c", "kill -SEGV $$"])
    assert r.returncode == 139, r


def test_not_an_executable_gives_126(gx):
    bad = gx.file("garbage", b"\x00\x01\x02garbage, no shebang\xff" * 20, mode=0o755)
    r = gx.run([str(bad)])
    assert r.returncode == 126, r
    assert r.stdout == b""
    assert len(r.stderr.splitlines()) <= 1, r
    assert len(r.grants) == 1  # it was authorised; the exec itself failed in the child


# --- real clients ----------------------------------------------------------------------------

def test_glideinwms_check(gx):
    r = gx.run([SH, "-c", 'id && echo "Hello World"'])
    gx.assert_granted(r)
    assert r.stdout.decode().splitlines()[-1] == "Hello World"


def test_panda_probe_true_silent(gx):
    r = gx.run(["/bin/true"])
    gx.assert_granted(r)
    assert r.stdout == b"" and r.stderr == b""


def test_htcondor_setup_tar_pipe_with_target_proxy_dev_null(gx, accounts):
    src = gx.dir("sandbox-src")
    gx.file("job.sh", "echo job\n", where=src)
    gx.file("data.txt", "payload data\n", where=src)
    tar = subprocess.run(["tar", "-C", str(src), "-c", "."], check=True,
                         capture_output=True).stdout
    dest = gx.out / "sandbox"
    tp = f"/tmp/x509up_u{accounts.target1.uid}"
    assert not os.path.lexists(tp)
    r = gx.run([SH, "-c", f'install -m 755 -d "{dest}" && tar -C "{dest}" -x'], stdin=tar,
               env={"GLEXEC_TARGET_PROXY": "/dev/null"})
    gx.assert_granted(r)
    assert (dest / "data.txt").read_text() == "payload data\n"
    assert os.lstat(dest / "data.txt").st_uid == accounts.target1.uid
    assert os.lstat(dest).st_uid == accounts.target1.uid
    assert not os.path.lexists(tp), "GLEXEC_TARGET_PROXY=/dev/null must not copy the proxy"
    assert os.stat("/dev/null").st_uid == 0 and stat.S_ISCHR(os.stat("/dev/null").st_mode)


# --- target proxy ----------------------------------------------------------------------------

def test_target_proxy_into_target_owned_dir(gx, accounts):
    t = accounts.target1
    tdir = gx.dir("tdir", owner="gxttarget1", mode=0o700)
    dest = tdir / "user_proxy"
    dump = gx.script("dump.py", P.DUMP)
    r = gx.run([str(dump)], env={"GLEXEC_TARGET_PROXY": str(dest)})
    gx.assert_granted(r)
    st = os.lstat(dest)
    assert stat.S_ISREG(st.st_mode) and st.st_uid == t.uid and stat.S_IMODE(st.st_mode) == 0o600
    env = P.env_dict(P.load_dump(r.stdout))
    assert env["X509_USER_PROXY"] == str(dest)
    assert env["GLEXEC_TARGET_PROXY"] == str(dest)
    assert not os.path.lexists(f"/tmp/x509up_u{t.uid}")


def test_target_proxy_never_written_through_symlink(gx, accounts):
    tdir = gx.dir("tdir", owner="gxttarget1", mode=0o700)
    victim = gx.file("victim", "original\n", owner="gxttarget1", mode=0o600, where=gx.out)
    link = tdir / "user_proxy"
    os.symlink(victim, link)
    os.lchown(link, accounts.target1.uid, accounts.target1.gid)
    r = gx.run(["/bin/true"], env={"GLEXEC_TARGET_PROXY": str(link)})
    assert victim.read_text() == "original\n"
    if r.returncode == 0:
        assert not os.path.islink(link)  # replaced, not followed
    else:
        assert r.returncode in (201, 202), r


def test_target_proxy_dir_not_owned_by_target_refused(gx, accounts):
    wdir = gx.dir("wdir", owner="gxtpilot", mode=0o777)
    dest = wdir / "user_proxy"
    mark = gx.marker("ran")
    r = gx.run([SH, "-c", f'echo ran > "{mark}"'], env={"GLEXEC_TARGET_PROXY": str(dest)})
    assert r.returncode in (201, 202), r
    assert len(r.stderr.splitlines()) == 1 and r.stderr.startswith(b"glexec: "), r
    assert not mark.exists()
    assert not os.path.lexists(dest)


# --- what the caller had and the payload gets back -------------------------------------------

def test_keep_caller_groups(gx):
    gx.config(payload={"keep_caller_groups": [47100]})
    r = gx.run(["/usr/bin/id", "-G"])
    gx.assert_granted(r)
    groups = {int(x) for x in r.stdout.split()}
    assert groups == {47011, 47101, 47100}  # the target's plus the kept one, not gxtpilot


def test_caller_rlimits_and_umask_restored_for_payload(gx):
    proxy = gx.proxy("user1")
    from tests.support.runas import run_as
    before = len(gx.audit())
    r = run_as("gxtpilot",
               ["/usr/bin/prlimit", "--nofile=256:512", "--core=0:0", "--",
                "/bin/sh", "-c", 'umask 027; exec "$0" "$@"',
                gx.glexec, SH, "-c", "ulimit -n; ulimit -Hn; umask"],
               env={"GLEXEC_CLIENT_CERT": str(proxy)}, cwd=str(gx.box))
    assert r.returncode == 0 and r.stderr == b"", r
    assert r.stdout.split() == [b"256", b"512", b"0027"]
    assert [x["event"] for x in gx.audit()[before:]] == ["grant", "end"]


@pytest.mark.parametrize("no_new_privs", [True, False])
def test_no_new_privs_reaches_the_payload(gx, no_new_privs):
    """payload.no_new_privs is a field of the plan: the payload's kernel flag says it."""
    gx.config(payload={"no_new_privs": no_new_privs})
    dump = gx.script("dump.py", P.DUMP)
    r = gx.run([str(dump)])
    gx.assert_granted(r)
    assert P.load_dump(r.stdout)["status"]["NoNewPrivs"] == ("1" if no_new_privs else "0")
