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
