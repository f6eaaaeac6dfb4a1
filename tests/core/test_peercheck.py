"""core.peercheck: the engine service accepts a peer only if the kernel's view of it is
the hand-off's (the setuid shim of that very call)."""
from hypothesis import given, strategies as st

from glexec_py.core.handoff import CallerFacts
from glexec_py.core.peercheck import mismatch, status_ids


def facts(**kw):
    d = dict(argv=[b"glexec", b"/bin/id"], env=[], ruid=1000, euid=0, suid=0, rgid=1000, egid=1000,
             sgid=1000, pid=4242, ppid=1, sid=4000, pgid=4242, umask=0o077, privileged=True,
             groups=(1000, 27), rlimits={r: (-1, -1) for r in range(16)}, cwd=b"/home/pilot")
    d.update(kw)
    return CallerFacts(**d)


def status(uid=(1000, 0, 0, 0), gid=(1000, 1000, 1000, 1000), groups=(1000, 27)):
    """/proc/<pid>/status as the kernel writes it (the lines that matter, among others)."""
    return ("Name:\tglexec\nUmask:\t0077\nState:\tS (sleeping)\nTgid:\t4242\nPid:\t4242\nPPid:\t1\n"
            f"Uid:\t{chr(9).join(map(str, uid))}\nGid:\t{chr(9).join(map(str, gid))}\nFDSize:\t64\n"
            f"Groups:\t{' '.join(map(str, groups))} \nNStgid:\t4242\n")


def test_the_shim_of_the_call_is_accepted():
    assert mismatch(facts(), 4242, 0, status()) is None


def test_a_non_root_peer_is_refused_first():
    assert "not root" in mismatch(facts(), 4242, 1000, status())


def test_a_hand_off_naming_another_process_is_refused():
    assert "names pid 4242" in mismatch(facts(), 4243, 0, status())


def test_a_log_only_or_non_setuid_hand_off_is_refused():
    assert mismatch(facts(privileged=False), 4242, 0, status()) is not None
    assert mismatch(facts(euid=1000), 4242, 0, status(uid=(1000, 1000, 0, 1000))) is not None


def test_ids_and_groups_must_be_the_kernels():
    assert "uids" in mismatch(facts(), 4242, 0, status(uid=(1001, 0, 0, 0)))
    assert "uids" in mismatch(facts(), 4242, 0, status(uid=(1000, 0, 0, 1000)))   # fsuid
    assert "gids" in mismatch(facts(), 4242, 0, status(gid=(1000, 0, 1000, 0)))
    assert "groups" in mismatch(facts(), 4242, 0, status(groups=(1000,)))
    assert "groups" in mismatch(facts(), 4242, 0, status(groups=(1000, 27, 0)))


def test_an_incomplete_status_is_refused():
    text = status()
    for line in ("Uid:", "Gid:", "Groups:"):
        cut = "\n".join(x for x in text.splitlines() if not x.startswith(line))
        assert mismatch(facts(), 4242, 0, cut) is not None
    assert mismatch(facts(), 4242, 0, text.replace("Uid:\t1000\t0\t0\t0", "Uid:\t1000\t0\t0")) is not None


def test_status_ids_takes_the_first_line_of_each_kind():
    seen = status_ids(status() + "Uid:\t0\t0\t0\t0\n")
    assert seen["Uid"] == (1000, 0, 0, 0) and seen["Groups"] == frozenset({1000, 27})


ids = st.integers(0, 2**32 - 2)


@given(ruid=ids, rgid=ids, groups=st.lists(ids, max_size=6), seen_uid=st.tuples(ids, ids, ids, ids),
       seen_gid=st.tuples(ids, ids, ids, ids), seen_groups=st.lists(ids, max_size=6))
def test_prop_accepted_iff_the_kernel_agrees(ruid, rgid, groups, seen_uid, seen_gid, seen_groups):
    f = facts(ruid=ruid, rgid=rgid, egid=rgid, sgid=rgid, groups=tuple(groups))
    agrees = (seen_uid == (ruid, 0, 0, 0) and seen_gid == (rgid,) * 4 and set(seen_groups) == set(groups))
    assert (mismatch(f, 4242, 0, status(seen_uid, seen_gid, seen_groups)) is None) == agrees
    assert mismatch(f, 4242, 0, status((ruid, 0, 0, 0), (rgid,) * 4, groups)) is None
