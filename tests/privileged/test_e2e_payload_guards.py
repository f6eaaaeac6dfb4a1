"""End-to-end: what the payload must not get from the pilot (issue 9 §4).

* It keeps the pilot's session and process group (the batch system needs them), so it shares
  the pilot's terminal: TIOCSTI/TIOCLINUX must fail with EPERM (seccomp, payload.tty_guard).
* The caller's inheritable and ambient capabilities are cleared before the switch (they used
  to make every call fail with 126) and the payload starts with every set empty.
* A lingering parent SIGKILLed by the pilot takes the payload with it (PR_SET_PDEATHSIG).
"""
import fcntl
import json
import os
import pwd
import signal
import subprocess
import sys
import termios
import time

import pytest

from tests.privileged import payloads as P
from tests.support.runas import build_env, popen_as, run_as
from tests.support.ttyattack import ABI_ATTACK, INJECT, TTY_ATTACK

# The pilot side: make the pty on fd 0 our controlling terminal, then run glexec.
PILOT_ON_TTY = r'''
import fcntl, os, sys, termios
fcntl.ioctl(0, termios.TIOCSCTTY, 0)
os.execv(sys.argv[1], sys.argv[1:])
'''


def _tty_call(gx, *, guard, attack=None):
    if guard is not None:
        gx.config(payload={"tty_guard": guard})
    attack = attack or gx.script("tty_attack.py", TTY_ATTACK)
    result = gx.out / "tty.json"
    master, slave = os.openpty()
    try:
        proxy = gx.proxy("user1")
        before = len(gx.audit())
        p = popen_as("gxtpilot", [sys.executable, "-c", PILOT_ON_TTY, gx.glexec, str(attack), str(result)],
                     env={"GLEXEC_CLIENT_CERT": str(proxy)}, stdin=slave, stdout=slave, stderr=slave,
                     cwd=str(gx.box))
        rc = p.wait(timeout=30)
        # Whatever the payload pushed is now in the terminal's input queue, where the pilot's
        # shell would read it: read it from the slave side ourselves.
        time.sleep(0.2)
        os.set_blocking(slave, False)
        try:
            queued = os.read(slave, 4096)
        except BlockingIOError:
            queued = b""
    finally:
        os.close(master)
        os.close(slave)
    recs = gx.audit()[before:]
    assert rc == 0, (rc, recs)
    assert [r["event"] for r in recs] == ["grant", "end"], recs
    return json.loads(result.read_text()), queued


def test_payload_cannot_type_into_the_pilots_terminal(gx):
    res, queued = _tty_call(gx, guard=None)      # the default configuration
    assert res == {"tiocsti": 1, "tioclinux": 1, "tiocsti_high": 1}, res   # 1 = EPERM
    assert INJECT[:3] not in queued and b"x" not in queued, queued


def _legacy_tiocsti():
    try:
        with open("/proc/sys/dev/tty/legacy_tiocsti") as f:
            return f.read().strip() == "1"
    except FileNotFoundError:
        return True     # before Linux 6.2 TIOCSTI is always allowed on one's own terminal


def test_without_the_guard_the_injection_arrives(gx):
    """The check above can fail: with tty_guard off the same payload types into the pty."""
    if not _legacy_tiocsti():
        pytest.skip("dev.tty.legacy_tiocsti=0: the kernel itself refuses TIOCSTI here")
    res, queued = _tty_call(gx, guard=False)
    assert res["tiocsti"] == 0, res
    assert INJECT in queued, queued


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the i386/x32 ABIs exist on x86-64 only")
def test_tty_guard_covers_the_i386_and_x32_abis(gx, cc):
    attack = cc("abi_attack", ABI_ATTACK)
    res, queued = _tty_call(gx, guard=None, attack=attack)
    assert res["i386"] == -1 and res["x32"] == -1, res            # EPERM from the filter
    assert res["x32_tcgets"] in (0, -38), res                     # other ioctls pass (ENOSYS: x32 off)
    assert b"i386" not in queued and b"X" not in queued, queued
    if _legacy_tiocsti():                                         # and the test can fail:
        res, queued = _tty_call(gx, guard=False, attack=attack)
        assert res["i386"] in (0, -38), res                       # -38: no IA32 emulation here
        assert res["i386"] == -38 or b"i386\n" in queued, (res, queued)


def _as_pilot_with_caps(gx, argv, env):
    """Run argv as gxtpilot holding CAP_NET_RAW in its inheritable and ambient sets."""
    pilot = gx.accounts.pilot
    return subprocess.run(
        ["setpriv", f"--reuid={pilot.uid}", f"--regid={pilot.gid}", "--init-groups",
         "--inh-caps=+net_raw", "--ambient-caps=+net_raw", *argv],
        env=build_env(env), cwd=str(gx.box), capture_output=True, timeout=30,
        start_new_session=True)


def test_caller_inheritable_and_ambient_caps_are_cleared(gx):
    dump = gx.script("dump.py", P.DUMP)
    proxy = gx.proxy("user1")
    probe = _as_pilot_with_caps(gx, ["/bin/grep", "^Cap", "/proc/self/status"], {})
    assert b"CapInh:\t0000000000002000" in probe.stdout and b"CapAmb:\t0000000000002000" in probe.stdout, \
        probe.stdout  # the caller really holds them
    before = len(gx.audit())
    r = _as_pilot_with_caps(gx, [gx.glexec, str(dump)], {"GLEXEC_CLIENT_CERT": str(proxy)})
    recs = gx.audit()[before:]
    assert r.returncode == 0 and r.stderr == b"", (r, recs)
    d = P.load_dump(r.stdout)
    assert d["resuid"] == [gx.accounts.target1.uid] * 3
    assert P.caps(d) == {"CapInh": 0, "CapPrm": 0, "CapEff": 0, "CapAmb": 0}, d["status"]
    assert [x["event"] for x in recs] == ["grant", "end"], recs


SLEEPER = r'''#!/bin/sh
echo $$ > "$1/payload.tmp" && mv "$1/payload.tmp" "$1/payload"
exec sleep 60
'''


def _alive(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            return "\nState:\tZ" not in f.read()
    except FileNotFoundError:
        return False


def test_payload_dies_with_its_sigkilled_parent(gx):
    sleeper = gx.script("sleeper.sh", SLEEPER)
    before = len(gx.audit())
    p = gx.popen([str(sleeper), str(gx.out)])
    marker = gx.out / "payload"
    deadline = time.monotonic() + 15
    while not marker.exists() and time.monotonic() < deadline and p.poll() is None:
        time.sleep(0.02)
    assert marker.exists(), p.communicate()
    payload = int(marker.read_text())
    assert _alive(payload)
    assert pwd.getpwuid(os.stat(f"/proc/{payload}").st_uid).pw_name == "gxttarget1"
    k = run_as("gxtpilot", ["/bin/kill", "-KILL", str(p.pid)])   # the pilot kills its glexec
    assert k.returncode == 0, k
    p.wait(timeout=10)
    assert p.returncode == -signal.SIGKILL
    deadline = time.monotonic() + 5
    while _alive(payload) and time.monotonic() < deadline:
        time.sleep(0.02)
    alive = _alive(payload)
    if alive:
        os.kill(payload, signal.SIGKILL)
    assert not alive, "the payload outlived its SIGKILLed glexec parent"
    recs = gx.audit()[before:]
    # The grant is on record; no end record: the parent was killed (and the payload with it).
    assert [r["event"] for r in recs] == ["grant"], recs
    assert recs[0]["account"] == "gxttarget1"


PDEATHSIG_PROBE = r'''#!/usr/bin/python3
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
sig = ctypes.c_int(-1)
assert libc.prctl(2, ctypes.byref(sig), 0, 0, 0) == 0   # PR_GET_PDEATHSIG
print(sig.value)
'''


@pytest.mark.parametrize("linger,want", [(True, signal.SIGKILL), (False, 0)])
def test_death_signal_only_under_a_lingering_parent(gx, linger, want):
    """In place (linger: false) there is no glexec parent: the payload's parent is the
    pilot, whose end must not kill it by our doing (the batch system owns that)."""
    gx.config(payload={"linger": linger})
    probe = gx.script("pdeathsig.py", PDEATHSIG_PROBE)
    r = gx.run([str(probe)])
    gx.assert_granted(r, linger=linger, stderr=b"")
    assert int(r.stdout) == want
