"""verify_chain must never crash, hang or lie on garbage: random bytes, mutated PEM text and
mutated DER re-encoded as PEM (to reach the ASN.1 decoders, not only the PEM reader)."""
import base64
import os
import re
import time

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from glexec_py.effects import native
from tests.support.pki import TestPKI

PEM_RE = re.compile(rb"-----BEGIN ([A-Z ]+)-----\r?\n(.*?)-----END \1-----", re.S)
SETTINGS = settings(max_examples=int(os.environ.get("GLEXEC_FUZZ_EXAMPLES", "300")),
                    deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def material(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzzpki")
    pki = TestPKI(root)
    user = pki.user("/DC=test/DC=glexec-py/CN=Fuzz")
    pem = pki.proxy(user, root / "p.pem").read_bytes()
    return str(pki.ca_dir), pem


def check(res):
    assert isinstance(res, native.ChainResult)
    if res.ok:
        assert res.error == 0 and len(res.chain) >= 2
    else:
        assert res.error != 0 and res.error_text
    for c in res.chain:
        assert c.proxy in ("", "rfc3820", "gt3") and len(c.sha256) == 64


def _pem_block(name: bytes, der: bytes) -> bytes:
    b64 = base64.encodebytes(der).replace(b"\n", b"")
    lines = b"\n".join(b64[i:i + 64] for i in range(0, len(b64), 64))
    return b"-----BEGIN " + name + b"-----\n" + lines + b"\n-----END " + name + b"-----\n"


@given(st.binary(max_size=4096))
@SETTINGS
def test_random_bytes(material, data):
    check(native.verify_chain(data, material[0], int(time.time())))


@given(st.data())
@SETTINGS
def test_mutated_pem_text(material, data):
    ca, pem = material
    buf = bytearray(pem)
    for _ in range(data.draw(st.integers(1, 8))):
        op = data.draw(st.sampled_from(["flip", "cut", "dup", "insert"]))
        i = data.draw(st.integers(0, len(buf) - 1)) if buf else 0
        if op == "flip" and buf:
            buf[i] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "cut":
            del buf[i:i + data.draw(st.integers(1, 200))]
        elif op == "dup":
            buf[i:i] = buf[i:i + data.draw(st.integers(1, 400))]
        else:
            buf[i:i] = data.draw(st.binary(min_size=1, max_size=32))
    check(native.verify_chain(bytes(buf), ca, int(time.time())))


@given(st.data())
@SETTINGS
def test_mutated_der(material, data):
    ca, pem = material
    out = []
    for m in PEM_RE.finditer(pem):
        name, der = m.group(1), bytearray(base64.b64decode(m.group(2)))
        for _ in range(data.draw(st.integers(0, 6))):
            i = data.draw(st.integers(0, len(der) - 1))
            op = data.draw(st.sampled_from(["flip", "set", "cut"]))
            if op == "flip":
                der[i] ^= 1 << data.draw(st.integers(0, 7))
            elif op == "set":
                der[i] = data.draw(st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0x81, 0xFF]))
            elif len(der) > 1:
                del der[i:i + data.draw(st.integers(1, 16))]
        out.append(_pem_block(name, bytes(der)))
    check(native.verify_chain(b"".join(out), ca, int(time.time())))


@given(st.binary(max_size=64))
@SETTINGS
def test_proxy_info_parser_never_crashes(blob):
    for kind in (1, 2):
        try:
            policy, pathlen = native._proxy_info(kind, blob)
        except ValueError:
            continue
        assert policy and pathlen >= -1
