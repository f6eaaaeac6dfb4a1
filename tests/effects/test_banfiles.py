"""effects.banfiles on real root-owned files: the size cap (a broken ban source, deny
everyone) and the root-only cache of the parsed list, keyed by the file's identity."""
import glob
import marshal
import os
import time
import types

import pytest

from glexec_py.core import bans
from glexec_py.core.dn import parse_text
from glexec_py.effects import banfiles

ALICE, BOB = "/DC=org/DC=example/CN=Alice", "/DC=org/DC=example/CN=Bobby"     # same length


@pytest.fixture
def site(root_dir, state_dir):
    return root_dir, state_dir


def cfg(path, cap=4 << 20):
    return types.SimpleNamespace(dn_files=(path,), ca_files=(), fqan_files=(), dn=(), ca=(),
                                 fqan=(), fingerprint=(), token=(), max_file_size=cap)


def write(path, text, age=0):
    with open(path, "w") as f:          # in place: same inode
        f.write(text)
    os.chmod(path, 0o644)
    if age:
        time.sleep(age)


def banned(banlist, who):
    d = bans.check(banlist, subject_dns=[parse_text(who)])
    return d is not None and d.reason == "banned_dn"


def test_over_cap_file_denies_everyone(site):
    d, state = site
    path = os.path.join(d, "ban_dn.db")
    write(path, "".join(f'"/DC=org/CN=User {i}"\n' for i in range(100)))
    size = os.path.getsize(path)
    bl = banfiles.load(cfg(path, cap=size - 1), "glexec.yaml", state)
    decision = bans.check(bl, subject_dns=[parse_text(ALICE)])
    assert decision.reason == "bans_unavailable"
    assert "max_file_size" in decision.explain and "broken ban source" in decision.explain
    assert banfiles.load(cfg(path, cap=size), "glexec.yaml", state).unusable_why is None


def test_cache_is_used_and_same_size_edit_is_seen(site):
    d, state = site
    path = os.path.join(d, "ban_dn.db")
    write(path, f'"{ALICE}"\n', age=banfiles.RACY_NS / 1e9 + 0.2)
    assert banned(banfiles.load(cfg(path), "glexec.yaml", state), ALICE)
    caches = glob.glob(os.path.join(state, "bans-*.cache"))
    assert len(caches) == 1
    st = os.stat(caches[0])
    assert st.st_uid == 0 and st.st_mode & 0o777 == 0o600
    # The next call answers from the cache: a cache holding another (valid) list for the same
    # file identity is what it uses -- which proves it did not parse the file again.
    with open(caches[0], "rb") as f:
        key, rows = marshal.loads(f.read())
    other = bans.to_cache_rows(bans.load_ban_file(f'"{BOB}"\n'.encode(), path, "dn"))
    with open(caches[0], "wb") as f:
        f.write(marshal.dumps((key, other)))
    bl = banfiles.load(cfg(path), "glexec.yaml", state)
    assert banned(bl, BOB) and not banned(bl, ALICE)
    # Same size, new content, same inode: the identity (ctime/mtime) changed, so the next call
    # parses the file again.
    write(path, f'"{BOB}"\n'.replace(BOB, ALICE.replace("Alice", "Carol")))
    bl = banfiles.load(cfg(path), "glexec.yaml", state)
    assert banned(bl, ALICE.replace("Alice", "Carol")) and not banned(bl, BOB)


def test_racy_version_is_not_cached(site):
    # Two in-place edits inside one timestamp tick keep size, mtime and ctime: a version
    # younger than RACY_NS is parsed every call, never cached.
    d, state = site
    path = os.path.join(d, "ban_dn.db")
    write(path, f'"{ALICE}"\n')
    assert banned(banfiles.load(cfg(path), "glexec.yaml", state), ALICE)
    assert glob.glob(os.path.join(state, "bans-*.cache")) == []
    st = os.stat(path)
    write(path, f'"{BOB}"\n')
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))       # the same mtime as before
    bl = banfiles.load(cfg(path), "glexec.yaml", state)
    assert banned(bl, BOB) and not banned(bl, ALICE)


def test_cache_not_owned_by_root_only_is_ignored(site):
    d, state = site
    path = os.path.join(d, "ban_dn.db")
    write(path, f'"{ALICE}"\n', age=banfiles.RACY_NS / 1e9 + 0.2)
    banfiles.load(cfg(path), "glexec.yaml", state)
    (cache,) = glob.glob(os.path.join(state, "bans-*.cache"))
    with open(cache, "rb") as f:
        key, _rows = marshal.loads(f.read())
    with open(cache, "wb") as f:
        f.write(marshal.dumps((key, [])))                     # "no bans" ...
    os.chmod(cache, 0o644)                                    # ... in a cache others can read
    os.chown(cache, 47195, 47195)
    assert banned(banfiles.load(cfg(path), "glexec.yaml", state), ALICE)
