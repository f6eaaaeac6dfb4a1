"""effects.userfiles.read_credential on real files, with the caller's real file-system
identity (root switches fsuid/fsgid in a forked child): the checks on top of the kernel's
permission check, one by one. The end-to-end versions are in test_e2e_refuse.py; these are
the fast ones the mutation check (tests/mutants) runs."""
import os
import shutil
import tempfile
from types import SimpleNamespace

import pytest

from glexec_py.effects import userfiles
from glexec_py.errors import CallerError
from tests.native.native_helpers import run_in_child

BASE = "/var/lib/glexec-py-tests"
CALLER = SimpleNamespace(ruid=47998, rgid=47998, groups=[47998])   # ids need no account
ROOT_CALLER = SimpleNamespace(ruid=0, rgid=0, groups=[])
DATA = b"-----BEGIN CERTIFICATE-----\n" + b"A" * 1000 + b"\n-----END CERTIFICATE-----\n"


@pytest.fixture
def box():
    os.makedirs(BASE, mode=0o755, exist_ok=True)
    d = tempfile.mkdtemp(prefix="cred-", dir=BASE)
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d)


def _file(box, name, owner=CALLER.ruid, mode=0o600, data=DATA):
    p = os.path.join(box, name)
    with open(p, "wb") as f:
        f.write(data)
    os.chown(p, owner, owner)
    os.chmod(p, mode)
    return p.encode()


def _read(path, caller=CALLER, max_size=65536):
    def child():
        try:
            return userfiles.read_credential(path, caller, max_size)
        except CallerError as e:
            return e.reason
    return run_in_child(child)


def test_the_callers_own_private_file_is_read(box):
    assert _read(_file(box, "proxy")) == DATA


def test_symlink_to_the_callers_own_file_is_refused(box):
    real = _file(box, "proxy")
    link = os.path.join(box, "link").encode()
    os.symlink(real, link)
    os.lchown(link, CALLER.ruid, CALLER.rgid)
    assert _read(link) == "credential_type"


def test_fifo_is_refused(box):
    p = os.path.join(box, "fifo")
    os.mkfifo(p, 0o600)
    os.chown(p, CALLER.ruid, CALLER.rgid)
    assert _read(p.encode()) == "credential_type"


def test_root_caller_and_someone_elses_file(box):
    """Root reads anything: only the fstat owner check stops a listed root caller."""
    assert _read(_file(box, "theirs", owner=47997), ROOT_CALLER) == "credential_owner"
    assert _read(_file(box, "mine", owner=0), ROOT_CALLER) == DATA


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o610, 0o4600, 0o2600, 0o1600])
def test_mode_wider_than_0700_is_refused(box, mode):
    assert _read(_file(box, "proxy", mode=mode)) == "credential_mode"


def test_size_cap(box):
    p = _file(box, "proxy")
    assert _read(p, max_size=len(DATA)) == DATA
    assert _read(p, max_size=len(DATA) - 1) == "credential_size"
