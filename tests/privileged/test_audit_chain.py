"""The audit sink's tamper evidence (seq + hash of the previous line), on a real file."""
import json
import os
import shutil
import tempfile

import pytest

from glexec_py.core.audit import chain_breaks, encode
from glexec_py.effects import auditlog
from glexec_py.errors import SystemFault

BASE = "/var/lib/glexec-py-tests"


@pytest.fixture
def logdir():
    os.makedirs(BASE, mode=0o755, exist_ok=True)
    d = tempfile.mkdtemp(prefix="audit-", dir=BASE)
    os.chmod(d, 0o700)
    yield d
    shutil.rmtree(d)


def test_records_are_numbered_and_chained(logdir):
    path = os.path.join(logdir, "audit.jsonl")
    for i in range(5):
        auditlog.append(path, encode({"event": "grant", "n": i, "dn": "/CN=x,\"seq\":99"}))
    lines = open(path, "rb").read().splitlines()
    assert [json.loads(x)["seq"] for x in lines] == [1, 2, 3, 4, 5]
    assert json.loads(lines[0])["prev"] == ""
    assert chain_breaks(lines) == []
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"


def test_deleted_edited_or_reordered_lines_are_detected(logdir):
    path = os.path.join(logdir, "audit.jsonl")
    for i in range(4):
        auditlog.append(path, encode({"event": "grant", "n": i}))
    lines = open(path, "rb").read().splitlines()
    assert chain_breaks(lines[:1] + lines[2:])            # a record deleted
    assert chain_breaks([lines[0], lines[1].replace(b'"n":1', b'"n":7'), lines[2], lines[3]])  # edited
    assert chain_breaks([lines[0], lines[2], lines[1], lines[3]])  # reordered


def test_a_record_that_is_not_one_json_line_is_refused(logdir):
    path = os.path.join(logdir, "audit.jsonl")
    with pytest.raises(SystemFault):
        auditlog.append(path, b"not json")


# --- the file itself must be a private, root-owned, single-link regular file --------------

def _unchanged_and_refused(path, *, privileged=True):
    before = open(path, "rb").read()
    with pytest.raises(SystemFault) as ei:
        auditlog.append(path, encode({"event": "grant", "n": 1}), privileged=privileged)
    assert ei.value.reason == "audit_unwritable"
    assert open(path, "rb").read() == before


def _existing_log(logdir, mode=0o600):
    path = os.path.join(logdir, "audit.jsonl")
    auditlog.append(path, encode({"event": "grant", "n": 0}))
    os.chmod(path, mode)
    return path


def test_audit_file_with_a_second_link_is_refused(logdir):
    """A hard link elsewhere (made while the directory was open, or by whoever can write
    to a directory on the same file system) would let records land in a file we don't own."""
    path = _existing_log(logdir)
    os.link(path, os.path.join(logdir, "elsewhere"))
    _unchanged_and_refused(path)


def test_audit_file_not_owned_by_root_is_refused(logdir):
    path = _existing_log(logdir)
    os.chown(path, 47999, 47999)         # any non-root owner (it can rewrite the records)
    _unchanged_and_refused(path)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o602])
def test_audit_file_readable_or_writable_by_others_is_refused(logdir, mode):
    _unchanged_and_refused(_existing_log(logdir, mode))


def test_log_only_audit_file_may_be_group_writable_but_not_other(logdir):
    path = _existing_log(logdir, 0o620)
    auditlog.append(path, encode({"event": "grant", "n": 1}), privileged=False)
    for mode in (0o622, 0o624, 0o621):
        os.chmod(path, mode)
        _unchanged_and_refused(path, privileged=False)


def test_audit_path_that_is_a_fifo_is_refused(logdir):
    path = os.path.join(logdir, "audit.jsonl")
    os.mkfifo(path, 0o600)               # opens without blocking (O_RDWR|O_NONBLOCK)
    with pytest.raises(SystemFault) as ei:
        auditlog.append(path, encode({"event": "grant"}))
    assert ei.value.reason == "audit_unwritable"
