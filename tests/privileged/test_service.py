"""The engine service (glexec_py/service.py, csrc/shim_service.c), end to end: the installed
setuid shim, real accounts, the prefix's service bound to its compiled-in socket.

Same decisions and same audit with and without the service; the service trusts only the
shim; a dead peer, a dead service, a stopped caller and an admin's change between two calls
are handled; many concurrent calls leave an exact audit trail.
"""
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.privileged.conftest import GLEXEC_REASON_LINE, USER1_DN, USER2_DN
from tests.support import install as inst
from tests.support.runas import popen_as

SH = os.path.realpath("/bin/sh")
HELLO = b"GLEXEC-SERVICE-1\n"


@pytest.fixture
def service(prefix):
    """The prefix's engine service, running for this test (default options)."""
    proc = inst.start_service(prefix)
    yield proc
    _restore(prefix)


def _restore(prefix):
    """Leave the prefix as the session's mode wants it."""
    if inst.service_mode():
        inst.start_service(prefix)
    else:
        inst.stop_service(prefix)


def _children(pid):
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(d.name))
    return out


def _comm(pid):
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _call_children(pid):
    """The service's children that serve a call (not the spare forked ahead of the next)."""
    return [c for c in _children(pid) if _comm(c) != "glexec-spare"]


def _spares(pid):
    return [c for c in _children(pid) if _comm(c) == "glexec-spare"]


def _wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


# Fields that differ between any two calls (times, pids, CPU, the hash chain).
_VOLATILE = {"time", "mono", "pid", "payload_pid", "cpu_user", "cpu_system", "boot_id", "seq", "prev"}


def _stable(records):
    out = []
    for rec in records:
        rec = {k: v for k, v in rec.items() if k not in _VOLATILE}
        if "caller" in rec:
            rec["caller"] = {k: v for k, v in rec["caller"].items() if k not in ("pid", "ppid", "sid", "pgid")}
        out.append(rec)
    return out


def _calls(gx):
    """A mix of outcomes: grant (linger and exit status), refusals of each class, exec
    failure, informational output, no-linger exec."""
    missing = gx.box / "no-such-proxy"
    return [
        ("grant", lambda: gx.run(["/usr/bin/id"], proxy=gx.proxy("user1", name="p1.pem"))),
        ("status", lambda: gx.run([SH, "-c", "echo out; echo err >&2; exit 7"],
                                  proxy=gx.proxy("user1", name="p2.pem"))),
        ("second_dn", lambda: gx.run(["/usr/bin/id", "-un"], proxy=gx.proxy("user2", name="p3.pem"))),
        ("unmapped", lambda: gx.run(["/usr/bin/id"], proxy=gx.proxy("user3", name="p4.pem"))),
        ("expired", lambda: gx.run(["/usr/bin/id"], proxy=gx.proxy("expired", name="p5.pem"))),
        ("no_credential", lambda: gx.run(["/usr/bin/id"], proxy=None)),
        ("missing_file", lambda: gx.run(["/usr/bin/id"], proxy=missing)),
        ("not_caller", lambda: gx.run(["/usr/bin/id"], user="gxtoutsider",
                                      proxy=gx.proxy("user1", owner="gxtoutsider", name="p6.pem"))),
        ("not_executable", lambda: gx.run(["/nonexistent/cmd"], proxy=gx.proxy("user1", name="p7.pem"))),
        # a relative credential path is refused, wherever the engine's cwd is
        ("relative_proxy", lambda: (gx.proxy("user1", name="p8.pem"),
                                    gx.run(["/usr/bin/id", "-un"], proxy="p8.pem"))[1]),
        ("version", lambda: gx.run(["-v"], proxy=None)),
        ("stdin", lambda: gx.run(["/bin/cat"], proxy=gx.proxy("user1", name="p9.pem"), stdin=b"piped\n")),
    ]


def _outcomes(gx):
    got = {}
    for name, call in _calls(gx):
        r = call()
        got[name] = (r.returncode, r.stdout, r.stderr, _stable(r.records))
    return got


def test_same_results_and_audit_in_both_modes(gx, prefix, accounts):
    inst.start_service(prefix)
    try:
        served = _outcomes(gx)
        inst.stop_service(prefix)
        in_process = _outcomes(gx)
        gx.config(payload={"linger": False})
        inst.start_service(prefix)
        served_nolinger = gx.run(["/usr/bin/id", "-un"], proxy=gx.proxy("user1", name="q1.pem"))
        inst.stop_service(prefix)
        # the same proxy path: it is in the payload's env, so in the plan's digest
        nolinger = gx.run(["/usr/bin/id", "-un"], proxy=gx.proxy("user1", name="q1.pem"))
    finally:
        _restore(prefix)
    assert served.keys() == in_process.keys()
    for name in served:
        assert served[name][:3] == in_process[name][:3], name
        a, b = served[name][3], in_process[name][3]
        assert [r["event"] for r in a] == [r["event"] for r in b], name
        for x, y in zip(a, b):
            assert {k: (x.get(k), y.get(k)) for k in x.keys() | y.keys() if x.get(k) != y.get(k)} == {}, name
    assert served["grant"][0] == 0 and served["status"][0] == 7 and served["unmapped"][0] == 203
    assert served["not_caller"][0] == 203 and served["no_credential"][0] == 201
    assert served["stdin"][1] == b"piped\n" and served["relative_proxy"][0] == 201
    assert (served_nolinger.returncode, served_nolinger.stdout) == (nolinger.returncode, nolinger.stdout) \
        == (0, b"gxttarget1\n")
    assert _stable(served_nolinger.records) == _stable(nolinger.records)
    # the audit record names the glexec process itself in both modes
    assert served_nolinger.grants[0]["pid"] == served_nolinger.pid


def test_a_call_is_served_by_the_service_and_the_payload_stays_in_the_callers_session(gx, service):
    p = gx.popen([SH, "-c", f"echo $$ > {gx.marker('pid')}; sleep 1.5"])
    try:
        assert _wait_for(lambda: gx.marker("pid").exists()), "payload did not start"
        assert _wait_for(lambda: gx.marker("pid").read_text().strip() != "")
        payload = int(gx.marker("pid").read_text())
        # the service has a child for this call (lingering for the end record) ...
        assert _call_children(service.pid), "no request child: the call was not served by the service"
        # ... while the payload is the shim's child, in the caller's session and process group
        stat = Path(f"/proc/{payload}/stat").read_text().rsplit(")", 1)[1].split()
        assert int(stat[1]) == p.pid and int(stat[2]) == p.pid and int(stat[3]) == p.pid
    finally:
        out, err = p.communicate(timeout=30)
    assert (p.returncode, err) == (0, b"")
    recs = [r for r in gx.audit() if r.get("caller", {}).get("pid") == p.pid]
    assert [r["event"] for r in recs] == ["grant", "end"]
    assert recs[1]["payload_pid"] == payload and recs[0]["pid"] == p.pid


def test_without_the_service_the_shim_falls_back(gx, prefix):
    inst.stop_service(prefix)
    try:
        # a socket file nobody listens on: connect is refused, the engine runs in-process
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(str(inst.service_socket_path(prefix)))
        os.chmod(inst.service_socket_path(prefix), 0o600)
        s.close()
        r = gx.run(["/usr/bin/id", "-un"])
        gx.assert_granted(r)
        assert r.stdout == b"gxttarget1\n"
    finally:
        _restore(prefix)


def _offer(sock_path, blob, *, user=None):
    """Connect to the service, offer `blob` (in a sealed memfd) with stdio and cwd fds as the
    shim does; returns what the service answers (b"" = it hung up) and the connection."""
    import fcntl
    fd = os.memfd_create("offer", os.MFD_ALLOW_SEALING)
    os.write(fd, blob)
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW
                | fcntl.F_SEAL_WRITE)
    cwd = os.open("/", os.O_PATH)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(15)
    try:
        s.connect(str(sock_path))
        ready = s.recv(1)
        if ready != b"R":
            return ready
        socket.send_fds(s, [HELLO], [0, 1, 2, fd, cwd])
        return s.recv(1)
    except ConnectionResetError:    # closed with our offer unread: hung up
        return b""
    except OSError as e:
        return repr(e).encode()
    finally:
        s.close()
        os.close(fd)
        os.close(cwd)


_OFFER_AS_USER = r"""
import fcntl, os, socket, sys
blob = open(sys.argv[2], "rb").read()
fd = os.memfd_create("offer", os.MFD_ALLOW_SEALING)
os.write(fd, blob)
fcntl.fcntl(fd, fcntl.F_ADD_SEALS, 15)
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(15)
s.connect(sys.argv[1])
try:
    answer = s.recv(1)
    if answer == b"R":
        socket.send_fds(s, [b"GLEXEC-SERVICE-1\n"], [0, 1, 2, fd, os.open("/", os.O_PATH)])
        answer = s.recv(1)
except (ConnectionResetError, BrokenPipeError):   # hung up on us
    answer = b""
sys.stdout.write(repr(answer))
"""


def _facts_of(pid, *, privileged=True):
    """A well-formed hand-off describing process `pid` as the kernel sees it now."""
    from glexec_py.core.handoff import CallerFacts
    ids = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        ids[key] = value.split()
    uid, gid = [int(x) for x in ids["Uid"]], [int(x) for x in ids["Gid"]]
    return CallerFacts(argv=[b"glexec", b"/usr/bin/id"], env=[], ruid=uid[0], euid=uid[1], suid=uid[2],
                       rgid=gid[0], egid=gid[1], sgid=gid[2], pid=pid, ppid=int(ids["PPid"][0]),
                       sid=os.getsid(pid), pgid=os.getpgid(pid), umask=0o077, privileged=privileged,
                       groups=tuple(int(g) for g in ids["Groups"]),
                       rlimits={r: (-1, -1) for r in range(16)}, cwd=b"/")


def test_a_non_root_peer_is_refused(gx, service, prefix):
    """Defence in depth: even where the socket's mode would let a user in, a peer whose
    euid is not 0 gets no answer and nothing is done for it."""
    from glexec_py.core.handoff import build
    sock = inst.service_socket_path(prefix)
    blob = gx.file("offer.bin", b"", owner="gxtpilot")
    before = len(gx.audit())
    os.chmod(sock, 0o666)
    try:
        helper = gx.file("offer.py", _OFFER_AS_USER, owner="gxtpilot")
        p = popen_as("gxtpilot", ["/usr/bin/python3", str(helper), str(sock), str(blob)], cwd=str(gx.box))
        # the hand-off describes the helper exactly as the kernel sees it, yet it is not root
        assert _wait_for(lambda: Path(f"/proc/{p.pid}/status").exists())
        blob.write_bytes(build(_facts_of(p.pid, privileged=True)))
        out, err = p.communicate(timeout=30)
    finally:
        os.chmod(sock, 0o600)
    assert out == b"b''", (out, err)
    assert len(gx.audit()) == before
    assert "is not root" in (prefix / "var/log/glexec-py/service.log").read_text()


def test_a_request_naming_another_process_is_refused(gx, service, prefix, accounts):
    """A root peer offering the hand-off of another process (a real caller's, which would
    pass every other check) is hung up on before anything is decided."""
    from glexec_py.core.handoff import build
    victim = popen_as("gxtpilot", ["/bin/sleep", "30"])
    try:
        assert _wait_for(lambda: Path(f"/proc/{victim.pid}/status").exists())
        before = len(gx.audit())
        answer = _offer(inst.service_socket_path(prefix), build(_facts_of(victim.pid)))
        # our own pid, but ids that are not ours (the kernel says root)
        mine = _facts_of(os.getpid())
        for field, value in (("ruid", accounts.pilot.uid), ("euid", accounts.pilot.uid)):
            forged = _facts_of(os.getpid())
            setattr(forged, field, value)
            assert _offer(inst.service_socket_path(prefix), build(forged)) == b"", field
        forged = _facts_of(os.getpid())
        forged.groups = (accounts.pilot.gid,)
        assert _offer(inst.service_socket_path(prefix), build(forged)) == b""
    finally:
        victim.kill()
        victim.wait()
    assert answer == b""
    assert len(gx.audit()) == before
    log = (prefix / "var/log/glexec-py/service.log").read_text()
    assert f"hand-off names pid {victim.pid}" in log
    assert mine.ruid == 0   # the control: the same offer with our true ids would be the shim's shape


def _slow_pam(gx, seconds):
    """A PAM account stack that takes `seconds` (pam_exec sleep) before admitting."""
    text = (inst.REPO_ROOT / "packaging" / "pam.d" / "glexec").read_text()
    text = text.replace("/etc/glexec-py/", f"{gx.prefix}/etc/glexec-py/")
    inst.install_pam_service(gx.prefix, f"account required pam_exec.so quiet /bin/sleep {seconds}\n" + text)


def test_a_caller_that_dies_mid_request_leaves_a_complete_record(gx, service):
    """The shim is killed (by root: the batch system) while the service decides: nothing
    runs, and the audit trail is whole (the grant is followed by its end record)."""
    _slow_pam(gx, 2)
    try:
        p = gx.popen([SH, "-c", f"touch {gx.marker('ran')}"])
        assert _wait_for(lambda: _call_children(service.pid), 5)
        time.sleep(0.5)                          # the request child is in PAM now
        os.kill(p.pid, signal.SIGKILL)
        p.communicate(timeout=30)
        child = _call_children(service.pid)
        assert _wait_for(lambda: not _call_children(service.pid), 20), "request child did not finish"
    finally:
        inst.install_pam_service(gx.prefix)
    assert child
    recs = [r for r in gx.audit() if r.get("caller", {}).get("pid") == p.pid]
    assert [r["event"] for r in recs] == ["grant", "end"], recs
    assert recs[1]["reason"] == "exec_failed" and recs[1]["step"] == "shim_gone", recs[1]
    assert not gx.marker("ran").exists()
    gx.assert_granted(gx.run(["/usr/bin/id"]))     # the service still serves


def test_service_killed_mid_call_fails_closed_and_the_next_call_falls_back(gx, service, prefix):
    # during the policy phase: the committed shim fails closed (202, one line), nothing ran
    _slow_pam(gx, 2)
    try:
        p = gx.popen([SH, "-c", f"touch {gx.marker('ran')}"])
        assert _wait_for(lambda: _call_children(service.pid), 5)
        time.sleep(0.5)
        os.killpg(service.pid, signal.SIGKILL)   # the service and its request children
        out, err = p.communicate(timeout=30)
    finally:
        inst.install_pam_service(gx.prefix)
    assert p.returncode == 202 and GLEXEC_REASON_LINE.match(err) and out == b"", (p.returncode, out, err)
    recs = [r for r in gx.audit() if r.get("caller", {}).get("pid") == p.pid]
    assert not [r for r in recs if r["event"] == "grant"], recs
    assert not gx.marker("ran").exists()
    # the socket is left behind, nobody listens: the next call runs in-process
    r = gx.run(["/usr/bin/id", "-un"])
    gx.assert_granted(r)
    assert r.stdout == b"gxttarget1\n"


def test_service_killed_while_the_payload_runs(gx, prefix):
    proc = inst.start_service(prefix)
    try:
        p = gx.popen([SH, "-c", f"touch {gx.marker('started')}; sleep 1; touch {gx.marker('done')}"])
        assert _wait_for(lambda: gx.marker("started").exists(), 10)
        assert _call_children(proc.pid), "the call was not served by the service"
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = p.communicate(timeout=30)
    finally:
        _restore(prefix)
    # the payload ran to its end in the caller's job; the lost service is one line and a 202
    assert gx.marker("done").exists()
    assert p.returncode == 202 and GLEXEC_REASON_LINE.match(err), (p.returncode, err)
    recs = [r for r in gx.audit() if r.get("caller", {}).get("pid") == p.pid]
    assert [r["event"] for r in recs] == ["grant"], recs   # "end not recorded", as after a crash


def test_config_and_ban_changes_are_seen_by_the_next_call(gx, service, prefix, pkis):
    r = gx.run(["/usr/bin/id", "-un"])
    gx.assert_granted(r)
    assert r.stdout == b"gxttarget1\n"
    gx.gridmap([(USER1_DN, "gxttarget2"), (USER2_DN, "gxttarget2")])
    r = gx.run(["/usr/bin/id", "-un"])
    gx.assert_granted(r)
    assert r.stdout == b"gxttarget2\n"
    banned = prefix / "etc" / "glexec-py" / "service-test-bans.db"
    banned.write_text(f'"{USER1_DN}"\n')
    os.chmod(banned, 0o644)
    gx.config(bans={"dn_files": [str(banned)]})
    gx.assert_refused(gx.run(["/usr/bin/id"]), 203, "banned_dn")
    banned.write_text("")
    gx.assert_granted(gx.run(["/usr/bin/id"]))
    gx.config(callers={"users": [], "groups": []})
    gx.assert_refused(gx.run(["/usr/bin/id"]), 203, "caller_not_allowed")
    banned.unlink()


def test_silent_peers_do_not_stall_a_real_call(gx, prefix):
    """Both policy slots are taken by peers that connect and say nothing (a stopped caller):
    a real call is not held up by them (it falls back after the shim's short wait)."""
    proc = inst.start_service(prefix, "--max-active", "2")
    silent = []
    try:
        for _ in range(2):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(str(inst.service_socket_path(prefix)))
            silent.append(s)
        assert _wait_for(lambda: len(_call_children(proc.pid)) == 2, 5)
        started = time.monotonic()
        r = gx.run(["/usr/bin/id", "-un"])
        took = time.monotonic() - started
    finally:
        for s in silent:
            s.close()
        _restore(prefix)
    gx.assert_granted(r)
    assert took < 4.5, took    # the silent peers hold their slots for 5 s


def test_many_concurrent_calls_have_an_exact_audit(gx, service):
    n = 500
    proxy = gx.proxy("user1")
    # the payload's parent is the lingering supervisor: the shim itself when the service
    # served the call, the in-process engine (python) when the shim fell back
    script = "read who < /proc/$PPID/comm; echo $$ $who"
    procs = [popen_as("gxtpilot", [gx.glexec, SH, "-c", script], env={"GLEXEC_CLIENT_CERT": str(proxy)},
                      cwd=str(gx.box)) for _ in range(n)]
    results = [(p.pid,) + p.communicate(timeout=300) + (p.returncode,) for p in procs]
    bad = [r for r in results if r[3] != 0 or r[2] != b""]
    assert not bad, bad[:5]
    # the audit trail is exact: one grant and one end per call, nothing else
    recs = gx.audit()
    by_pid = {}
    for rec in recs:
        pid = rec.get("caller", {}).get("pid")
        if pid in {r[0] for r in results}:
            by_pid.setdefault(pid, []).append(rec)
    assert len(by_pid) == n
    supervisors = {}
    for pid, out, _, _ in results:
        payload, who = out.split()
        supervisors[who] = supervisors.get(who, 0) + 1
        events = by_pid[pid]
        assert [e["event"] for e in events] == ["grant", "end"], events
        assert events[1]["status"] == 0 and events[1]["payload_pid"] == int(payload)
    print("supervisors:", supervisors)
    # those beyond --max-active wait in the backlog and may fall back: both kinds are exact
    assert supervisors.get(b"glexec", 0) >= 1, supervisors


_NON_ROOT_LISTENER = r"""
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sys.argv[1])
os.chmod(sys.argv[1], 0o600)
os.setresgid(int(sys.argv[2]), int(sys.argv[2]), int(sys.argv[2]))
os.setgroups([])
os.setresuid(int(sys.argv[2]), int(sys.argv[2]), int(sys.argv[2]))
s.listen(8)            # SO_PEERCRED of the listening side: these credentials
print("listening", flush=True)
s.settimeout(20)
conn, _ = s.accept()
conn.settimeout(5)
try:
    conn.send(b"R")    # as a request child would: "send me the call"
    msg, fds, _, _ = socket.recv_fds(conn, 64, 8)
except OSError:
    msg, fds = b"", []
print(repr((msg, len(fds))), flush=True)
"""


def test_the_shim_offers_a_call_only_to_a_root_listener(gx, prefix, accounts):
    """A listener on the socket path that is not root (here: bound by root, listening as
    another user) never receives the caller's fds or hand-off; the call runs in-process."""
    inst.stop_service(prefix)
    sock = inst.service_socket_path(prefix)
    sock.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    fake = subprocess.Popen(["/usr/bin/python3", "-c", _NON_ROOT_LISTENER, str(sock), str(accounts.outsider.uid)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert fake.stdout.readline() == b"listening\n"
        r = gx.run(["/usr/bin/id", "-un"])
        out, err = fake.communicate(timeout=30)
    finally:
        if fake.poll() is None:
            fake.kill()
            fake.wait()
        _restore(prefix)
    gx.assert_granted(r)
    assert r.stdout == b"gxttarget1\n"
    assert out == b"(b'', 0)\n", (out, err)


def test_the_parent_maps_the_pam_stack_once_and_each_call_still_applies_its_rules(gx, service, prefix):
    """warm_pam_modules: the parent has the PAM service's modules mapped (a call's child
    does not load them again), yet their rules are read by each call: an access.conf
    change made after the service started refuses the very next call."""
    maps = Path(f"/proc/{service.pid}/maps").read_text()
    assert "/security/pam_unix.so" in maps and "/security/pam_access.so" in maps
    gx.assert_granted(gx.run(["/usr/bin/id", "-un"]))
    access = prefix / "etc" / "glexec-py" / "access.conf"
    old = access.read_bytes()
    try:
        inst._write_root_file(access, b"-:gxttarget1:ALL\n")
        r = gx.run(["/usr/bin/id"])
        gx.assert_refused(r, 203, "pam_account")
        assert r.records[0]["detail"]["pam_code"] == "PAM_PERM_DENIED"
    finally:
        inst._write_root_file(access, old)
    gx.assert_granted(gx.run(["/usr/bin/id"]))


def test_a_spare_forked_ahead_serves_the_next_call_and_a_dead_one_is_replaced(gx, service):
    """Between calls the service keeps one child forked ahead (named glexec-spare): it has
    no connection of its own (not even the listener) until the parent hands it the next
    call, which it then serves; a spare that died meanwhile is replaced, the call served."""
    # a call first: start_service's probe connection has been served (by a spare) by then
    gx.assert_granted(gx.run(["/bin/true"]))
    assert _wait_for(lambda: len(_spares(service.pid)) == 1 and not _call_children(service.pid), 10)
    spare = _spares(service.pid)[0]
    sockets = {os.readlink(f"/proc/{spare}/fd/{fd}") for fd in os.listdir(f"/proc/{spare}/fd")}
    assert len([x for x in sockets if x.startswith("socket:")]) == 1, sockets   # the hand-over one
    p = gx.popen([SH, "-c", f"touch {gx.marker('started')}; sleep 1"])
    try:
        assert _wait_for(lambda: gx.marker("started").exists(), 10)
        assert _comm(spare) == "glexec-call" and _call_children(service.pid) == [spare]
        assert _wait_for(lambda: len(_spares(service.pid)) == 1, 5)    # the next one, forked
    finally:
        out, err = p.communicate(timeout=30)
    assert (p.returncode, err) == (0, b"")
    os.kill(_spares(service.pid)[0], signal.SIGKILL)
    r = gx.run(["/usr/bin/id", "-un"])
    gx.assert_granted(r)
    assert r.stdout == b"gxttarget1\n"
    assert _wait_for(lambda: len(_spares(service.pid)) == 1, 5)
