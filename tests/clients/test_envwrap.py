"""GLEXEC_ENV (core/envwrap.py and the two scripts that use it): what glexec_wrapenv.pl
packs, glexec_unwrapenv.pl gives back exactly (newlines, '=' in values, bytes that are not
UTF-8); anything else is one line, exit 201, and nothing runs."""
import base64
import subprocess
import zlib

import pytest
from hypothesis import given, settings, strategies as st

from glexec_py.core import envwrap

names = st.binary(min_size=1, max_size=12).filter(lambda b: b"=" not in b and b"\0" not in b)
values = st.binary(max_size=64).filter(lambda b: b"\0" not in b)
envs = st.lists(st.tuples(names, values), max_size=20, unique_by=lambda e: e[0]).map(
    lambda es: [e for e in es if e[0] != b"GLEXEC_ENV"])


@given(envs)
def test_decode_inverts_encode(env):
    blob = envwrap.encode(env)
    assert blob.startswith(b"gxenv1:") and blob.isascii() and b"\n" not in blob and b" " not in blob
    assert envwrap.decode(blob) == env


@given(st.binary(max_size=200))
def test_decode_is_total(blob):
    try:
        out = envwrap.decode(blob)
    except envwrap.EnvWrapError as e:
        assert "\n" not in str(e)
    else:
        assert envwrap.decode(envwrap.encode(out)) == out


@given(st.binary(max_size=300))
def test_decode_is_total_on_well_framed_garbage(data):
    """Valid prefix, base64 and zlib around arbitrary bytes: either a consistent env or an error."""
    blob = b"gxenv1:" + base64.b64encode(zlib.compress(data))
    try:
        out = envwrap.decode(blob)
    except envwrap.EnvWrapError:
        return
    assert b"".join(n + b"=" + v + b"\0" for n, v in out) == data


@pytest.mark.parametrize("blob,why", [
    (b"", "prefix"), (b"gxenv1:%%%", "base64"), (b"gxenv1:" + base64.b64encode(b"not zlib"), "compressed"),
    (b"gxenv1:" + base64.b64encode(zlib.compress(b"A=1")), "NUL"),
    (b"gxenv1:" + base64.b64encode(zlib.compress(b"A=1\0A=2\0")), "twice"),
    (b"gxenv1:" + base64.b64encode(zlib.compress(b"=1\0")), "without a name"),
    (b"gxenv1:" + base64.b64encode(zlib.compress(b"A\0")), "without a name"),
    (b"gxenv1:" + base64.b64encode(zlib.compress(b"A=1\0") + b"x"), "trailing"),
    (b"gxenv1:" + base64.b64encode(zlib.compress(b"A=1\0")[:-3]), "truncated"),
    (b"gxenv1:" + base64.b64encode(zlib.compress(b"A=" + b"x" * (envwrap.MAX_DECODED + 10) + b"\0")), "more than"),
])
def test_garbage_refused(blob, why):
    with pytest.raises(envwrap.EnvWrapError, match=why):
        envwrap.decode(blob)


def test_restore_keeps_what_glexec_set_and_drops_loader_variables():
    current = [(b"HOME", b"/home/t"), (b"USER", b"t"), (b"LOGNAME", b"t"), (b"PATH", b"/usr/bin"),
               (b"X509_USER_PROXY", b"/sandbox/user_proxy"), (b"GLEXEC_TARGET_DIR", b"/sandbox"),
               (b"GLEXEC_ENV", b"blob")]
    wrapped = [(b"HOME", b"/home/pilot"), (b"USER", b"pilot"), (b"LOGNAME", b"pilot"), (b"PATH", b"/opt/py/bin"),
               (b"X509_USER_PROXY", b"/pilot/proxy"), (b"GLEXEC_TARGET_DIR", b"/elsewhere"),
               (b"LD_PRELOAD", b"/x.so"), (b"LD_LIBRARY_PATH", b"/x"), (b"MALLOC_CHECK_", b"3"),
               (b"GLIBC_TUNABLES", b"x"), (b"_", b"/bin/env"), (b"PandaID", b"42"), (b"A", b"x=y\nz")]
    env = dict(envwrap.restore(current, wrapped))
    assert env == {b"HOME": b"/home/t", b"USER": b"t", b"LOGNAME": b"t", b"PATH": b"/opt/py/bin",
                   b"X509_USER_PROXY": b"/sandbox/user_proxy", b"GLEXEC_TARGET_DIR": b"/sandbox",
                   b"PandaID": b"42", b"A": b"x=y\nz"}


# --- the installed scripts (as `make install` fills them in) ---------------------------------

DUMP = "import os,sys; sys.stdout.buffer.write(b''.join(k+b'='+v+b'\\0' for k,v in os.environb.items()))"


def _dump(out):
    return dict(envwrap.environ_block(out))


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(names.filter(lambda n: envwrap.restorable(n) and n not in (b"PATH", b"LC_CTYPE")),
                          values), max_size=8, unique_by=lambda e: e[0]))
def test_scripts_round_trip(helpers, env):
    base = {b"PATH": b"/usr/bin:/bin"}
    full = {**base, **dict(env)}
    blob = subprocess.run([str(helpers / "glexec_wrapenv.pl")], env=full, capture_output=True, check=True).stdout
    assert blob.endswith(b"\n") and blob.count(b"\n") == 1
    r = subprocess.run([str(helpers / "glexec_unwrapenv.pl"), "--", "/usr/bin/python3", "-I", "-c", DUMP],
                       env={b"PATH": b"/usr/bin:/bin", b"GLEXEC_ENV": blob.rstrip(b"\n")}, capture_output=True)
    assert r.returncode == 0 and r.stderr == b"", r
    got = _dump(r.stdout)
    got.pop(b"LC_CTYPE", None)    # PEP 538 coercion inside the dumping interpreter
    assert got == full


def test_single_word_command_runs_through_sh(helpers, tmp_path):
    env = {"PATH": "/usr/bin:/bin", "MARK": "a b"}
    blob = subprocess.run([str(helpers / "glexec_wrapenv.pl")], env=env, capture_output=True, check=True).stdout
    r = subprocess.run([str(helpers / "glexec_unwrapenv.pl"), "--", f'cd {tmp_path}; echo "$MARK" 2>1;'],
                       env={"GLEXEC_ENV": blob.strip(), "PATH": "/bin"}, capture_output=True, cwd="/")
    assert (r.returncode, r.stdout, r.stderr) == (0, b"a b\n", b"")
    assert (tmp_path / "1").exists()      # PanDA's `2>1` makes a file named 1 in the sandbox


@pytest.mark.parametrize("blob", [None, b"", b"garbage", b"gxenv1:AAAA", b"gxenv1:" + base64.b64encode(b"x\n" * 9)])
def test_unwrap_garbage_runs_nothing(helpers, tmp_path, blob):
    mark = tmp_path / "ran"
    env = {"PATH": "/bin"}
    if blob is not None:
        env["GLEXEC_ENV"] = blob
    r = subprocess.run([str(helpers / "glexec_unwrapenv.pl"), "--", f"touch {mark}"], env=env, capture_output=True)
    assert r.returncode == 201, r
    assert r.stdout == b"" and r.stderr.startswith(b"glexec_unwrapenv.pl: ") and r.stderr.count(b"\n") == 1, r
    assert not mark.exists()
