"""The file-system semantics a gridmapdir relies on (glexec_py/effects/gridmapdir.py),
checked against a real NFS server: NFS-Ganesha 4.3 (VFS FSAL over this machine's file
system), driven by libnfs, a userspace client, from several client processes, each its own
NFS client like one worker node.  NFSv4.0 on the host's 127.0.0.1 (the test process is a
client too); NFSv3 in a private network namespace with its own rpcbind (worker processes
only).

What this covers: the *server's* answers to the operations the gridmapdir issues (LINK,
REMOVE, RENAME, exclusive CREATE, GETATTR's link count / fileid / times, SETATTR of times,
READDIR file ids (NFSv3), WRITE/READ/truncate/COMMIT, NFSv4 byte-range LOCK/LOCKU and lease
expiry) and their atomicity under concurrent clients.  What it does not: the Linux kernel
NFS client the engine would actually use (its attribute and lookup caches, close-to-open,
lock polling, mount options), NLM (NFSv3 locks), readdir file ids over NFSv4 (libnfs reports
none), and the engine itself on NFS (the kernel here has no NFS client).  See
docs/gridmapdir-nfs.md."""
import json
import os
import stat
import subprocess
import sys
import time

import pytest

from tests.nfs import ganesha
from tests.nfs.libnfs import F_UNLCK, Client
from tests.nfs.worker import try_lock

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORKERS = 4
ROUNDS = 25


def _serve(nfs3):
    srv = ganesha.start_server(nfs3=nfs3)
    try:
        yield srv
    finally:
        srv.destroy()
    assert srv.proc.poll() is not None, "ganesha.nfsd still running"


@pytest.fixture(scope="module")
def server():
    """NFSv4 on the host's 127.0.0.1: the test process itself is a client too."""
    yield from _serve(nfs3=False)


@pytest.fixture(scope="module")
def server3():
    """NFSv3 (and v4) in a private network namespace with its own rpcbind: only worker
    processes started there (``server3.prefix``) are clients."""
    yield from _serve(nfs3=True)


@pytest.fixture(params=["nfs4", "nfs3"])
def any_server(request):
    return request.getfixturevalue("server3" if request.param == "nfs3" else "server")


@pytest.fixture
def node(server):
    """Two clients, ``a`` and ``b``: two nodes sharing the export."""
    a = Client.connect(server.target, f"glexec-nfscheck-a-{os.getpid()}")
    b = Client.connect(server.target, f"glexec-nfscheck-b-{os.getpid()}")
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def touch(c, path, mode=0o644):
    """A new empty file.  Exclusive: libnfs 4.0.0's NFSv4 create without O_EXCL ignores
    the mode (0600) and refuses an existing name anyway; with O_EXCL the mode is kept and
    the times hold the create verifier until someone sets them (the kernel client does)."""
    c.close_fh(c.create(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode))


def run_workers(server, op, rounds, gap=0.03, workers=WORKERS):
    """``workers`` client processes doing ``op``; round i starts together in all of them."""
    at = time.monotonic() + 2.0                  # after every process has connected
    procs = [subprocess.Popen(
        server.prefix + [sys.executable, "-m", "tests.nfs.worker", server.target, op, str(w),
                         str(rounds), repr(at), repr(gap)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for w in range(workers)]
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=300)
        assert p.returncode == 0, stderr[-2000:]
        out.append(json.loads(stdout.splitlines()[-1]))
    return [o["results"] for o in out]


def listing(server):
    """``{name: (d_ino, st_ino, st_nlink)}`` of the export, from a client of ``server``."""
    rows = run_workers(server, "report", 1, workers=1)[0][0]
    return {n: (d_ino, ino, nlink) for n, d_ino, ino, nlink in rows}


# --- link(): the lease itself --------------------------------------------------------------

def test_link_makes_a_second_name_seen_by_every_client(server, node):
    a, b = node
    touch(a, "/pool001")
    assert b.lstat("/pool001").st_nlink == 1
    a.link("/pool001", "/lease-dn1")
    lst, est = b.lstat("/lease-dn1"), b.lstat("/pool001")
    assert lst.st_ino == est.st_ino and lst.st_nlink == est.st_nlink == 2
    assert lst.is_reg() and lst.st_uid == 0      # root's, not squashed (entry_unsafe checks)
    assert os.lstat(os.path.join(server.export_dir, "lease-dn1")).st_nlink == 2
    a.unlink("/lease-dn1")                       # release
    assert b.lstat("/pool001").st_nlink == 1 and b.lstat_or_none("/lease-dn1") is None


def test_link_errors_are_the_ones_gridmapdir_handles(node):
    a, b = node
    touch(a, "/pool002")
    touch(a, "/pool003")
    a.link("/pool002", "/lease-dn2")
    with pytest.raises(FileExistsError):         # someone made our lease meanwhile
        b.link("/pool003", "/lease-dn2")
    assert b.lstat("/pool003").st_nlink == 1
    with pytest.raises(FileNotFoundError):       # entry removed meanwhile
        b.link("/pool-gone", "/lease-dn3")
    assert b.lstat_or_none("/lease-dn3") is None
    with pytest.raises(FileNotFoundError):       # _unlink: already released
        b.unlink("/lease-dn3")


def test_link_race_on_one_lease_name_has_exactly_one_winner(any_server):
    t0 = time.monotonic()
    results = run_workers(any_server, "link_race", ROUNDS)
    elapsed = time.monotonic() - t0
    names = listing(any_server)
    for i in range(ROUNDS):
        got = [results[w][i] for w in range(WORKERS)]
        assert sorted(got) == ["EEXIST"] * (WORKERS - 1) + ["won"], (i, got)
        winner = got.index("won")
        _, ino, nlink = names[f"race{i}.lease"]
        assert nlink == 2 and ino == names[f"race{i}.e{winner}"][1]
        for w in range(WORKERS):
            if w != winner:
                assert names[f"race{i}.e{w}"][2] == 1
    print(f"link race: {ROUNDS} rounds x {WORKERS} clients in {elapsed:.2f} s")


def test_post_link_check_lets_at_most_one_of_racing_links_to_one_entry_win(any_server):
    """Mappers that do not take the lock (LCMAPS, or a lock the client does not honour)
    link the same free entry: the link count the server reports makes every one of them
    but at most one back off, and the entry ends with exactly the winner's lease."""
    results = run_workers(any_server, "link_check", ROUNDS)
    names = listing(any_server)
    contended = nobody = 0
    for i in range(ROUNDS):
        got = [results[w][i] for w in range(WORKERS)]
        assert set(got) <= {"won", "backed_off"}, (i, got)
        won = got.count("won")
        assert won <= 1, (i, got)
        contended += got.count("backed_off") > 0
        nobody += won == 0
        assert names[f"check{i}.entry"][2] == 1 + won
        leases = [n for n in names if n.startswith(f"check{i}.lease")]
        assert leases == ([f"check{i}.lease{got.index('won')}"] if won else []), (i, got)
    assert contended, "no round had two links at once: the race was not exercised"
    print(f"post-link check: {contended}/{ROUNDS} rounds contended, {nobody} without a "
          "winner (all backed off: the caller retries)")


def test_single_client_link_unlink_utime_sequence(any_server):
    """The sequence the in-process tests below check over NFSv4, run by one client of
    either server (so NFSv3 gets it too)."""
    seen = run_workers(any_server, "basics", 1, workers=1)[0][0]
    assert seen["linked"] == [True, 2, 2, True, 0]
    assert (seen["link_exists"], seen["link_gone"], seen["unlink_gone"],
            seen["excl_exists"]) == ("EEXIST", "ENOENT", "ENOENT", "EEXIST")
    assert seen["other_count"] == 1
    assert seen["mtime"] == [1_700_000_000_123_456_000] * 2
    assert seen["released"] == [True, 1]


def test_nfs3_readdir_file_ids_are_the_inode_numbers_lstat_reports(server3):
    """``_other_name`` and the index find a lease's pool entry by readdir's d_ino and
    check it with lstat's st_ino: they must be the same numbers (NFSv3 READDIRPLUS;
    libnfs's NFSv4 readdir reports no file ids, so NFSv4 is not checked)."""
    run_workers(server3, "link_race", 2)
    names = listing(server3)
    assert len(names) >= 2 * WORKERS + 2
    for name, (d_ino, ino, _) in names.items():
        assert d_ino == ino, name
        assert ino == os.lstat(os.path.join(server3.export_dir, name)).st_ino, name


# --- the lease's time (last use; rollback's exact stamp) ------------------------------------

def test_utime_exact_stamp_is_seen_through_both_names_and_any_later_use_moves_it(node):
    a, b = node
    touch(a, "/pool010")
    a.link("/pool010", "/lease-dn10")
    stamp_us = 1_700_000_000_123_456
    a.utime("/lease-dn10", stamp_us)             # acquire's exact stamp (µs: libnfs timeval)
    assert b.lstat("/lease-dn10").st_mtime_ns == stamp_us * 1000
    assert b.lstat("/pool010").st_mtime_ns == stamp_us * 1000
    now_us = time.time_ns() // 1000
    b.utime("/lease-dn10", now_us)               # a reuse on another node (its clock)
    assert a.lstat("/pool010").st_mtime_ns == now_us * 1000 != stamp_us * 1000
    a.utime("/lease-dn10", stamp_us + 1)         # one microsecond is kept apart
    assert b.lstat("/pool010").st_mtime_ns == (stamp_us + 1) * 1000


# --- the directory stamp (index validity) ---------------------------------------------------

@pytest.mark.parametrize("change", ["link", "unlink", "rename"])
def test_directory_stamp_changes_when_another_client_changes_the_directory(node, change):
    a, b = node
    entry, leased = f"/{change}-pool1", f"/{change}-pool2"
    touch(a, entry)
    touch(a, leased)
    a.link(leased, f"/{change}-lease2")
    d = a.lstat("/")
    stamp = (d.st_ino, d.st_mtime_ns, d.st_ctime_ns, d.st_size)
    time.sleep(0.02)                             # past the local fs's timestamp granularity
    if change == "link":
        b.link(entry, f"/{change}-lease1")
    elif change == "unlink":
        b.unlink(f"/{change}-lease2")
    else:
        b.rename(entry, entry + ".moved")
    d = a.lstat("/")
    assert (d.st_ino, d.st_mtime_ns, d.st_ctime_ns, d.st_size) != stamp
    assert d.st_mtime_ns != stamp[1] and d.st_ctime_ns != stamp[2]


# --- metadata records, .state and .index: O_EXCL, rename, pwrite/ftruncate, fsync ----------

def test_exclusive_create(server, node):
    a, b = node
    fh = a.create("/.tmp.rec.1", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    a.close_fh(fh)
    with pytest.raises(FileExistsError):
        b.create("/.tmp.rec.1", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    st = b.lstat("/.tmp.rec.1")
    assert stat.S_IMODE(st.st_mode) == 0o640 and st.st_uid == 0
    assert os.lstat(os.path.join(server.export_dir, ".tmp.rec.1")).st_mode == st.st_mode
    results = run_workers(server, "excl", ROUNDS)
    for i in range(ROUNDS):
        got = sorted(results[w][i] for w in range(WORKERS))
        assert got == ["EEXIST"] * (WORKERS - 1) + ["won"], (i, got)


def test_rename_replaces_a_record_atomically(node):
    a, b = node
    for k, text in enumerate((b'{"v": 1, "old": true}\n', b'{"v": 1, "new": true}\n')):
        fh = a.create(f"/.tmp.acc.{k}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        a.pwrite(fh, text, 0)
        a.fsync(fh)                              # COMMIT: answered, durability not checked
        a.close_fh(fh)
    a.rename("/.tmp.acc.0", "/acc-record")
    new_ino = a.lstat("/.tmp.acc.1").st_ino
    a.rename("/.tmp.acc.1", "/acc-record")       # over an existing name
    st = b.lstat("/acc-record")
    assert st.st_ino == new_ino and b.lstat_or_none("/.tmp.acc.1") is None
    fh = b.open("/acc-record", os.O_RDONLY)
    assert b.pread(fh, 100, 0) == b'{"v": 1, "new": true}\n'
    b.close_fh(fh)


def test_state_file_rewrite_is_read_back_exactly_by_another_client(node):
    a, b = node
    touch(a, "/.state", 0o600)
    fh = a.open("/.state", os.O_RDWR)
    a.pwrite(fh, b"x" * 300, 0)
    a.pwrite(fh, b"short\n", 0)                 # _write_state: pwrite at 0, ftruncate
    a.ftruncate(fh, 6)
    a.close_fh(fh)
    fh = b.open("/.state", os.O_RDONLY)
    assert b.pread(fh, 1 << 20, 0) == b"short\n"
    assert b.fstat(fh).st_size == 6
    b.close_fh(fh)


# --- what lstat must tell apart --------------------------------------------------------------

def test_lstat_does_not_follow_symlinks_and_modes_survive(node):
    a, b = node
    touch(a, "/pool030")
    a.symlink("pool030", "/lease-dn30")
    assert stat.S_ISLNK(b.lstat("/lease-dn30").st_mode)   # lease_not_regular, not followed
    a.mkdir("/.glexec-py", 0o700)
    st = b.lstat("/.glexec-py")
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == 0
    names = [n for n, _ in b.listdir("/")]
    assert ".glexec-py" in names and "lease-dn30" in names  # dot names: readdir shows them


# --- the gridmapdir lock: NFSv4 byte-range locks ------------------------------------------

def test_lock_conflicts_between_clients_and_is_free_after_unlock(server, node):
    a, _ = node
    touch(a, "/.glexec-py.lock", 0o600)
    held = try_lock(server.target, "/.glexec-py.lock", f"holder-{os.getpid()}")
    assert held is not None
    assert try_lock(server.target, "/.glexec-py.lock", f"other-{os.getpid()}") is None
    holder, fh = held
    holder.lock(fh, F_UNLCK)
    holder.close()
    again = try_lock(server.target, "/.glexec-py.lock", f"other2-{os.getpid()}")
    assert again is not None                     # granted once released
    again[0].lock(again[1], F_UNLCK)
    again[0].close()


def test_lock_serialises_read_modify_write_of_a_shared_file(server, node):
    """``WORKERS`` processes x ``ROUNDS`` critical sections: lock, read the counter, write
    it + 1, fsync, unlock.  Every increment survives only if the locks exclude each other
    and each section reads what the previous holder wrote."""
    a, _ = node
    touch(a, "/counter", 0o600)
    t0 = time.monotonic()
    results = run_workers(server, "counter", ROUNDS, gap=0)
    elapsed = time.monotonic() - t0
    fh = a.open("/counter", os.O_RDONLY)
    assert a.pread(fh, 64, 0) == b"%d\n" % (WORKERS * ROUNDS)
    a.close_fh(fh)
    waits = sorted(x for r in results for x in r)
    print(f"locked counter: {WORKERS * ROUNDS} sections in {elapsed:.2f} s, lock wait "
          f"median {waits[len(waits) // 2] * 1e3:.1f} ms, max {waits[-1] * 1e3:.1f} ms")


def test_a_dead_clients_lock_is_freed_only_when_its_lease_expires(server, node):
    """A node that dies holding the gridmapdir lock blocks every other node until the
    server expires its NFSv4 lease (here ``LEASE_SECONDS``; knfsd's default is 90 s)."""
    a, _ = node
    touch(a, "/held.lock", 0o600)
    p = subprocess.Popen([sys.executable, "-m", "tests.nfs.worker", server.target, "hold",
                          "0", "1", repr(time.monotonic()), "0"], cwd=ROOT,
                         stdout=subprocess.PIPE, text=True)
    try:
        assert json.loads(p.stdout.readline()) == {"held": True}
    finally:
        p.kill()
        p.wait()
    killed = time.monotonic()
    free_after = None
    while time.monotonic() - killed < 6 * ganesha.LEASE_SECONDS:
        got = try_lock(server.target, "/held.lock", f"probe-{time.monotonic_ns()}")
        if got is not None:
            free_after = time.monotonic() - killed
            got[0].close()
            break
        time.sleep(0.2)
    assert free_after is not None, "the dead client's lock was never released"
    assert free_after >= 0.5 * ganesha.LEASE_SECONDS   # not freed when the TCP connection died
    print(f"dead client's lock freed after {free_after:.1f} s (lease {ganesha.LEASE_SECONDS} s)")
