"""glexec-sweep as root on real accounts and a real tree (see conftest.py for scope)."""
import fcntl
import json
import os
import subprocess
import time

import pytest

from tests.sweep.conftest import LAUNCHER, run_sweep, write_config
from tests.support.runas import run_as

OLD = 1577836800          # 2020-01-01
A, B, OTHER = "gxtsw01", "gxtsw02", "gxtswother"


def mk(path, uid, *, old=True, data=b"x", mode=0o644):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    os.write(fd, data)
    os.fchown(fd, uid, uid)
    os.fchmod(fd, mode)
    os.close(fd)
    if old:
        os.utime(path, (OLD, OLD), follow_symlinks=False)


def config(workdir, roots, *, extra="", pool=(A, B, OTHER), age="1d", age_by="am",
           gridmapdir=""):
    """glexec.yaml with a 'sweep:' section (the state dir, audit file and gridmapdir are
    glexec.yaml's own)."""
    from tests.support.glexec_yaml import with_section
    os.makedirs(f"{workdir}/state", exist_ok=True)
    text = f"pool: {json.dumps(list(pool))}\nroots:\n"
    for r in roots:
        text += f"  - path: {r}\n    age: {age}\n    age_by: {age_by}\n"
    return write_config(f"{workdir}/glexec.yaml", with_section(
        "sweep", text + extra, state_dir=f"{workdir}/state",
        audit_file=f"{workdir}/audit.jsonl", gridmapdir=gridmapdir))


def tree(workdir):
    t = f"{workdir}/tree"
    os.mkdir(t, 0o1777)
    os.chmod(t, 0o1777)          # like /tmp: sticky, world-writable, root-owned
    return t


def test_old_young_others_links_names_sticky(sweep_accounts, workdir):
    a, other = sweep_accounts[A].uid, sweep_accounts[OTHER].uid
    t = tree(workdir)
    mk(f"{t}/old", a)
    mk(f"{t}/young", a, old=False)
    mk(f"{t}/rootfile", 0)
    mk(f"{t}/otheruser", 4242)                      # not a pool uid at all
    os.makedirs(f"{workdir}/secret")
    mk(f"{workdir}/secret/target", 0, data=b"root data")
    os.symlink(f"{workdir}/secret/target", f"{t}/link-to-root")
    os.lchown(f"{t}/link-to-root", a, a)
    os.utime(f"{t}/link-to-root", (OLD, OLD), follow_symlinks=False)
    os.symlink(f"{workdir}/secret", f"{t}/dirlink")       # symlinked directory
    os.lchown(f"{t}/dirlink", a, a)
    os.utime(f"{t}/dirlink", (OLD, OLD), follow_symlinks=False)
    weird = [b"new\nline", b"bad\xff\xfeutf8", b"-rf", b"--help", b" space", b"\x1b[31mred"]
    for w in weird:
        mk(os.fsencode(t) + b"/" + w, a)
    mk(f"{t}/sticky", a, mode=0o1644)
    os.makedirs(f"{t}/d1/d2")
    for d in (f"{t}/d1/d2", f"{t}/d1"):
        os.chown(d, a, a)
    mk(f"{t}/d1/d2/f", a)
    os.utime(f"{t}/d1/d2", (OLD, OLD))
    os.utime(f"{t}/d1", (OLD, OLD))
    mk(f"{t}/otherpool", other)
    cfg = config(workdir, [t])

    dry = run_sweep(cfg, "--dry-run", "--account", A)
    assert dry.returncode == 1, dry.stderr            # young + sticky are left: "files_remain"
    out = dry.stdout.decode()
    assert "remove  uid=%d" % a in out and "new\\x0aline" in out and "bad\\xff\\xfeutf8" in out
    assert "\x1b" not in out and "# sticky bit (opt-out)" in out and "# other owner" in out
    assert os.path.exists(f"{t}/old")                 # dry run removed nothing

    r = run_sweep(cfg, "--account", A, "--json")
    assert r.returncode == 1, r.stderr
    summary = json.loads(r.stdout.decode().splitlines()[-1])
    [acc] = summary["swept"]
    assert acc["account"] == A and acc["state"] == "files_remain"
    left = set(os.listdir(os.fsencode(t)))
    assert left == {b"young", b"rootfile", b"otheruser", b"sticky", b"otherpool"}, left
    assert open(f"{workdir}/secret/target", "rb").read() == b"root data"      # target untouched
    assert os.path.isdir(f"{workdir}/secret")
    assert os.stat(f"{t}/otherpool").st_uid == other                          # other pool account: only --account A
    assert acc["as_root"] == 0            # sticky /tmp-like dir: everything removed as the owner
    # the audit record and the state record
    recs = [json.loads(x) for x in open(f"{workdir}/audit.jsonl")]
    assert recs[-1]["event"] == "sweep" and recs[-1]["account"] == A and recs[-1]["removed"] == 10
    st = json.load(open(f"{workdir}/state/sweep/{A}.json"))
    assert st["state"] == "files_remain" and st["uid"] == a
    assert os.stat(f"{workdir}/state/sweep/{A}.json").st_mode & 0o777 == 0o600

    # once the young and sticky files are gone, the account is marked "no files"
    os.unlink(f"{t}/young")
    os.unlink(f"{t}/sticky")
    r = run_sweep(cfg, "--account", A)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert json.load(open(f"{workdir}/state/sweep/{A}.json"))["state"] == "no_files"


def test_mounts_not_crossed(sweep_accounts, workdir):
    a = sweep_accounts[A].uid
    t = tree(workdir)
    os.mkdir(f"{t}/tmpfs")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=1777", "gxtsweeptest", f"{t}/tmpfs"], check=True)
    mk(f"{t}/tmpfs/inside", a)
    os.makedirs(f"{workdir}/elsewhere")
    mk(f"{workdir}/elsewhere/bound", a)
    os.mkdir(f"{t}/bind")
    subprocess.run(["mount", "--bind", f"{workdir}/elsewhere", f"{t}/bind"], check=True)
    mk(f"{t}/outside", a)
    r = run_sweep(config(workdir, [t]), "--account", A, "--dry-run")
    assert b"other file system" in r.stdout and b"mount point" in r.stdout
    r = run_sweep(config(workdir, [t]), "--account", A)
    assert r.returncode == 0, r.stderr
    assert not os.path.exists(f"{t}/outside")
    assert os.path.exists(f"{t}/tmpfs/inside") and os.path.exists(f"{t}/bind/bound")


@pytest.mark.parametrize("root", ["/", '""', "relative", "/var/lib/../../"])
def test_bad_root_refused(sweep_accounts, workdir, root):
    cfg = config(workdir, [root])
    r = run_sweep(cfg)
    assert r.returncode == 2 and b"root" in r.stderr.lower()
    assert not os.path.exists(f"{workdir}/state/sweep")      # nothing done at all


def test_pool_with_root_refused(sweep_accounts, workdir):
    t = tree(workdir)
    for pool in ([0], ["root"], []):
        r = run_sweep(config(workdir, [t], pool=pool))
        assert r.returncode == 2, r.stderr


def test_root_through_symlink_refused(sweep_accounts, workdir):
    t = tree(workdir)
    os.symlink(t, f"{workdir}/via-link")
    mk(f"{t}/old", sweep_accounts[A].uid)
    r = run_sweep(config(workdir, [f"{workdir}/via-link"]))
    assert r.returncode == 4 and b"symlink" in r.stderr
    assert os.path.exists(f"{t}/old")


def test_second_concurrent_run_refused(sweep_accounts, workdir):
    t = tree(workdir)
    mk(f"{t}/old", sweep_accounts[A].uid)
    cfg = config(workdir, [t])
    os.makedirs(f"{workdir}/state/sweep", mode=0o700)
    fd = os.open(f"{workdir}/state/sweep/.lock", os.O_RDWR | os.O_CREAT, 0o600)
    # a real first instance holding the lock: a child process that flocks and waits
    holder = subprocess.Popen(["flock", "-x", f"{workdir}/state/sweep/.lock", "sleep", "30"],
                              start_new_session=True)
    try:
        for _ in range(100):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(fd, fcntl.LOCK_UN)
                time.sleep(0.05)
            except BlockingIOError:
                break
        r = run_sweep(cfg)
        assert r.returncode == 3 and b"another glexec-sweep is running" in r.stderr
        assert os.path.exists(f"{t}/old")
    finally:
        os.killpg(holder.pid, 9)              # flock and the sleep that inherited the lock
        holder.wait()
        os.close(fd)
    assert run_sweep(cfg, "--account", A).returncode == 0
    assert not os.path.exists(f"{t}/old")


def test_active_lease_and_processes_spared(sweep_accounts, workdir):
    from glexec_py.effects.gridmapdir import GridmapDir
    a, b = sweep_accounts[A].uid, sweep_accounts[B].uid
    gmd = f"{workdir}/gridmapdir"
    os.mkdir(gmd, 0o755)
    for n in (A, B):
        os.close(os.open(f"{gmd}/{n}", os.O_CREAT | os.O_WRONLY, 0o644))
    with GridmapDir(gmd) as gd:
        account, _lease, _ = gd.acquire(b"/DC=test/CN=Sweep Holder", b"gxtsw")
    assert account == A.encode()
    t = tree(workdir)
    mk(f"{t}/a-old", a)
    mk(f"{t}/b-old", b)
    mk(f"{t}/o-old", sweep_accounts[OTHER].uid)
    sleeper = subprocess.Popen(["setpriv", f"--reuid={sweep_accounts[OTHER].uid}",
                                f"--regid={sweep_accounts[OTHER].uid}", "--clear-groups", "sleep", "60"])
    try:
        time.sleep(0.2)
        cfg = config(workdir, [t], gridmapdir=gmd)
        r = run_sweep(cfg, "--json")
        assert r.returncode == 0, r.stderr
        summary = json.loads(r.stdout.decode().splitlines()[-1])
        spared = {s["account"]: s["why"] for s in summary["spared"]}
        assert spared == {A: "active lease", OTHER: "has processes"}
        assert os.path.exists(f"{t}/a-old") and os.path.exists(f"{t}/o-old")
        assert not os.path.exists(f"{t}/b-old")
        assert not os.path.exists(f"{workdir}/state/sweep/{A}.json")
    finally:
        sleeper.kill()
        sleeper.wait()


MQ_CREATE = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.mq_open.restype = ctypes.c_int
fd = libc.mq_open(sys.argv[1].encode(), os.O_CREAT | os.O_RDWR, 0o600, None)
sys.exit(0 if fd >= 0 else ctypes.get_errno())
"""


def test_ipc_mqueue_devshm_removed(sweep_accounts, workdir):
    a, b = sweep_accounts[A].uid, sweep_accounts[B].uid
    for args in (["-M", "4096"], ["-Q"], ["-S", "2"]):
        p = run_as(A, ["ipcmk", *args])
        assert p.returncode == 0, p.stderr
    p = run_as(B, ["ipcmk", "-Q"])                 # another account's queue: must stay
    assert p.returncode == 0
    b_queue = int(p.stdout.split()[-1])
    mq = f"{workdir}/mqueue"
    os.mkdir(mq)
    subprocess.run(["mount", "-t", "mqueue", "none", mq], check=True)
    qname = f"/gxtsweep{os.getpid()}"
    assert run_as(A, ["/usr/bin/python3.11", "-c", MQ_CREATE, qname]).returncode == 0
    assert os.path.exists(mq + qname)
    shm = f"/dev/shm/gxtsweep-{os.getpid()}"
    assert run_as(A, ["/bin/sh", "-c", f"echo x > {shm}"]).returncode == 0
    t = tree(workdir)
    cfg = config(workdir, [t], pool=[A], extra=f"mqueue_dir: {mq}\ndevshm_dir: /dev/shm\n")
    try:
        r = run_sweep(cfg, "--json")
        assert r.returncode == 0, r.stderr
        [acc] = json.loads(r.stdout.decode().splitlines()[-1])["swept"]
        assert sorted(x.split(":")[0] for x in acc["ipc"]) == ["msg", "sem", "shm"]
        from glexec_tools.sweep.apply import sysv_objects
        assert not [o for o in sysv_objects() if a in (o[2], o[3])]
        assert [o for o in sysv_objects() if o[0] == "msg" and o[1] == b_queue]
        assert not os.path.exists(mq + qname) and not os.path.exists(shm)
        recs = [json.loads(x) for x in open(f"{workdir}/audit.jsonl")]
        assert len(recs[-1]["ipc"]) == 3 and recs[-1]["state"] == "no_files"
    finally:
        subprocess.run(["ipcrm", "-q", str(b_queue)], check=False)
        if os.path.exists(shm):
            os.unlink(shm)


def test_nonroot_refused(sweep_accounts, workdir):
    cfg = config(workdir, [tree(workdir)])
    os.chmod(workdir, 0o755)
    r = run_as(A, [LAUNCHER, "--config", cfg])
    assert r.returncode == 2 and b"root only" in r.stderr
