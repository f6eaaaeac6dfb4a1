"""The target account through PAM (/etc/pam.d/<service>, shipped as packaging/pam.d/glexec):
account management refuses expired and pam_access-denied accounts before anything runs,
pam_limits applies to the payload, the session is closed after it, and nothing moves the
payload out of the caller's cgroup or session.  Real accounts, the installed binary, the
real Linux-PAM modules; each test prefix has its own service file (tests/support/install.py).
"""
import os
import resource
import secrets
from pathlib import Path

import pytest

from tests.privileged.conftest import SH, USER3_DN
from tests.support import accounts as acc
from tests.support import install as inst

GROUP, GID = "gxtpamg", 47170      # 47170-47175: this module's ids
USERS = {"gxtpamexp": 47171, "gxtpamlck": 47172, "gxtpamacc": 47173, "gxtpamlim": 47174,
         "gxtpamok": 47175}


@pytest.fixture(scope="module")
def pam_accounts(accounts):
    acc.create_group(GROUP, GID)
    made = []
    try:
        for name, uid in USERS.items():
            made.append(acc.create_user(name, uid, GROUP))
        yield {a.name: a for a in made}
    finally:
        acc.kill_uid_processes({a.uid for a in made})
        for a in made:
            acc.remove_user(a.name)
        acc.remove_group(GROUP)


def _as(gx, account):
    """Map user3's DN to ``account``; returns the proxy to call with."""
    gx.gridmap([(USER3_DN, account)])
    return gx.proxy("user3")


def _assert_nothing_ran(gx, r, marker):
    assert not gx.marker(marker).exists(), r


def test_grant_records_the_account_check(gx, pam_accounts):
    r = gx.run(["/usr/bin/id", "-un"], proxy=_as(gx, "gxtpamok"))
    gx.assert_granted(r)
    assert r.stdout == b"gxtpamok\n"
    pam = r.grants[0]["pam"]
    assert pam["service"] == inst.pam_service(gx.prefix)
    assert pam["account"] == "PAM_SUCCESS"


def test_expired_account_is_refused_before_anything_runs(gx, pam_accounts):
    acc.expire_user("gxtpamexp")
    mark = gx.marker("ran")
    r = gx.run([SH, "-c", f"touch {mark}"], proxy=_as(gx, "gxtpamexp"))
    gx.assert_refused(r, 203, "pam_account")
    rec = r.records[0]
    assert rec["detail"]["pam_code"] == "PAM_ACCT_EXPIRED", rec
    assert rec["account"] == "gxtpamexp"
    assert b"expired" in r.stderr.lower()
    _assert_nothing_ran(gx, r, "ran")
    acc.expire_user("gxtpamexp", "")          # and back: the same account runs again
    gx.assert_granted(gx.run(["/bin/true"], proxy=_as(gx, "gxtpamexp")))


def test_locked_password_alone_is_no_refusal_but_the_expiry_lock_is(gx, pam_accounts):
    """pam_unix's account check reads expiry and password aging, never the '!' of a locked
    password (useradd leaves every new account, pool accounts included, with '!': a lock
    cannot be told from "no password").  `usermod -L -e 1` (usermod(8)'s way to lock an
    account) is refused."""
    acc.lock_password("gxtpamlck")
    assert acc.shadow_password("gxtpamlck").startswith("!")
    gx.assert_granted(gx.run(["/bin/true"], proxy=_as(gx, "gxtpamlck")))
    acc.expire_user("gxtpamlck", "1970-01-02")
    r = gx.run([SH, "-c", f"touch {gx.marker('ran')}"], proxy=_as(gx, "gxtpamlck"))
    gx.assert_refused(r, 203, "pam_account")
    assert r.records[0]["detail"]["pam_code"] == "PAM_ACCT_EXPIRED"
    _assert_nothing_ran(gx, r, "ran")


def test_pam_access_rule_refuses_the_account_only(gx, pam_accounts):
    access = gx.prefix / "etc" / "glexec-py" / "access.conf"
    old = access.read_bytes()
    try:
        inst._write_root_file(access, b"-:gxtpamacc:ALL\n")
        r = gx.run([SH, "-c", f"touch {gx.marker('ran')}"], proxy=_as(gx, "gxtpamacc"))
        gx.assert_refused(r, 203, "pam_account")
        assert r.records[0]["detail"]["pam_code"] == "PAM_PERM_DENIED"
        _assert_nothing_ran(gx, r, "ran")
        gx.assert_granted(gx.run(["/bin/true"], proxy=_as(gx, "gxtpamok")))
    finally:
        inst._write_root_file(access, old)


def test_a_group_rule_and_the_fixed_origin(gx, pam_accounts):
    """The origin pam_access sees is the constant tty "glexec", never the caller's stdin."""
    access = gx.prefix / "etc" / "glexec-py" / "access.conf"
    old = access.read_bytes()
    try:
        inst._write_root_file(access, f"-:({GROUP}):glexec\n".encode())
        gx.assert_refused(gx.run(["/bin/true"], proxy=_as(gx, "gxtpamok")), 203, "pam_account")
        inst._write_root_file(access, f"-:({GROUP}):ALL EXCEPT glexec\n".encode())
        gx.assert_granted(gx.run(["/bin/true"], proxy=_as(gx, "gxtpamok")))
    finally:
        inst._write_root_file(access, old)


def _limits(text):
    out = {}
    for line in text.decode().splitlines()[1:]:
        name, rest = line[:26].strip(), line[26:].split()
        out[name] = (rest[0], rest[1])
    return out


@pytest.fixture
def limits_file():
    path = Path("/etc/security/limits.d") / f"gxt-test-{secrets.token_hex(4)}.conf"
    yield path
    path.unlink(missing_ok=True)


def test_pam_limits_lower_the_payloads_limits_and_never_lift_the_callers(gx, pam_accounts, limits_file):
    """pam_limits (Debian 1.5.2) resets every resource limits.conf does not name to pid 1's
    limits: the payload gets PAM's value only where it is stricter than the caller's."""
    inst._write_root_file(limits_file, b"gxtpamlim soft nofile 321\ngxtpamlim hard nofile 654\n"
                          b"gxtpamlim soft core 4096\ngxtpamlim hard core 8192\n")
    old = resource.getrlimit(resource.RLIMIT_MSGQUEUE)
    resource.setrlimit(resource.RLIMIT_MSGQUEUE, (12345, old[1]))   # the caller's own
    try:
        r = gx.run(["/bin/cat", "/proc/self/limits"], proxy=_as(gx, "gxtpamlim"))
    finally:
        resource.setrlimit(resource.RLIMIT_MSGQUEUE, old)
    gx.assert_granted(r)
    lim = _limits(r.stdout)
    assert lim["Max open files"] == ("321", "654"), lim
    # core: limits.conf asks for more than the caller's soft limit: the caller's holds
    caller_core = resource.getrlimit(resource.RLIMIT_CORE)
    assert lim["Max core file size"][0] == str(caller_core[0]) or caller_core[0] < 0, lim
    # msgqueue: not in limits.conf, reset by pam_limits to pid 1's; the caller's lower one holds
    assert lim["Max msgqueue size"][0] == "12345", lim
    assert r.grants[0]["pam"]["limits"] == {str(resource.RLIMIT_NOFILE): [321, 654]}
    # without a limits entry the account runs with the caller's limits
    r2 = gx.run(["/bin/cat", "/proc/self/limits"], proxy=_as(gx, "gxtpamok"))
    gx.assert_granted(r2)
    assert _limits(r2.stdout)["Max open files"] != ("321", "654")
    assert "limits" not in r2.grants[0]["pam"]


def test_payload_stays_in_the_callers_cgroup_and_session(gx, pam_accounts):
    script = gx.script("where.sh", "cat /proc/self/cgroup; echo sid=$(cut -d' ' -f6 /proc/self/stat)\n")
    r = gx.run([SH, str(script)], proxy=_as(gx, "gxtpamok"))
    gx.assert_granted(r)
    text = r.stdout.decode()
    cgroup, _, sid = text.rpartition("sid=")
    assert cgroup == Path(f"/proc/{os.getpid()}/cgroup").read_text(), text
    assert int(sid) == r.grants[0]["caller"]["sid"] == r.pid


def test_no_pam_descriptor_leaks_into_the_payload(gx, pam_accounts):
    r = gx.run(["/bin/ls", "-1", "/proc/self/fd"], proxy=_as(gx, "gxtpamok"))
    gx.assert_granted(r)
    assert r.stdout.split() == [b"0", b"1", b"2", b"3"], r


def test_session_is_closed_after_the_payload_ends(gx, pam_accounts):
    """pam_exec in the session stack logs open and close (as root, into a root dir); the
    payload logs when it ends: open < payload end < close."""
    logdir = gx.dir("pamlog", owner="root", mode=0o755)
    log = logdir / "pam.log"
    hook = gx.script("hook.sh", f'#!/bin/sh\necho "$PAM_TYPE $PAM_USER $PAM_RUSER $PAM_TTY '
                     f'$(date +%s.%N)" >> {log}\n', owner="root", mode=0o755)
    text = (inst.REPO_ROOT / "packaging" / "pam.d" / "glexec").read_text()
    text = text.replace("/etc/glexec-py/", f"{gx.prefix}/etc/glexec-py/")
    inst.install_pam_service(gx.prefix, text + f"session required pam_exec.so {hook}\n")
    try:
        r = gx.run([SH, "-c", f"sleep 0.3; date +%s.%N > {gx.marker('payload')}"],
                   proxy=_as(gx, "gxtpamok"))
    finally:
        inst.install_pam_service(gx.prefix)
    gx.assert_granted(r)
    lines = [line.split() for line in log.read_text().splitlines()]
    assert [x[:4] for x in lines] == [["open_session", "gxtpamok", "gxtpilot", "glexec"],
                                      ["close_session", "gxtpamok", "gxtpilot", "glexec"]], lines
    ended = float(gx.marker("payload").read_text())
    assert float(lines[0][4]) < ended < float(lines[1][4])
    assert r.ends[0]["pam_close"] == "PAM_SUCCESS"


@pytest.mark.parametrize("stack", [
    "session optional pam_systemd.so\n",
    "-session optional /lib/x86_64-linux-gnu/security/pam_systemd.so\n",
    "@include common-session\n",             # Debian's: pulls in pam_systemd
])
def test_a_stack_with_pam_systemd_is_refused(gx, pam_accounts, stack):
    text = "account required pam_unix.so\nsession required pam_limits.so\n" + stack
    inst.install_pam_service(gx.prefix, text)
    try:
        r = gx.run([SH, "-c", f"touch {gx.marker('ran')}"], proxy=_as(gx, "gxtpamok"))
    finally:
        inst.install_pam_service(gx.prefix)
    gx.assert_refused(r, 202, "pam_service")
    _assert_nothing_ran(gx, r, "ran")


def test_missing_service_file_fails_closed(gx, pam_accounts):
    gx.config(pam={"service": "gxt-test-missing-" + secrets.token_hex(4)})
    r = gx.run([SH, "-c", f"touch {gx.marker('ran')}"], proxy=_as(gx, "gxtpamok"))
    gx.assert_refused(r, 202, "pam_service")
    _assert_nothing_ran(gx, r, "ran")


def test_unsafe_service_file_fails_closed(gx, pam_accounts):
    path = inst.PAM_DIR / inst.pam_service(gx.prefix)
    os.chmod(path, 0o666)
    try:
        r = gx.run(["/bin/true"], proxy=_as(gx, "gxtpamok"))
    finally:
        os.chmod(path, 0o644)
    gx.assert_refused(r, 202, "untrusted_install")


def test_pam_can_be_switched_off(gx, pam_accounts):
    acc.expire_user("gxtpamexp")
    try:
        gx.config(pam={"enabled": False})
        r = gx.run(["/bin/true"], proxy=_as(gx, "gxtpamexp"))
        gx.assert_granted(r)
        assert "pam" not in r.grants[0]
    finally:
        acc.expire_user("gxtpamexp", "")
