"""The target-side actions of glexec-job run (jobdir.py), in process: the sweep signals
only the running account's processes below the given ancestor (and never the processes it
runs under), keeps signalling until none is left; wipe removes a tree the payload made
hostile (unreadable directories, symlinks out) and checks it is gone; du counts it."""
import argparse
import json
import os
import subprocess
import time

import pytest

from glexec_tools.job import jobdir


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().split(b") ")[1][:1] not in (b"Z", b"X")
    except FileNotFoundError:
        return False


def _children(pid):
    out = []
    for t in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{t}/children") as f:
            out += [int(x) for x in f.read().split()]
    return out


@pytest.fixture
def tree():
    """sh (ancestor) -> [sleep as this uid, sleep as nobody], and a sleep of this uid outside."""
    if os.geteuid() != 0:
        pytest.skip("needs root to start a process of another account")
    anc = subprocess.Popen(["/bin/sh", "-c", "sleep 300 & setpriv --reuid=65534 --regid=65534 --clear-groups "
                            "sleep 300 & wait"])
    outside = subprocess.Popen(["sleep", "300"])
    end = time.monotonic() + 10
    def settled():      # both started, the second one already switched to nobody and exec'd sleep
        kids = _children(anc.pid)
        return len(kids) == 2 and all(open(f"/proc/{k}/comm").read() == "sleep\n" for k in kids) \
            and {os.stat(f"/proc/{k}").st_uid for k in kids} == {os.geteuid(), 65534}
    while not settled() and time.monotonic() < end:
        time.sleep(0.02)
    kids = _children(anc.pid)
    assert len(kids) == 2
    yield anc, outside, kids
    for p in kids:
        try:
            os.kill(p, 9)
        except ProcessLookupError:
            pass
    outside.kill()
    anc.kill()
    anc.wait()
    outside.wait()


def test_sweep_signals_only_own_processes_below_the_ancestor(tree, capsys):
    anc, outside, kids = tree
    own = [p for p in kids if os.stat(f"/proc/{p}").st_uid == os.geteuid()]
    other = [p for p in kids if p not in own]
    assert len(own) == 1 and len(other) == 1
    rc = jobdir.sweep(argparse.Namespace(ancestor=anc.pid, all=False, signal=9))
    res = json.loads(capsys.readouterr().out)
    assert rc == 0 and res["left"] == 0
    time.sleep(0.1)
    assert not _alive(own[0])
    assert _alive(other[0]), "another account's process was signalled"
    assert _alive(anc.pid)                     # the ancestor itself is not below itself
    assert outside.poll() is None, "a process outside the ancestor was signalled"


def test_sweep_needs_one_scope():
    assert jobdir.run(argparse.Namespace(action="sweep", ancestor=None, all=False, signal=9)) == jobdir.EXIT_REFUSED


def test_wipe_and_du_of_a_hostile_tree(tmp_path, capsys):
    job = tmp_path / "glexec-job.x"
    job.mkdir(0o700)
    (job / "a" / "b").mkdir(parents=True)
    (job / "a" / "b" / "f").write_bytes(b"x" * 10000)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("keep")
    (job / "link").symlink_to(outside)
    (job / "a" / "fifo").touch()
    os.chmod(job / "a" / "b", 0)
    os.chmod(job / "a", 0)
    try:
        assert jobdir.du(argparse.Namespace(dir=str(job))) == 0
        res = json.loads(capsys.readouterr().out)
        assert res["entries"] == 5 and res["bytes"] >= 10000
        assert jobdir.wipe(argparse.Namespace(dir=str(job))) == 0
        res = json.loads(capsys.readouterr().out)
    finally:
        if job.exists():
            subprocess.run(["chmod", "-R", "u+rwx", str(job)])
    assert res == {"gone": True, "removed": 5}
    assert not job.exists() and (outside / "keep").read_text() == "keep"
