"""atheris target: glexec_py.core.voms (VOMS attribute-certificate parser).

Input: byte 0 selects the entry point (parse_ac / acs_from_extension / parse_certificate),
the rest is its DER.  Seeds: the VOMS extension of a real voms-proxy-fake proxy, its AC,
the VOMS host certificate and the user certificate (made once under
/var/lib/glexec-py-tests/fuzz-work/voms).

Oracles (beyond "no crash"):
  * the three entry points raise nothing but VomsParseError;
  * parse_ac: ac.der == input, ac.tbs is the signed acinfo TLV at offset of the outer
    header, the issuer DN is parse_der_name(ac.issuer), canonical_fqans are FQAN strings of
    the AC's VO without duplicates, times are ints with not_before <= not_after is NOT
    assumed (checked later by vomscheck), every ac_certs entry is a certificate
    parse_certificate accepts or refuses with VomsParseError only;
  * acs_from_extension: every AC returned is an exact slice of the input, in order,
    non-overlapping;
  * parse_certificate: subject_der / issuer_der are slices of the input and parse as DNs
    or raise DNError only.
"""
import os
import sys

import atheris

import _common
from _common import check

with atheris.instrument_imports():
    from glexec_py.core import dn, voms

VomsParseError = voms.VomsParseError


def _cert_checks(der, c):
    check(c.der == der, "CertFields.der differs from input")
    for part in (c.subject_der, c.issuer_der):
        check(part in der, "subject/issuer DER not a slice of the certificate")
        _common.only(dn.DNError, dn.parse_der_name, part)


def TestOneInput(data):
    if not data:
        return
    which, body = data[0] % 3, data[1:]
    if which == 0:
        ok, ac = _common.only(VomsParseError, voms.parse_ac, body)
        if not ok:
            return
        check(ac.der == body, "ac.der differs from input")
        check(body.find(ac.tbs) > 0 and ac.tbs[0] == 0x30, "tbs not a SEQUENCE slice of the AC")
        check(ac.issuer_dn == dn.parse_der_name(ac.issuer), "issuer_dn != parse_der_name(issuer)")
        check(type(ac.not_before) is int and type(ac.not_after) is int, "times not int")
        cf = ac.canonical_fqans
        check(len(set(cf)) == len(cf), f"duplicate canonical FQANs {cf!r}")
        for f in cf:
            check(type(f) is str and f.startswith("/" + ac.vo) and
                  (len(f) == len(ac.vo) + 1 or f[len(ac.vo) + 1] == "/"),
                  f"canonical FQAN {f!r} outside VO {ac.vo!r}")
        for c in ac.ac_certs:
            ok2, cf2 = _common.only(VomsParseError, voms.parse_certificate, c)
            if ok2:
                _cert_checks(bytes(c), cf2)
    elif which == 1:
        ok, acs = _common.only(VomsParseError, voms.acs_from_extension, body)
        if not ok:
            return
        pos = 0
        for a in acs:
            i = body.find(a, pos)
            check(a and i >= pos, "AC not an in-order slice of the extension")
            pos = i + len(a)
            _common.only(VomsParseError, voms.parse_ac, a)
    else:
        ok, c = _common.only(VomsParseError, voms.parse_certificate, body)
        if ok:
            _cert_checks(body, c)


def seeds():
    import ssl
    from pathlib import Path
    from tests.support.pki import TestPKI
    from tests.voms.conftest import VOMS_DN, ac_ext_of, voms_fake
    root = Path(_common.work_dir("voms"))
    import shutil
    shutil.rmtree(root / "pki", ignore_errors=True)     # seeds are made once per corpus
    pki = TestPKI(root / "pki")
    alice = pki.user("/DC=test/DC=glexec-py/CN=Alice")
    pki.voms_host = pki.user(VOMS_DN)
    out = []
    for i, extra in enumerate(([], ["-fqan", "/testvo/a/b/Role=NULL/Capability=NULL"])):
        p = voms_fake(pki, alice, root / f"v{i}.pem",
                      fqans=["/testvo/Role=NULL/Capability=NULL", "/testvo/prod/Role=pilot/Capability=NULL"],
                      extra=extra)
        ext = ac_ext_of(p)
        out.append(b"\x01" + ext)
        for ac in voms.acs_from_extension(ext):
            out.append(b"\x00" + ac)
    for cred in (alice, pki.voms_host):
        out.append(b"\x02" + ssl.PEM_cert_to_DER_cert(Path(cred.cert).read_text()))
    return out


if __name__ == "__main__":
    _common.seed(sys.argv, seeds)
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
