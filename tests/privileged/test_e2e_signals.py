"""End-to-end: linger parent forwards signals to the payload, from root and from the pilot."""
import os
import signal
import time

import pytest

from tests.privileged import payloads as P
from tests.support.runas import run_as

FORWARDED = ["TERM", "INT", "HUP", "QUIT", "USR1", "USR2"]


def _wait_for(path, timeout=15.0, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return True
        if proc is not None and proc.poll() is not None:
            return path.exists()
        time.sleep(0.02)
    return False


def _start_trap(gx, sig):
    trap = gx.script("trap.sh", P.TRAP)
    p = gx.popen([str(trap), str(gx.out), sig])
    ready = gx.out / "ready"
    if not _wait_for(ready, proc=p):
        p.kill()
        out, err = p.communicate()
        pytest.fail(f"payload never became ready: rc={p.returncode} stdout={out!r} stderr={err!r}")
    return p


def _finish(gx, p, sig, before):
    try:
        out, err = p.communicate(timeout=15)
    except Exception:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        pytest.fail(f"glexec did not end after SIG{sig} (not forwarded?) stderr={err!r}")
    assert (gx.out / f"got-{sig}").exists(), f"SIG{sig} never reached the payload: {err!r}"
    assert p.returncode == 0, (p.returncode, out, err)
    assert err == b""
    recs = gx.audit()[before:]
    assert [r["event"] for r in recs] == ["grant", "end"], recs
    assert recs[1]["status"] == 0


@pytest.mark.parametrize("sig", FORWARDED)
def test_signal_from_root_is_forwarded(gx, sig):
    before = len(gx.audit())
    p = _start_trap(gx, sig)
    os.kill(p.pid, getattr(signal, "SIG" + sig))
    _finish(gx, p, sig, before)


@pytest.mark.parametrize("sig", ["TERM", "USR1", "HUP"])
def test_signal_from_pilot_is_forwarded(gx, sig):
    before = len(gx.audit())
    p = _start_trap(gx, sig)
    k = run_as("gxtpilot", ["/bin/sh", "-c", f"kill -{sig} {p.pid}"])
    assert k.returncode == 0, f"the pilot may not signal its own glexec: {k.stderr!r}"
    _finish(gx, p, sig, before)


def test_outsider_cannot_signal_glexec(gx):
    before = len(gx.audit())
    p = _start_trap(gx, "TERM")
    k = run_as("gxtoutsider", ["/bin/sh", "-c", f"kill -TERM {p.pid}"])
    assert k.returncode != 0
    time.sleep(0.3)
    assert p.poll() is None and not (gx.out / "got-TERM").exists()
    os.kill(p.pid, signal.SIGTERM)
    _finish(gx, p, "TERM", before)


def test_payload_killed_while_lingering_gives_137_and_end_record(gx):
    before = len(gx.audit())
    p = _start_trap(gx, "TERM")
    payload_pid = int((gx.out / "ready").read_text())
    os.kill(payload_pid, signal.SIGKILL)
    out, err = p.communicate(timeout=15)
    assert p.returncode == 137, (out, err)
    recs = gx.audit()[before:]
    assert [r["event"] for r in recs] == ["grant", "end"]
    assert recs[1]["status"] == 137 and recs[1]["payload_pid"] == payload_pid
