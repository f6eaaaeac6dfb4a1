"""The shipped logrotate rule (packaging/logrotate.d/glexec-py) against the real logrotate
on a test prefix: after rotations (rename + create, .1 kept plain, older ones gzipped) and
further glexec calls, every file's hash chain is intact and the back-mapper answers across
the rotation from all segments, with no gap or chain-break flag."""
import gzip
import json
import os
import shutil
import stat
import subprocess

import pytest

from glexec_py.core.audit import chain_breaks
from tests.support import install as inst

RULE = inst.REPO_ROOT / "packaging" / "logrotate.d" / "glexec-py"


def rotate(conf, state):
    p = subprocess.run(["logrotate", "-f", "-s", str(state), str(conf)], capture_output=True,
                       timeout=60)
    assert p.returncode == 0 and p.stderr == b"", p


def lines_of(path):
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    return data.splitlines()


def backmap(prefix, *args):
    p = subprocess.run([str(prefix / "sbin" / "glexec-backmap"), "--config",
                        str(inst.config_path(prefix)), "--json", *args],
                       capture_output=True, timeout=120, cwd="/")
    return p.returncode, json.loads(p.stdout) if p.stdout else None, p.stderr


def test_rotation_keeps_chain_and_backmap(gx, accounts, run_dir):
    if shutil.which("logrotate") is None:
        pytest.fail("logrotate is not installed (make pkg-deps)")
    logdir = gx.audit_file.parent
    for f in logdir.glob("audit.jsonl*"):      # this test's own history only
        f.unlink()
    conf = run_dir / "logrotate-glexec-py.conf"
    conf.write_text(RULE.read_text().replace("/var/log/glexec-py", str(logdir)))
    os.chmod(conf, 0o644)
    state = run_dir / "logrotate.state"

    def call():
        r = gx.run(["/bin/sleep", "0.2"])
        gx.assert_granted(r)
        return r.grants[0], r.ends[0]

    first = [call(), call()]
    rotate(conf, state)
    active = gx.audit_file
    st = active.stat()
    assert (stat.S_ISREG(st.st_mode), st.st_uid, st.st_mode & 0o777, st.st_size) == (True, 0, 0o600, 0)
    assert (logdir / "audit.jsonl.1").is_file()
    second = [call()]
    new_first = json.loads(lines_of(active)[0])
    assert (new_first["seq"], new_first["prev"]) == (1, "")    # a new file starts a new chain
    rotate(conf, state)
    third = [call(), call()]
    # delaycompress: the newest rotated segment stays plain, the older one is gzipped
    assert (logdir / "audit.jsonl.1").is_file() and (logdir / "audit.jsonl.2.gz").is_file()
    assert not (logdir / "audit.jsonl.2").exists()

    segments = [logdir / "audit.jsonl.2.gz", logdir / "audit.jsonl.1", active]
    for seg in segments:
        assert chain_breaks(lines_of(seg)) == [], seg
    assert [len(lines_of(s)) for s in segments] == [4, 2, 4]

    # The back-mapper reads all three segments: the oldest grant (now in .2.gz), one in .1
    # and one in the active file, each "known" for the right DN, without any flag.
    for grant, end in (first[0], second[0], third[1]):
        at = grant["time"]
        code, answer, err = backmap(gx.prefix, "--account", "gxttarget1", "--at", at)
        assert code == 0 and err == b"", (at, err, answer)
        assert answer["status"] == "known", answer
        assert [m["dn"] for m in answer["matches"]] == ["/DC=test/DC=glexec-py/CN=Test User One"]
        assert answer["flags"] == [], answer
    code, answer, _ = backmap(gx.prefix, "--account", "gxttarget1", "--from", first[0][0]["time"],
                              "--to", third[1][1]["time"])
    assert answer["flags"] == [] and len(answer["matches"]) == 5, answer
