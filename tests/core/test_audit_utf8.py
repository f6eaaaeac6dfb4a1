"""The JSON audit stays valid UTF-8 / valid Unicode for jq and log pipelines when identities,
arguments and paths hold bytes that are not UTF-8 (core/audit.py, docs/audit-format.md):
arbitrary bytes -> record -> a line real `jq` reads without loss -> decoded back equal, by
the back-mapper's record parser too, and the seq/prev chain verifies over such lines."""
import json
import subprocess

from hypothesis import example, given, settings, strategies as st

from glexec_py.core import audit
from glexec_tools.backmap import plan as backmap
from glexec_py.effects import auditlog

values = st.binary(max_size=60)


def record(dn, fqans, args, cwd, env):
    return {"time": "2026-12-05T06:50:01.000000Z", "event": "grant", "host": "wn042", "pid": 4100,
            "dn": dn, "fqans": fqans, "command": args[0] if args else b"", "args": args[1:], "cwd": cwd,
            "env": env, "account": "gxttarget1", "uid": 47011, "gid": 47011}


def raw(v):
    return v.encode("utf-8", "surrogateescape")


def valid_unicode(line):
    """Every string of the JSON line, as a JSON reader decodes it, is valid Unicode: a
    surrogate pair (how JSON writes a character above U+FFFF) becomes one character; a lone
    surrogate escape (what jq turns into U+FFFD) stays a surrogate, which UTF-8 refuses."""
    try:
        json.dumps(json.loads(line), ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def jq(lines):
    r = subprocess.run(["jq", "-c", "."], input=b"".join(lines), capture_output=True, timeout=30)
    assert r.returncode == 0 and r.stderr == b"", r
    out = r.stdout.split(b"\n")[:-1]
    for line in out:
        line.decode("utf-8")            # jq writes UTF-8; this must not raise
    return out


@settings(max_examples=60, deadline=None)
@given(values, st.lists(values, max_size=3), st.lists(values, min_size=1, max_size=3), values,
       st.lists(values, max_size=3))
@example(b"/CN=\xf0\x90\x80\x80", [], [b"\xf0\x9f\x98\x80\xed\xa0\x80"], b"", [])   # above U+FFFF; CESU
def test_any_bytes_round_trip_through_jq(dn, fqans, args, cwd, env):
    line = audit.encode(record(dn, fqans, args, cwd, env))
    assert line.isascii() and valid_unicode(line)     # valid JSON, and valid Unicode, as it stands
    for text in (line, jq([line])[0]):   # as written, and after jq re-wrote it
        rec = audit.decode_line(text)
        assert raw(rec["dn"]) == dn and [raw(f) for f in rec["fqans"]] == fqans
        assert [raw(a) for a in [rec["command"], *rec["args"]]] == args
        assert raw(rec["cwd"]) == cwd and [raw(e) for e in rec["env"]] == env


@settings(max_examples=40, deadline=None)
@given(values, st.lists(values, max_size=3))
def test_backmap_parser_reads_the_same_identity(dn, fqans):
    ev = backmap.parse_record(audit.encode(record(dn, fqans, [b"/bin/true"], b"/", [])), ref=None)
    assert ev.kind == "grant" and raw(ev.identity.dn) == dn
    assert [raw(f) for f in ev.identity.fqans] == fqans


def test_chain_verifies_over_escaped_values_and_catches_an_edit():
    lines, prev, seq = [], b"", 1
    for dn in (b"/CN=J\xf6rg", b"/CN=ok", b"\xff\xfe"):
        line = auditlog._chained(audit.encode(record(dn, [b"/vo/\x80"], [b"x"], b"/tmp/\xc3", [])), seq, prev)
        lines.append(line.rstrip(b"\n"))
        import hashlib
        prev, seq = hashlib.sha256(line.rstrip(b"\n")).hexdigest().encode(), seq + 1
    assert audit.chain_breaks(lines) == []
    assert raw(audit.decode_line(lines[0])["dn"]) == b"/CN=J\xf6rg"
    forged = lines[:]
    forged[0] = forged[0].replace(b'"bytes_b64":"L0NOPUr2cmc="', b'"bytes_b64":"L0NOPUr3cmc="')
    assert forged[0] != lines[0]
    assert audit.chain_breaks(forged) == [(1, "hash of the previous line does not match")]
