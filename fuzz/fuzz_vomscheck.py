"""atheris target: glexec_py.core.vomscheck.check (the VOMS decision: which FQANs of a
verified chain may be used), with the real libcrypto verifiers (effects.native) behind it.

Input: byte 0 picks the mode (lcmaps / strict) and the trust source (.lsc / legacy
certificate); the rest is the value of the VOMS extension (a sequence of ACs), put into a
proxy certificate above a real end-entity certificate.  Seeds: real extensions made by
voms-proxy-fake for that user (PKI made once under fuzz-work/vomscheck; the check runs at
a fixed time, so the corpus never expires).

Oracles (beyond "no crash"):
  * lcmaps mode raises nothing; strict mode raises nothing but CallerError (201,
    "voms_invalid"); an error means no FQANs at all (lcmaps) and no VO;
  * every FQAN granted comes from an AC that: parses, names the end-entity certificate as
    holder (serial and issuer/subject), is valid at the check time (± skew), and whose
    signature over its exact acinfo bytes verifies with the VOMS server's public key --
    re-checked here with `cryptography`, not with the code under test;
  * the FQANs are canonical, unique, and inside the AC's VO.
"""
import os
import sys

import atheris

import _common
from _common import check

with atheris.instrument_imports(include=["glexec_py.core"]):
    from glexec_py.core import voms, vomscheck
from glexec_py.effects import native
from tests.support.voms_oracle import problems

WORK = _common.work_dir("vomscheck")
SKEW = 300
STATE = {}


def _setup():
    """Runs as: root.  The PKI, the user's certificate, the VOMS server certificate and the
    seeds (made once; kept in WORK)."""
    from pathlib import Path
    marker = os.path.join(WORK, "at_time")
    if not os.path.exists(marker):
        import shutil
        import time
        from tests.support.pki import TestPKI
        from tests.voms.conftest import VOMS_DN, ac_ext_of, voms_fake
        shutil.rmtree(os.path.join(WORK, "pki"), ignore_errors=True)
        pki = TestPKI(Path(WORK) / "pki")
        alice = pki.user("/DC=test/DC=glexec-py/CN=Alice")
        pki.voms_host = pki.user(VOMS_DN)
        for i, extra in enumerate(([], ["-fqan", "/testvo/a/b/Role=NULL/Capability=NULL"], ["-vomslife", "1:00"])):
            p = voms_fake(pki, alice, Path(WORK) / f"v{i}.pem", fqans=[
                "/testvo/Role=NULL/Capability=NULL", "/testvo/prod/Role=pilot/Capability=NULL"], extra=extra)
            with open(os.path.join(WORK, f"seed{i}.ext"), "wb") as f:
                f.write(ac_ext_of(p))
        for name, cred in (("eec.pem", alice), ("voms.pem", pki.voms_host)):
            shutil.copyfile(cred.cert, os.path.join(WORK, name))
        with open(os.path.join(WORK, "ca_dir"), "w") as f:
            f.write(str(pki.ca_dir))
        with open(marker, "w") as f:
            f.write(str(int(time.time()) + 600))
    import ssl
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ed25519
    read = lambda n: open(os.path.join(WORK, n), "rb").read()      # noqa: E731
    STATE["at"] = int(read("at_time"))
    STATE["ca_dir"] = read("ca_dir").decode()
    STATE["eec"] = ssl.PEM_cert_to_DER_cert(read("eec.pem").decode())
    STATE["voms"] = ssl.PEM_cert_to_DER_cert(read("voms.pem").decode())
    STATE["voms_key"] = x509.load_der_x509_certificate(STATE["voms"]).public_key()
    STATE["eec_x509"] = x509.load_der_x509_certificate(STATE["eec"])
    STATE["leaf_key"] = ed25519.Ed25519PrivateKey.generate()
    vc = voms.parse_certificate(STATE["voms"])
    STATE["lsc"] = [[(vomscheck._dn.canonical(vomscheck._dn.parse_der_name(vc.subject_der)),
                      vomscheck._dn.canonical(vomscheck._dn.parse_der_name(vc.issuer_der)))]]
    return [read(n) for n in sorted(os.listdir(WORK)) if n.endswith(".ext")]


def _leaf(ext_value):
    """A proxy-shaped certificate above the EEC carrying ``ext_value`` as its VOMS extension
    (vomscheck never looks at the proxy's own signature: the chain was verified before)."""
    import datetime
    from cryptography import x509
    eec = STATE["eec_x509"]
    now = datetime.datetime(2020, 1, 1)
    b = (x509.CertificateBuilder().subject_name(eec.subject).issuer_name(eec.subject)
         .public_key(STATE["leaf_key"].public_key()).serial_number(7)
         .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
         .add_extension(x509.UnrecognizedExtension(x509.ObjectIdentifier(voms.OID_VOMS_ACSEQ), ext_value),
                        critical=False))
    from cryptography.hazmat.primitives import serialization
    return b.sign(STATE["leaf_key"], None).public_bytes(serialization.Encoding.DER)


def TestOneInput(data):
    if not data:
        return
    mode = "strict" if data[0] & 1 else "lcmaps"
    use_lsc = bool(data[0] & 2)
    try:
        leaf = _leaf(data[1:])
    except ValueError:
        return                                  # cryptography refuses to encode it
    ders = [leaf, STATE["eec"]]
    try:
        outcome = vomscheck.check(
            ders, 1, STATE["at"], mode=mode, skew=SKEW, hostname="wn1.example.org",
            lookup_lsc=lambda vo, host: STATE["lsc"] if use_lsc else None,
            legacy_certs=lambda vo: [] if use_lsc else [STATE["voms"]],
            verify_signature=native.verify_signature,
            verify_chain=lambda c, t: native.verify_der_chain(c, STATE["ca_dir"], t, crl_check=False))
    except Exception as e:          # judged by the oracle: only CallerError, only in strict mode
        outcome = e
    bad = problems(outcome, ders, 1, mode, STATE["at"], SKEW, STATE["voms_key"])
    check(not bad, "; ".join(bad))

if __name__ == "__main__":
    seeds = _setup()
    _common.seed(sys.argv, lambda: [bytes([k]) + s for s in seeds for k in range(4)])
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
