"""What a verified certificate chain means: whose identity, which proxy kind, accepted or not.

Input is the native verifier's result (OpenSSL did signatures, validity, CRLs and the
RFC 3820 name and path-length rules); here we classify the chain and apply policy. The
identity always comes from the end-entity certificate found by walking down from the
trust anchor, never from the leaf's subject string.
"""
from glexec_py.errors import CallerError

# OpenSSL X509_V_ERR_* codes we interpret.
ERR_UNABLE_TO_GET_ISSUER_CERT = 2
ERR_UNABLE_TO_GET_CRL = 3
ERR_CERT_NOT_YET_VALID = 9
ERR_CERT_HAS_EXPIRED = 10
ERR_DEPTH_ZERO_SELF_SIGNED_CERT = 18
ERR_SELF_SIGNED_CERT_IN_CHAIN = 19
ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY = 20
ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE = 21
ERR_CERT_REVOKED = 23
ERR_INVALID_PURPOSE = 26

_UNTRUSTED = {ERR_UNABLE_TO_GET_ISSUER_CERT, ERR_DEPTH_ZERO_SELF_SIGNED_CERT, ERR_SELF_SIGNED_CERT_IN_CHAIN,
              ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY, ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE}
# Harmless by themselves, as in LCMAPS verify-proxy: no CRL published, SSL-client purpose.
_ALWAYS_TOLERATED = {ERR_UNABLE_TO_GET_CRL, ERR_INVALID_PURPOSE}

POLICY_IMPERSONATION = "1.3.6.1.5.5.7.21.1"
POLICY_INDEPENDENT = "1.3.6.1.5.5.7.21.2"
POLICY_LIMITED = "1.3.6.1.4.1.3536.1.1.1.9"
_ACCEPTED_POLICIES = {POLICY_IMPERSONATION: False, POLICY_LIMITED: True}  # -> limited?


class Identity:
    """The verified X.509 identity behind a proxy chain."""
    __slots__ = ("subject", "issuer", "eec_sha256", "leaf_sha256", "not_after", "depth", "limited", "kinds")

    def __init__(self, **kw):
        for k, v in kw.items():
            setattr(self, k, v)


def _refuse(reason, message, **detail):
    return CallerError(reason, "glexec: " + message, **detail)


def interpret(result, *, key_required=True):
    """Turn a native ChainResult into an Identity, or raise CallerError (201).

    `key_required`: the proxy file must hold the private key of the leaf (proof of
    possession) unless the caller is allowed to omit it."""
    if not result.ok:
        code = result.error
        detail = dict(openssl_error=code, depth=result.error_depth, text=result.error_text)
        if code == ERR_CERT_HAS_EXPIRED:
            raise _refuse("credential_expired", "credential has expired", **detail)
        if code in _UNTRUSTED:
            raise _refuse("credential_untrusted", "credential is not issued by a trusted CA", **detail)
        if code == ERR_CERT_REVOKED:
            raise _refuse("credential_revoked", "credential has been revoked", **detail)
        raise _refuse("credential_invalid", f"credential verification failed: {result.error_text}", **detail)
    chain = result.chain
    for depth, code in result.tolerated:
        if code not in _ALWAYS_TOLERATED:
            # INVALID_CA & co. only occur for legacy GT2/GT3 proxies, not accepted (yet).
            raise _refuse("credential_unsupported", "legacy (GT2/GT3) proxies are not accepted",
                          depth=depth, openssl_error=code)
    eec = None
    for index in range(len(chain) - 1, -1, -1):
        if not chain[index].is_ca:
            eec = index
            break
    if eec is None or eec == 0:
        raise _refuse("credential_not_proxy", "credential is not a proxy certificate chain")
    kinds, limited = [], False
    for index in range(eec - 1, -1, -1):
        cert = chain[index]
        if cert.proxy != "rfc3820":
            raise _refuse("credential_unsupported", "certificate below the end-entity certificate is not an RFC 3820 proxy",
                          depth=index)
        if cert.proxy_policy not in _ACCEPTED_POLICIES:
            raise _refuse("credential_policy", f"proxy policy {cert.proxy_policy} is not accepted", depth=index)
        this_limited = _ACCEPTED_POLICIES[cert.proxy_policy]
        if limited and not this_limited:
            raise _refuse("credential_invalid", "full proxy issued by a limited proxy", depth=index)
        limited = limited or this_limited
        kinds.append("rfc3820-limited" if this_limited else "rfc3820")
    if key_required and not (result.has_key and result.key_matches):
        raise _refuse("credential_no_key", "credential does not contain the private key of its proxy certificate")
    return Identity(subject=chain[eec].subject, issuer=chain[eec].issuer, eec_sha256=chain[eec].sha256,
                    leaf_sha256=chain[0].sha256, not_after=min(c.not_after for c in chain[:eec + 1]),
                    depth=eec, limited=limited, kinds=tuple(kinds))
