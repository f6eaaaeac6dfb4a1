"""core.identity: one model for proxies and tokens."""
from cryptography import x509
from cryptography.x509.oid import NameOID

from glexec_py.core.identity import Identity, from_proxy, from_token, oneline_bytes, roles_of

# the EEC subject /DC=org/CN=André as DER (the identity key comes from it, not from the text)
EEC_DER = x509.Name([x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "org"),
                     x509.NameAttribute(NameOID.COMMON_NAME, "Andr\u00e9")]).public_bytes()


class _Cert:
    def __init__(self, nb, na, subject_der=None):
        self.not_before, self.not_after, self.subject_der = nb, na, subject_der


class _ChainIdentity:
    subject, issuer = "/DC=org/CN=Andr\\xC3\\xA9", "/DC=org/CN=CA"
    eec_sha256, leaf_sha256, depth, kinds = "ee" * 32, "1f" * 32, 1, ("rfc3820",)


class _Token:
    issuer, subject, groups, not_before, expires, fingerprint = "https://iss", "Sub", ("/vo/a",), 10, 20, "ab" * 32

    def to_audit(self):
        return {"sub": self.subject}


def test_proxy_identity_uses_the_eec_and_the_chain_validity():
    chain = [_Cert(100, 500), _Cert(50, 900, EEC_DER), _Cert(0, 10 ** 9)]  # proxy, EEC, CA
    ident = from_proxy(_ChainIdentity(), chain, ("/vo/Role=NULL/Capability=NULL", "/vo/prod/Role=pilot/Capability=NULL"))
    assert (ident.kind, ident.subject, ident.issuer) == ("x509", _ChainIdentity.subject, "/DC=org/CN=CA")
    assert (ident.not_before, ident.not_after) == (100, 500)  # the CA's own validity does not count
    assert ident.groups[0] == "/vo/Role=NULL/Capability=NULL"  # first = primary, order kept
    assert ident.roles == ("pilot",)
    assert ident.key == ("x509", "/DC=org/CN=Andr\u00e9") == ("x509", ident.canonical)
    assert ident.mapping_name == b"/DC=org/CN=Andr\\xC3\\xA9"


def test_token_identity_key_is_issuer_and_subject():
    ident = from_token(_Token())
    assert ident.key == ("jwt", "https://iss", "Sub") and ident.mapping_name == b"https://iss,Sub"
    other = Identity("jwt", "https://other", "Sub", (), (), 0, 0, "", {})
    assert other.key != ident.key  # the same sub from two issuers is two identities


def test_oneline_bytes_matches_openssl_escapes():
    assert oneline_bytes("/CN=Andr\u00e9") == b"/CN=Andr\\xC3\\xA9"
    assert oneline_bytes("/CN=plain") == b"/CN=plain"


def test_roles_of():
    assert roles_of(["/vo/Role=NULL/Capability=NULL", "/vo/g/Role=prod/Capability=NULL",
                     "/vo/h/Role=prod/Capability=NULL"]) == ["prod"]
