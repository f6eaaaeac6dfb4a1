"""core.vomscheck.check on mutated VOMS extensions (a real voms-proxy-fake AC with bytes
flipped, cut or spliced), with the real libcrypto verifiers: FQANs only from ACs of this
holder, valid now and signed by the VOMS server (tests/support/voms_oracle.py; the long
run is fuzz/fuzz_vomscheck.py)."""
import ssl
import time

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from glexec_py.core import vomscheck
from glexec_py.effects import native
from tests.support.voms_oracle import problems
from tests.voms.conftest import ac_ext_of, voms_fake

SKEW = 300


@pytest.fixture(scope="module")
def world(venv):
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519
    ext = ac_ext_of(voms_fake(venv.pki, venv.alice, venv.path("props")))
    eec = ssl.PEM_cert_to_DER_cert(open(venv.alice.cert).read())
    voms_der = ssl.PEM_cert_to_DER_cert(open(venv.pki.voms_host.cert).read())
    eec_x509 = x509.load_der_x509_certificate(eec)
    key = ed25519.Ed25519PrivateKey.generate()

    def leaf(value):
        import datetime
        t = datetime.datetime(2020, 1, 1)
        b = (x509.CertificateBuilder().subject_name(eec_x509.subject).issuer_name(eec_x509.subject)
             .public_key(key.public_key()).serial_number(7).not_valid_before(t)
             .not_valid_after(t + datetime.timedelta(days=1))
             .add_extension(x509.UnrecognizedExtension(
                 x509.ObjectIdentifier("1.3.6.1.4.1.8005.100.100.5"), value), critical=False))
        return b.sign(key, None).public_bytes(serialization.Encoding.DER)

    return {"ext": ext, "eec": eec, "voms": voms_der, "leaf": leaf, "ca_dir": str(venv.pki.ca_dir),
            "key": x509.load_der_x509_certificate(voms_der).public_key(), "at": int(time.time())}


def _run(w, value, mode, legacy):
    ders = [w["leaf"](value), w["eec"]]
    try:
        outcome = vomscheck.check(
            ders, 1, w["at"], mode=mode, skew=SKEW, hostname="wn1.example.org",
            lookup_lsc=lambda vo, host: None,
            legacy_certs=lambda vo: [w["voms"]] if legacy else [],
            verify_signature=native.verify_signature,
            verify_chain=lambda c, t: native.verify_der_chain(c, w["ca_dir"], t, crl_check=False))
    except Exception as e:
        outcome = e
    return outcome, problems(outcome, ders, 1, mode, w["at"], SKEW, w["key"])


def test_the_real_ac_grants_its_fqans(world):
    outcome, bad = _run(world, world["ext"], "lcmaps", True)
    assert bad == [] and outcome.fqans, outcome


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 4000), st.integers(1, 255)), min_size=1, max_size=3),
       st.integers(0, 4000), st.sampled_from(["lcmaps", "strict"]), st.booleans())
def test_prop_mutated_acs_never_grant_unsigned_fqans(world, flips, cut, mode, legacy):
    value = bytearray(world["ext"])
    for pos, x in flips:
        value[pos % len(value)] ^= x
    if cut < len(value) and cut % 3 == 0:
        value = value[:cut]
    outcome, bad = _run(world, bytes(value), mode, legacy)
    assert bad == []
