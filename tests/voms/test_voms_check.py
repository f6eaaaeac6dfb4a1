"""VOMS AC verification end to end with real proxies from voms-proxy-fake (issue 3 item 3,
security.md case 17): verify_chain -> interpret -> check_voms, lcmaps and strict modes."""
import os
import time

import pytest

from glexec_py.core import voms, vomscheck
from glexec_py.errors import CallerError
from tests.support.pki import TestPKI
from tests.voms.conftest import (CA_DN, FQANS, VO, VOMS_DN, VOMS_HOST, ac_ext_of, resign_ac,
                                 resign_proxy, run_check, tlv, voms_fake, wrap_acs)


def reasons(res):
    return [e["reason"] for e in res.errors]


def assert_dropped(venv, proxy, reason, **kw):
    res = run_check(venv, proxy, **kw)
    fqans, vo, errors = res
    assert fqans == () and vo is None, res
    assert reasons(res) == [reason], res
    with pytest.raises(CallerError) as ei:
        run_check(venv, proxy, mode="strict", **kw)
    assert ei.value.reason == "voms_invalid"
    assert ei.value.exit_code == 201
    assert ei.value.detail["voms_errors"][0]["reason"] == reason
    return res


@pytest.fixture(scope="module")
def good(venv):
    return voms_fake(venv.pki, venv.alice, venv.path("good"))


def test_good_ac_two_fqans_order_kept(venv, good):
    res = run_check(venv, good)
    fqans, vo, errors = res
    assert fqans == tuple(FQANS)
    assert vo == VO and errors == []
    assert res.cert_index == 0
    (ac,) = res.acs
    assert ac["issuer"] == VOMS_DN and ac["authority"] == f"{VO}://{VOMS_HOST}:15000"
    now = time.time()
    assert ac["not_before"] - 600 < now < ac["not_after"]
    # strict mode accepts it too
    assert run_check(venv, good, mode="strict").fqans == tuple(FQANS)


def test_fqan_short_forms_are_canonicalised(venv):
    p = voms_fake(venv.pki, venv.alice, venv.path("short"),
                  fqans=["/testvo/prod/Role=pilot", "/testvo", "/testvo/Role=NULL",
                         "/testvo/prod/Role=pilot/Capability=NULL", "/testvo/sub/grp"])
    fqans, vo, errors = run_check(venv, p)
    assert errors == []
    assert fqans == ("/testvo/prod/Role=pilot/Capability=NULL",
                     "/testvo/Role=NULL/Capability=NULL",
                     "/testvo/sub/grp/Role=NULL/Capability=NULL")


def test_proxy_of_a_voms_proxy_uses_the_inner_ac(venv, good):
    p = venv.path("proxy-of-voms")
    venv.pki.proxy(type(venv.alice)(cert=good, key=good, dn=""), p)
    res = run_check(venv, p)
    assert res.fqans == tuple(FQANS) and res.cert_index == 1


def test_no_voms_extension_is_not_an_error(venv):
    p = venv.pki.proxy(venv.alice, venv.path("plain"))
    res = run_check(venv, p, mode="strict")
    assert tuple(res) == ((), None, []) and res.cert_index is None


def test_expired_ac(venv):
    p = voms_fake(venv.pki, venv.alice, venv.path("expired"), extra=["-vomslife", "1", "-pastac", "3:00"])
    assert_dropped(venv, p, "voms_expired")


def test_ac_not_yet_valid(venv, good):
    assert_dropped(venv, good, "voms_not_yet_valid", at_time=int(time.time()) - 3600)


def test_skew_is_applied(venv):
    p = voms_fake(venv.pki, venv.alice, venv.path("edge"), extra=["-vomslife", "1", "-pastac", "1:02"])
    # expired 2 minutes ago: inside the default 300 s skew, outside a 60 s one
    assert run_check(venv, p).fqans == tuple(FQANS)
    assert reasons(run_check(venv, p, skew=60)) == ["voms_expired"]


def test_unknown_vo_without_lsc(venv):
    p = voms_fake(venv.pki, venv.alice, venv.path("othervo"), vo="othervo",
                  fqans=["/othervo/Role=NULL/Capability=NULL"])
    assert_dropped(venv, p, "voms_unknown_server")


def test_lsc_for_other_host_only(venv):
    p = voms_fake(venv.pki, venv.alice, venv.path("otherhost"), uri="voms2.example.org:15000")
    assert_dropped(venv, p, "voms_unknown_server")


def test_lsc_naming_a_different_dn(venv):
    venv.write_lsc("lscvo", VOMS_HOST, "/DC=test/DC=glexec-py/CN=someone else\n" + CA_DN + "\n")
    p = voms_fake(venv.pki, venv.alice, venv.path("lscvo"), vo="lscvo", fqans=["/lscvo"])
    assert_dropped(venv, p, "voms_lsc_mismatch")
    # a second chain that matches makes it valid; quoting and UID/USERID-style aliases parse
    venv.write_lsc("lscvo", VOMS_HOST, "/DC=test/DC=glexec-py/CN=someone else\n" + CA_DN
                   + "\n------ NEXT CHAIN ------\n\"" + VOMS_DN + "\"\n  " + CA_DN + "  \n")
    assert run_check(venv, p).fqans == ("/lscvo/Role=NULL/Capability=NULL",)
    # wrong CA line
    venv.write_lsc("lscvo", VOMS_HOST, VOMS_DN + "\n/DC=test/CN=Other CA\n")
    assert_dropped(venv, p, "voms_lsc_mismatch")
    # odd number of lines
    venv.write_lsc("lscvo", VOMS_HOST, VOMS_DN + "\n")
    assert_dropped(venv, p, "voms_lsc_mismatch")


def test_untrusted_lsc(venv):
    venv.write_lsc("badvo", VOMS_HOST, f"{VOMS_DN}\n{CA_DN}\n", mode=0o666)
    p = voms_fake(venv.pki, venv.alice, venv.path("badvo"), vo="badvo", fqans=["/badvo"])
    assert_dropped(venv, p, "vomsdir_untrusted")


def test_tampered_signature(venv, good):
    ac_der = voms.acs_from_extension(ac_ext_of(good))[0]
    bad = bytearray(ac_der)
    bad[-10] ^= 0x01                         # a byte of the signature value
    p = resign_proxy(good, venv.alice, venv.path("tampered"), wrap_acs([bytes(bad)]))
    assert_dropped(venv, p, "voms_signature")


def test_tampered_fqan_keeps_old_signature(venv, good):
    ext = ac_ext_of(good).replace(b"/testvo/prod/Role=pilot", b"/testvo/prod/Role=admin")
    p = resign_proxy(good, venv.alice, venv.path("fqan-edit"), ext)
    assert_dropped(venv, p, "voms_signature")


def test_signed_by_a_different_key(venv):
    other = TestPKI(venv.tmp / "other-ca", ca_dn=CA_DN)      # same names, different keys
    rogue = other.user(VOMS_DN)
    p = voms_fake(venv.pki, venv.alice, venv.path("rogue"), host=rogue)
    res = assert_dropped(venv, p, "voms_server_untrusted")
    assert "OpenSSL error" in res.errors[0]["detail"]


def test_holder_mismatch_ac_of_alice_in_bobs_proxy(venv, good):
    bob = voms_fake(venv.pki, venv.bob, venv.path("bob"))
    p = resign_proxy(bob, venv.bob, venv.path("spliced"), ac_ext_of(good))
    assert_dropped(venv, p, "voms_holder")
    # sanity: Bob's own AC in the re-signed proxy is fine
    p2 = resign_proxy(bob, venv.bob, venv.path("bob-resigned"), ac_ext_of(bob))
    assert run_check(venv, p2).fqans == tuple(FQANS)


def test_fqan_with_newline_is_malformed(venv):
    p = voms_fake(venv.pki, venv.alice, venv.path("newline"), fqans=["/testvo/a\nb"])
    assert_dropped(venv, p, "voms_malformed")


def test_fqan_of_another_vo_is_malformed(venv):
    p = voms_fake(venv.pki, venv.alice, venv.path("foreign-fqan"), fqans=["/testvo", "/atlas/Role=x"])
    assert_dropped(venv, p, "voms_malformed")


def test_revoked_voms_server_certificate(venv):
    pki = TestPKI(venv.tmp / "revoking-ca", ca_dn="/DC=test/DC=glexec-py/CN=Revoking CA")
    host = pki.user(VOMS_DN)
    alice = pki.user("/DC=test/DC=glexec-py/CN=Alice R")
    venv.write_lsc("revvo", VOMS_HOST, f"{VOMS_DN}\n/DC=test/DC=glexec-py/CN=Revoking CA\n")
    pki.voms_host = host
    p = voms_fake(pki, alice, venv.path("revoked"), vo="revvo", fqans=["/revvo"])

    class V:
        pass
    v = V()
    v.pki, v.vomsdir = pki, venv.vomsdir
    assert run_check(v, p).fqans == ("/revvo/Role=NULL/Capability=NULL",)
    pki.revoke(host)
    res = run_check(v, p)
    assert reasons(res) == ["voms_server_untrusted"] and "23" in res.errors[0]["detail"]


def test_legacy_host_certificate_in_vomsdir(venv):
    p = voms_fake(venv.pki, venv.alice, venv.path("legacy"), vo="legacyvo", fqans=["/legacyvo/g"])
    assert_dropped(venv, p, "voms_unknown_server")
    d = os.path.join(venv.vomsdir, "legacyvo")
    os.makedirs(d, 0o755, exist_ok=True)
    cert = os.path.join(d, "voms.example.org.pem")
    with open(cert, "wb") as f:
        f.write(venv.pki.voms_host.cert.read_bytes())
    os.chmod(cert, 0o664)                    # group-writable: ignored
    assert_dropped(venv, p, "voms_unknown_server")
    os.chmod(cert, 0o644)
    assert run_check(venv, p).fqans == ("/legacyvo/g/Role=NULL/Capability=NULL",)


def _replace_ext(tbs, oid_der, new_ext):
    """acinfo with extension ``oid_der`` replaced by ``new_ext`` (a full Extension TLV),
    or appended when oid_der is None."""
    f = voms._items(tbs, *voms._expect(tbs, 0, len(tbs), 0x30, "t"))
    t, s, e, ts = f[-1]
    exts = [tbs[xs:xe] for _, _, xe, xs in voms._items(tbs, s, e)]
    if oid_der is None:
        exts.append(new_ext)
    else:
        exts = [new_ext if x[2:].startswith(oid_der) else x for x in exts]
    body = tbs[f[0][3]:ts] + tlv(0x30, b"".join(exts))
    return tlv(0x30, body)


def _forged(venv, good, name, mutate):
    ac_der = voms.acs_from_extension(ac_ext_of(good))[0]
    new_ac = resign_ac(ac_der, venv.pki.voms_host, mutate)
    return resign_proxy(good, venv.alice, venv.path(name), wrap_acs([new_ac]))


def test_resigned_ac_roundtrip_is_valid(venv, good):
    p = _forged(venv, good, "resigned", lambda tbs: tbs)
    assert run_check(venv, p).fqans == tuple(FQANS)


def test_unknown_critical_extension(venv, good):
    ext = tlv(0x30, tlv(0x06, bytes([0x2A, 0x03, 0x04])) + tlv(0x01, b"\xff") + tlv(0x04, b"\x05\x00"))
    p = _forged(venv, good, "critext", lambda tbs: _replace_ext(tbs, None, ext))
    assert_dropped(venv, p, "voms_malformed")
    # the same extension non-critical is ignored
    ext2 = tlv(0x30, tlv(0x06, bytes([0x2A, 0x03, 0x04])) + tlv(0x04, b"\x05\x00"))
    p2 = _forged(venv, good, "noncritext", lambda tbs: _replace_ext(tbs, None, ext2))
    assert run_check(venv, p2).fqans == tuple(FQANS)


def test_targets(venv, good):
    target = tlv(0x30, tlv(0x30, tlv(0xA0, tlv(0x86, b"ce.example.org"))))
    ext = tlv(0x30, tlv(0x06, bytes([0x55, 0x1D, 0x37])) + tlv(0x01, b"\xff") + tlv(0x04, target))
    p = _forged(venv, good, "targets", lambda tbs: _replace_ext(tbs, None, ext))
    assert_dropped(venv, p, "voms_target")
    assert run_check(venv, p, hostname="ce.example.org").fqans == tuple(FQANS)


def test_duplicated_acs(venv, good):
    ac_der = voms.acs_from_extension(ac_ext_of(good))[0]
    p = resign_proxy(good, venv.alice, venv.path("dup"), wrap_acs([ac_der, ac_der]))
    res = run_check(venv, p)
    assert res.fqans == tuple(FQANS) and len(res.acs) == 2
    # one good and one bad AC: everything is dropped
    bad = bytearray(ac_der)
    bad[-5] ^= 0x40
    p2 = resign_proxy(good, venv.alice, venv.path("dup-bad"), wrap_acs([ac_der, bytes(bad)]))
    res = assert_dropped(venv, p2, "voms_signature")
    assert res.errors[0]["ac"] == 1


def test_garbage_extension_value(venv, good):
    p = resign_proxy(good, venv.alice, venv.path("garbage"), b"\x30\x03\x02\x01\x00")
    assert_dropped(venv, p, "voms_malformed")


def test_vomscheck_rejects_bad_arguments():
    with pytest.raises(ValueError):
        vomscheck.check([], 0, 0, lookup_lsc=None, legacy_certs=None, verify_signature=None,
                        verify_chain=None, mode="lenient")


def _ac_of(good):
    return voms.parse_ac(voms.acs_from_extension(ac_ext_of(good))[0])


def _swap_once(tbs, old, new, count=1):
    """The first occurrence of ``old`` replaced (``count``: how often it must occur)."""
    assert len(old) == len(new) and old != new and tbs.count(old) == count
    return tbs.replace(old, new, 1)


def _renamed(name_der):
    """The same Name with its last character changed (same length, still a valid Name)."""
    return name_der[:-1] + (b"X" if name_der[-1:] != b"X" else b"Y")


def test_holder_serial_alone_must_match(venv, good):
    """An AC naming the right holder issuer but another serial (another certificate of
    the same CA) is not the holder's, however validly signed."""
    s = _ac_of(good).holder_serial
    enc = lambda v: tlv(0x02, v.to_bytes(v.bit_length() // 8 + 1, "big"))
    p = _forged(venv, good, "holder-serial", lambda tbs: _swap_once(tbs, enc(s), enc(s ^ 1)))
    assert_dropped(venv, p, "voms_holder")


def test_holder_issuer_alone_must_match(venv, good):
    hi = _ac_of(good).holder_issuer
    p = _forged(venv, good, "holder-issuer", lambda tbs: _swap_once(tbs, hi, _renamed(hi)))
    assert_dropped(venv, p, "voms_holder")


def test_holder_issuer_uid_must_match(venv, good):
    """An issuerUID in the AC's holder that the end-entity certificate does not have."""
    def add_uid(tbs):
        f = voms._items(tbs, *voms._expect(tbs, 0, len(tbs), 0x30, "t"))
        _, hs, he, hts = f[1]                                   # holder
        (_, bs, be, _), = voms._items(tbs, hs, he)              # [0] baseCertificateID
        holder = tlv(0x30, tlv(0xA0, tbs[bs:be] + tlv(0x03, b"\x00\x01\x02")))
        return tlv(0x30, tbs[f[0][3]:hts] + holder + tbs[he:f[-1][2]])
    p = _forged(venv, good, "holder-uid", add_uid)
    assert voms.parse_ac(voms.acs_from_extension(ac_ext_of(p))[0]).holder_uid == b"\x00\x01\x02"
    assert_dropped(venv, p, "voms_holder")


def test_ac_issuer_must_be_the_lsc_signer(venv, good):
    """With an .lsc, the AC's issuer must be the subject of the VOMS server certificate
    that signed it (the name is what the audit and the legacy lookup trust)."""
    iss = _ac_of(good).issuer
    # first in the AC's issuer field, then as the subject of the server certificate it carries
    p = _forged(venv, good, "ac-issuer", lambda tbs: _swap_once(tbs, iss, _renamed(iss), count=2))
    assert_dropped(venv, p, "voms_signature")


def test_md5_signed_ac_is_refused(venv, good):
    """An AC signed by the real VOMS key with md5WithRSAEncryption (in the acinfo and
    outside) is refused by the allow-list, although libcrypto verifies the signature."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding
    from glexec_py.effects import native
    ac = _ac_of(good)
    sha256_rsa = tlv(0x06, bytes.fromhex("2a864886f70d01010b"))
    md5_rsa = tlv(0x06, bytes.fromhex("2a864886f70d010104"))
    assert ac.sig_alg.count(sha256_rsa) == 1
    alg = ac.sig_alg.replace(sha256_rsa, md5_rsa)
    f = voms._items(ac.tbs, *voms._expect(ac.tbs, 0, len(ac.tbs), 0x30, "t"))
    _, _, se, ss = f[3]                                         # the acinfo's signature field
    assert ac.tbs[ss:se] == ac.sig_alg
    tbs = tlv(0x30, ac.tbs[f[0][3]:ss] + alg + ac.tbs[se:f[-1][2]])
    key = serialization.load_pem_private_key(venv.pki.voms_host.key.read_bytes(), None)
    sig = tlv(0x03, b"\x00" + key.sign(tbs, padding.PKCS1v15(), hashes.MD5()))
    new_ac = tlv(0x30, tbs + alg + sig)
    md5 = voms.parse_ac(new_ac)
    assert md5.sig_alg_oid == "1.2.840.113549.1.1.4"
    signer = voms.parse_certificate(md5.ac_certs[0])
    assert native.verify_signature(signer.der, md5.sig_alg, md5.tbs, md5.signature)
    p = resign_proxy(good, venv.alice, venv.path("md5"), wrap_acs([new_ac]))
    res = assert_dropped(venv, p, "voms_signature")
    assert "algorithm 1.2.840.113549.1.1.4 not accepted" in res.errors[0]["detail"], res
