"""The pure AC parser and decision: structure, strictness, and hypothesis fuzzing (only
VomsParseError may escape the parser; the decision never raises in lcmaps mode)."""
import calendar
import datetime

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from glexec_py.core import voms, vomscheck
from tests.voms.conftest import FQANS, VO, VOMS_HOST, ac_ext_of, tlv, voms_fake

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
FUZZ_TREE = settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def sample(venv, tmp_path_factory):
    p = voms_fake(venv.pki, venv.alice, venv.path("parser"))
    ext = ac_ext_of(p)
    return ext, voms.acs_from_extension(ext)[0]


def test_parse_fields(venv, sample):
    ext, der = sample
    ac = voms.parse_ac(der)
    assert ac.vo == VO and ac.host == VOMS_HOST and ac.port == 15000
    assert ac.fqans == tuple(FQANS) and ac.canonical_fqans == tuple(FQANS)
    assert ac.sig_alg_oid == "1.2.840.113549.1.1.11"
    assert len(ac.ac_certs) == 1
    host = voms.parse_certificate(ac.ac_certs[0])
    assert host.subject_der == ac.issuer
    alice = voms.parse_certificate(
        __import__("ssl").PEM_cert_to_DER_cert(venv.alice.cert.read_text()))
    assert ac.holder_serial == alice.serial
    # voms-proxy-fake puts the holder's *subject* in baseCertificateID.issuer
    assert ac.holder_issuer == alice.subject_der
    assert ac.targets is None
    assert ac.tbs == der[4:4 + len(ac.tbs)]


@given(st.datetimes(min_value=datetime.datetime(1950, 1, 1), max_value=datetime.datetime(9999, 12, 31)))
def test_generalized_time_matches_calendar(dt):
    raw = dt.strftime("%Y%m%d%H%M%S").encode() + b"Z"
    assert voms._gentime(raw, 0, len(raw)) == calendar.timegm(dt.timetuple())


@pytest.mark.parametrize("raw", [b"20261301000000Z", b"20260230000000Z", b"2026010100000Z",
                                 b"20260101000000", b"20260101000000.5Z", b"2026010100000aZ",
                                 b"20260101240000Z", b"20260101000060Z", b"+0260101000000Z"])
def test_generalized_time_strict(raw):
    with pytest.raises(voms.VomsParseError):
        voms._gentime(raw, 0, len(raw))


@pytest.mark.parametrize("pa", ["testvo//host:1", "testvo://host", "://host:15000", "testvo://:1",
                                "testvo://host:x", "../x://host:1", "a/b://h:1", "vo://h/x:1",
                                "vo://h:123456", ".vo://h:1", "vo://-h:1"])
def test_bad_policy_authority(pa):
    with pytest.raises(voms.VomsParseError):
        voms._authority(pa)


def test_der_strictness():
    with pytest.raises(voms.VomsParseError):        # indefinite length
        voms._tl(b"\x30\x80\x00\x00", 0, 4)
    with pytest.raises(voms.VomsParseError):        # non-minimal length
        voms._tl(b"\x30\x81\x01\x00", 0, 4)
    with pytest.raises(voms.VomsParseError):        # non-minimal INTEGER
        voms._int(b"\x00\x01", 0, 2, "x")
    with pytest.raises(voms.VomsParseError):
        voms.parse_ac(b"\x30\x00")
    with pytest.raises(voms.VomsParseError):
        voms.acs_from_extension(b"\x30\x02\x30\x00")     # empty AC list


def test_trailing_bytes_refused(sample):
    ext, der = sample
    with pytest.raises(voms.VomsParseError):
        voms.parse_ac(der + b"\x00")
    with pytest.raises(voms.VomsParseError):
        voms.acs_from_extension(ext + b"\x00")


def test_parse_lsc():
    assert vomscheck.parse_lsc("\n  /A=1 \n\"/B=2\"\n\n------ NEXT CHAIN ------\n/C=3\n/D=4\n/E=5\n/F=6\n") == [
        [("/A=1", "/B=2")], [("/C=3", "/D=4"), ("/E=5", "/F=6")]]
    assert vomscheck.parse_lsc("/A=1\n") == [None]
    assert vomscheck.parse_lsc("") == []


# --- fuzzing ------------------------------------------------------------------------

def _parse_all(data):
    try:
        voms.parse_ac(data)
    except voms.VomsParseError:
        pass
    try:
        voms.acs_from_extension(data)
    except voms.VomsParseError:
        pass
    try:
        voms.parse_certificate(data)
    except voms.VomsParseError:
        pass


@FUZZ
@given(st.binary(max_size=512))
def test_fuzz_random_bytes(data):
    _parse_all(data)
    _parse_all(b"\x30" + bytes([len(data) & 0x7F]) + data)


@FUZZ
@given(st.data())
def test_fuzz_mutated_ac(sample, data):
    ext, der = sample
    target = data.draw(st.sampled_from([der, ext]))
    b = bytearray(target)
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "set", "cut", "insert", "delete"]))
        i = data.draw(st.integers(0, len(b) - 1))
        if op == "flip":
            b[i] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "set":
            b[i] = data.draw(st.integers(0, 255))
        elif op == "cut":
            b = b[:i]
        elif op == "insert":
            b[i:i] = data.draw(st.binary(min_size=1, max_size=4))
        else:
            del b[i:i + data.draw(st.integers(1, 8))]
        if not b:
            break
    _parse_all(bytes(b))


def _tlv_tree(depth):
    leaf = st.builds(lambda t, c: tlv(t, c), st.sampled_from([0x02, 0x04, 0x06, 0x18, 0x86, 0x03, 0x01, 0x0C]),
                     st.binary(max_size=20))
    if depth == 0:
        return leaf
    inner = _tlv_tree(depth - 1)
    return st.one_of(leaf, st.builds(lambda t, kids: tlv(t, b"".join(kids)),
                                     st.sampled_from([0x30, 0x31, 0xA0, 0xA3, 0xA4]),
                                     st.lists(inner, max_size=4)))


@FUZZ_TREE
@given(_tlv_tree(3))
def test_fuzz_structured_der(data):
    _parse_all(data)


class _Never:
    """Callables for vomscheck.check that accept everything: the decision must still
    refuse anything the parser refuses and never raise in lcmaps mode."""

    @staticmethod
    def lsc(vo, host):
        return None

    @staticmethod
    def legacy(vo):
        return []

    @staticmethod
    def sig(*a):
        return True

    @staticmethod
    def chain(ders, t):
        return True, 0, 0


@FUZZ_TREE
@given(st.data())
def test_fuzz_decision_never_raises(venv, data):
    import ssl
    eec = ssl.PEM_cert_to_DER_cert(venv.alice.cert.read_text())
    body = data.draw(st.one_of(st.binary(max_size=300), _tlv_tree(3)))
    leaf = tlv(0x30, tlv(0x30, tlv(0xA0, tlv(0x02, b"\x02")) + tlv(0x02, b"\x01") + tlv(0x30, b"")
                         + tlv(0x30, b"") + tlv(0x30, b"") + tlv(0x30, b"") + tlv(0x30, b"")
                         + tlv(0xA3, tlv(0x30, tlv(0x30, tlv(0x06, bytes.fromhex("2b06010401be45646405"))
                                                   + tlv(0x04, body)))))
                   + tlv(0x30, b"") + tlv(0x03, b"\x00"))
    res = vomscheck.check([leaf, eec], 1, 1_800_000_000, lookup_lsc=_Never.lsc,
                          legacy_certs=_Never.legacy, verify_signature=_Never.sig,
                          verify_chain=_Never.chain)
    assert res.fqans == () or res.errors == []
