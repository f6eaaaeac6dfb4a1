"""End-to-end: a file planted at the default target-proxy path (/tmp/x509up_u<uid>) by
another local user must not make the target's calls fail (issue 9 §4). The proxy then goes
to a fresh file next to it, made as the target, and X509_USER_PROXY says where; the planted
file is left alone. A location the caller chose (GLEXEC_TARGET_PROXY) that is a link is
still refused."""
import glob
import os
import stat

import pytest

from tests.privileged import payloads as P
from tests.support.runas import run_as


@pytest.fixture
def planted(accounts):
    """Cleans /tmp/x509up_u<target1>* (the planted file and the fresh copies) afterwards."""
    default = f"/tmp/x509up_u{accounts.target1.uid}"

    def clean():
        for p in glob.glob(default) + glob.glob(default + ".*"):
            os.unlink(p)
    clean()
    yield default
    clean()


def _plant(how, default, gx):
    """As gxtoutsider (a different local user): a symlink to a file of its own, or a regular
    file of its own. Returns (what the planted entry looks like, its target's content)."""
    bait = gx.out / "bait"
    r = run_as("gxtoutsider", ["/bin/sh", "-c", f'echo bait > "{bait}"; chmod 644 "{bait}"'])
    assert r.returncode == 0, r
    cmd = f'ln -s "{bait}" "{default}"' if how == "symlink" else f'echo planted > "{default}"'
    r = run_as("gxtoutsider", ["/bin/sh", "-c", cmd])
    assert r.returncode == 0, r
    st = os.lstat(default)
    assert st.st_uid == gx.accounts.outsider.uid
    return (st.st_ino, st.st_mode, st.st_mtime_ns, os.readlink(default) if how == "symlink"
            else open(default, "rb").read()), bait


@pytest.mark.parametrize("how", ["symlink", "regular"])
def test_planted_default_proxy_does_not_block_the_target(gx, accounts, planted, how):
    t = accounts.target1
    seen, bait = _plant(how, planted, gx)
    dump = gx.script("dump.py", P.DUMP)
    for _ in range(2):   # and again: the planted file stays, every call still works
        r = gx.run([str(dump)])
        gx.assert_granted(r)
        env = P.env_dict(P.load_dump(r.stdout))
        dest = env["X509_USER_PROXY"]
        assert dest.startswith(planted + ".") and "/" not in dest[len(planted):], dest
        st = os.lstat(dest)
        assert stat.S_ISREG(st.st_mode) and st.st_uid == t.uid and stat.S_IMODE(st.st_mode) == 0o600
        assert open(dest, "rb").read() == gx.pkis.proxies["user1"].read_bytes()
    # the planted entry and what it points to are untouched
    st = os.lstat(planted)
    assert st.st_uid == accounts.outsider.uid
    assert (st.st_ino, st.st_mode, st.st_mtime_ns, os.readlink(planted) if how == "symlink"
            else open(planted, "rb").read()) == seen
    assert bait.read_text() == "bait\n"
    # no temporary file left behind
    assert not glob.glob(f"/tmp/.x509up_u{t.uid}.glexec-*")


def test_default_proxy_still_used_when_free(gx, accounts, planted):
    dump = gx.script("dump.py", P.DUMP)
    r = gx.run([str(dump)])
    gx.assert_granted(r)
    assert P.env_dict(P.load_dump(r.stdout))["X509_USER_PROXY"] == planted
    assert os.lstat(planted).st_uid == accounts.target1.uid
    assert glob.glob(planted + ".*") == []


def test_explicit_target_proxy_link_still_refused(gx, accounts, planted):
    """The caller named the location: a link there is the caller's problem (201)."""
    dest = gx.out / "explicit_proxy"
    r = run_as("gxtoutsider", ["/bin/ln", "-s", "/etc/passwd", str(dest)])
    assert r.returncode == 0, r
    mark = gx.marker("ran")
    r = gx.run(["/bin/sh", "-c", f'echo ran > "{mark}"'],
               env={"GLEXEC_TARGET_PROXY": str(dest)})
    gx.assert_refused(r, 201, "target_proxy_location")
    assert os.readlink(dest) == "/etc/passwd" and not mark.exists()


def test_explicit_target_proxy_link_in_the_targets_directory_refused(gx, accounts, planted):
    """The same in a directory the target owns (gx.out above is a sticky 1777 directory,
    refused for that alone): the link itself is refused, before the grant, and left alone."""
    t = accounts.target1
    d = gx.out / "target_dir"
    d.mkdir(mode=0o700)
    os.chown(d, t.uid, t.gid)
    dest = d / "explicit_proxy"
    r = run_as(t.name, ["/bin/ln", "-s", "/etc/passwd", str(dest)])
    assert r.returncode == 0, r
    mark = gx.marker("ran")
    r = gx.run(["/bin/sh", "-c", f'echo ran > "{mark}"'],
               env={"GLEXEC_TARGET_PROXY": str(dest)})
    gx.assert_refused(r, 201, "target_proxy_location")
    assert b"exists and is not a file owned by the target" in r.stderr, r
    assert os.readlink(dest) == "/etc/passwd" and not mark.exists()


def test_planted_between_staging_and_commit(accounts, planted, run_dir):
    """The race: the default name is free when the proxy is staged and taken (by another
    user) before the commit. The commit goes elsewhere instead of failing."""
    from glexec_py.effects import userfiles
    t = accounts.target1
    target = (t.uid, t.gid, [t.gid])
    staged = userfiles.stage_target_proxy(planted.encode(), b"PROXY", target, True)
    assert staged.path == planted.encode()
    r = run_as("gxtoutsider", ["/bin/ln", "-s", "/etc/shadow", planted])
    assert r.returncode == 0, r
    staged.commit()
    dest = staged.path.decode()
    assert dest.startswith(planted + ".")
    st = os.lstat(dest)
    assert st.st_uid == t.uid and stat.S_IMODE(st.st_mode) == 0o600
    assert open(dest, "rb").read() == b"PROXY"
    assert os.readlink(planted) == "/etc/shadow"
    assert not glob.glob(f"/tmp/.x509up_u{t.uid}.glexec-*")


def test_planted_between_the_check_and_the_rename(accounts, planted, run_dir, monkeypatch):
    """The narrower race: the default name is free when the commit checks it and taken
    (another user's link) before the rename. The rename, made as the target, is refused by
    the sticky bit (as root it would replace the planted link), and the proxy goes
    elsewhere. The interleaving is forced: the real check runs, then the outsider plants."""
    from glexec_py.effects import userfiles
    t = accounts.target1
    staged = userfiles.stage_target_proxy(planted.encode(), b"PROXY", (t.uid, t.gid, [t.gid]), True)
    real, verdicts = userfiles._foreign_file, []

    def check_then_plant(dirfd, name, uid):
        verdict = real(dirfd, name, uid)
        if not verdicts:
            r = run_as("gxtoutsider", ["/bin/ln", "-s", "/etc/shadow", planted])
            assert r.returncode == 0, r
        verdicts.append(verdict)
        return verdict
    monkeypatch.setattr(userfiles, "_foreign_file", check_then_plant)
    staged.commit()
    assert verdicts[0] is False                       # the name was free when checked
    dest = staged.path.decode()
    assert dest.startswith(planted + ".")
    st = os.lstat(dest)
    assert st.st_uid == t.uid and stat.S_IMODE(st.st_mode) == 0o600
    assert open(dest, "rb").read() == b"PROXY"
    assert os.readlink(planted) == "/etc/shadow"      # not replaced
    assert not glob.glob(f"/tmp/.x509up_u{t.uid}.glexec-*")
