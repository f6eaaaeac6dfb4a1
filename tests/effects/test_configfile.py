"""effects.configfile on real root-owned files: the validated configuration is cached
(effects.rootcache) by the file's identity, but never a version young enough that a second
in-place edit in the same timestamp tick could keep that identity."""
import os
import time

import pytest

from glexec_py.effects import configfile, rootcache
from tests.core.test_core_config import BASE

# Two configurations of the same size: only the pilot's name differs.
PILOT_A, PILOT_B = BASE + "callers:\n  users: [pilota]\n", BASE + "callers:\n  users: [pilotb]\n"


@pytest.fixture
def site(root_dir, state_dir):
    return os.path.join(root_dir, "glexec.yaml"), state_dir


def write(path, text):
    with open(path, "w") as f:          # in place: same inode
        f.write(text)
    os.chmod(path, 0o644)


def users(cfg):
    return list(cfg.callers.users)


def test_a_fresh_version_is_not_cached_and_the_next_edit_is_seen(site):
    path, state = site
    write(path, PILOT_A)
    assert users(configfile.load(path, state)) == ["pilota"]
    assert not os.path.exists(os.path.join(state, "config.cache"))
    st = os.stat(path)
    write(path, PILOT_B)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))        # the same size and mtime
    assert users(configfile.load(path, state)) == ["pilotb"]


def test_a_settled_version_is_cached_and_used(site):
    path, state = site
    write(path, PILOT_A)
    time.sleep(rootcache.RACY_NS / 1e9 + 0.2)
    assert users(configfile.load(path, state)) == ["pilota"]
    cache = os.path.join(state, "config.cache")
    st = os.stat(cache)
    assert st.st_uid == 0 and st.st_mode & 0o777 == 0o600
    assert users(configfile.load(path, state)) == ["pilota"]      # a hit: not rewritten
    assert os.stat(cache).st_mtime_ns == st.st_mtime_ns
    write(path, PILOT_B)                                        # a new identity: a miss
    assert users(configfile.load(path, state)) == ["pilotb"]
