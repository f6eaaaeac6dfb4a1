"""What a verified certificate chain means: whose identity, which proxy kind, accepted or not.

Input is the native verifier's result (OpenSSL did signatures, validity, CRLs and the
RFC 3820 name and path-length rules); here we walk the chain from the trust anchor down,
as LCMAPS verify-proxy's ``grid_verifyChain`` does, classify every certificate, judge every
error the verifier tolerated against that classification, and apply policy. The identity
always comes from the end-entity certificate found by that walk, never from the leaf's
subject string.

Classification (trust anchor -> leaf):

- CA: basicConstraints CA:TRUE, above the end-entity certificate (EEC). CA path lengths
  are re-checked counting CA certificates only (OpenSSL counts legacy proxies as CAs).
- EEC: the first certificate that is not a CA. Exactly one; a proxy extension on it or on
  a CA refuses the chain.
- Below the EEC every certificate must be a proxy *proven by structure*: issuer DER ==
  the subject DER of the certificate above it, subject DER == that subject DER plus exactly
  one RDN holding a single CN, not a CA. Then its kind is
    * RFC 3820 (OpenSSL's proxyCertInfo) or GT3 (critical 1.3.6.1.4.1.3536.1.222) with
      policy impersonation (full) or limited; independent and any other policy: refused;
    * otherwise GT2 if that CN is exactly ``proxy`` (full) or ``limited proxy`` (limited);
    * otherwise it is not a proxy: refused (an end entity signing an end entity).
  All proxies of one chain are of one generation (GT2, GT3 or RFC 3820; the Globus tools
  cannot make anything else); after a limited proxy every further proxy must be limited;
  a proxy path length (RFC and GT3) of n allows n more proxies below it.
- Tolerated verifier errors are accepted only where the classification explains them:
  UNABLE_TO_GET_CRL (3) and INVALID_PURPOSE (26) anywhere (as LCMAPS: no CRL published, an
  SSL-client notion); CRL_HAS_EXPIRED (12) anywhere (recorded only when the caller of
  verify_chain allowed it); INVALID_CA (79) and KEYUSAGE_NO_CERTSIGN (32) only at the
  issuer of a GT2/GT3 proxy; UNHANDLED_CRITICAL_EXTENSION (34) only at a GT3 proxy;
  PATH_LENGTH_EXCEEDED (25) only at a CA of a legacy chain (CA path lengths re-checked
  here). Anything else refuses.
"""
from glexec_py.errors import CallerError

# OpenSSL X509_V_ERR_* codes we interpret.
ERR_UNABLE_TO_GET_ISSUER_CERT = 2
ERR_UNABLE_TO_GET_CRL = 3
ERR_CERT_NOT_YET_VALID = 9
ERR_CERT_HAS_EXPIRED = 10
ERR_CRL_HAS_EXPIRED = 12
ERR_DEPTH_ZERO_SELF_SIGNED_CERT = 18
ERR_SELF_SIGNED_CERT_IN_CHAIN = 19
ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY = 20
ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE = 21
ERR_CERT_REVOKED = 23
ERR_PATH_LENGTH_EXCEEDED = 25
ERR_INVALID_PURPOSE = 26
ERR_KEYUSAGE_NO_CERTSIGN = 32
ERR_UNHANDLED_CRITICAL_EXTENSION = 34
ERR_INVALID_CA = 79

_UNTRUSTED = {ERR_UNABLE_TO_GET_ISSUER_CERT, ERR_DEPTH_ZERO_SELF_SIGNED_CERT, ERR_SELF_SIGNED_CERT_IN_CHAIN,
              ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY, ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE}
# Harmless by themselves, as in LCMAPS verify-proxy: no CRL published, SSL-client purpose;
# an expired CRL is only ever recorded when verify_chain(crl_expired_ok=True) allowed it.
_ALWAYS_TOLERATED = {ERR_UNABLE_TO_GET_CRL, ERR_INVALID_PURPOSE, ERR_CRL_HAS_EXPIRED}

POLICY_IMPERSONATION = "1.3.6.1.5.5.7.21.1"
POLICY_INDEPENDENT = "1.3.6.1.5.5.7.21.2"
POLICY_LIMITED = "1.3.6.1.4.1.3536.1.1.1.9"
_ACCEPTED_POLICIES = {POLICY_IMPERSONATION: False, POLICY_LIMITED: True}  # -> limited?
_CN = "2.5.4.3"
_GT2_CN = {"proxy": False, "limited proxy": True}                       # -> limited?
_LEGACY = ("gt2", "gt3")


class Identity:
    """The verified X.509 identity behind a proxy chain.

    subject/issuer: the EEC's (oneline); depth: index of the EEC in the chain (= number of
    proxies); limited: some proxy is limited; kinds: one per proxy from the EEC down to the
    leaf, each "gt2", "gt3" or "rfc3820", with "-limited" appended for limited proxies."""
    __slots__ = ("subject", "issuer", "eec_sha256", "leaf_sha256", "not_after", "depth", "limited", "kinds")

    def __init__(self, **kw):
        for k, v in kw.items():
            setattr(self, k, v)


def _refuse(reason, message, **detail):
    return CallerError(reason, "glexec: " + message, **detail)


def _rdns(der):
    """The raw DER of each RDN of a Name (root first); ValueError (DNError) if malformed."""
    from glexec_py.core.dn import DNError, _tl
    der = bytes(der)
    tag, s, e = _tl(der, 0, len(der))
    if tag != 0x30 or e != len(der):
        raise DNError("Name is not one SEQUENCE")
    out = []
    while s < e:
        tag, cs, ce = _tl(der, s, e)
        if tag != 0x31:
            raise DNError("RDN is not a SET")
        out.append(der[s:ce])
        s = ce
    return out


def _proxy_cn(cert, parent):
    """The value of the one CN RDN that makes ``cert`` a proxy of ``parent`` by structure
    (issuer == parent subject, subject == parent subject + one single-CN RDN, byte-exact),
    or None."""
    from glexec_py.core.dn import parse_der_name
    if cert.issuer_der != parent.subject_der:
        return None
    try:
        mine, theirs = _rdns(cert.subject_der), _rdns(parent.subject_der)
        last = parse_der_name(cert.subject_der)[-1] if mine else ()
    except ValueError:
        return None
    if len(mine) != len(theirs) + 1 or mine[:-1] != theirs or len(last) != 1 or last[0][0] != _CN:
        return None
    return last[0][1]


def _classify(chain):
    """(eec index, [(generation, limited)] per index) or raise CallerError; the walk of the
    module doc, trust anchor first."""
    classes, eec, gen, limited = [None] * len(chain), None, None, False
    for i in range(len(chain) - 1, -1, -1):
        cert = chain[i]
        if eec is None:
            if cert.proxy:
                raise _refuse("credential_invalid", "a CA or end-entity certificate carries a proxy extension",
                              depth=i)
            if cert.is_ca:
                classes[i] = ("ca", False)
                continue
            eec, classes[i] = i, ("eec", False)
            continue
        cn = None if cert.is_ca else _proxy_cn(cert, chain[i + 1])
        if cn is None:
            raise _refuse("credential_not_proxy", "certificate below the end-entity certificate is not a proxy",
                          depth=i)
        if cert.proxy:
            if cert.proxy_policy not in _ACCEPTED_POLICIES:
                raise _refuse("credential_policy", f"proxy policy {cert.proxy_policy or '?'} is not accepted",
                              depth=i)
            kind, this_limited = cert.proxy, _ACCEPTED_POLICIES[cert.proxy_policy]
        elif cn in _GT2_CN:
            kind, this_limited = "gt2", _GT2_CN[cn]
        else:
            raise _refuse("credential_not_proxy", "certificate below the end-entity certificate is not a proxy",
                          depth=i)
        if gen is not None and kind != gen:
            raise _refuse("credential_invalid", f"{kind} proxy issued by a {gen} proxy", depth=i)
        if limited and not this_limited:
            raise _refuse("credential_invalid", "full proxy issued by a limited proxy", depth=i)
        if cert.proxy and cert.proxy_pathlen >= 0 and i > cert.proxy_pathlen:
            raise _refuse("credential_invalid", "proxy path length exceeded", depth=i)
        gen, limited, classes[i] = kind, limited or this_limited, (kind, this_limited)
    if eec is None or eec == 0:
        raise _refuse("credential_not_proxy", "credential is not a proxy certificate chain")
    for j in range(eec + 1, len(chain)):        # CA path lengths, counting CAs only
        below = sum(1 for k in range(eec + 1, j) if chain[k].subject_der != chain[k].issuer_der)
        if chain[j].ca_pathlen >= 0 and below > chain[j].ca_pathlen:
            raise _refuse("credential_invalid", "CA path length exceeded", depth=j)
    return eec, classes


def _explained(code, depth, eec, classes, chain):
    """Whether a tolerated verifier error at ``depth`` is what the classification predicts."""
    if code in _ALWAYS_TOLERATED:
        return True
    if code in (ERR_INVALID_CA, ERR_KEYUSAGE_NO_CERTSIGN):  # the issuer of a GT2/GT3 proxy
        return 1 <= depth <= eec and classes[depth - 1][0] in _LEGACY
    if code == ERR_UNHANDLED_CRITICAL_EXTENSION:
        return 0 <= depth < eec and classes[depth][0] == "gt3"
    if code == ERR_PATH_LENGTH_EXCEEDED:                    # CA path length re-checked by _classify
        return eec < depth < len(chain) and chain[depth].ca_pathlen >= 0 and classes[0][0] in _LEGACY
    return False


def _check_result(result):
    if result.ok:
        return
    code = result.error
    detail = dict(openssl_error=code, depth=result.error_depth, text=result.error_text)
    if code == ERR_CERT_HAS_EXPIRED:
        raise _refuse("credential_expired", "credential has expired", **detail)
    if code in _UNTRUSTED:
        raise _refuse("credential_untrusted", "credential is not issued by a trusted CA", **detail)
    if code == ERR_CERT_REVOKED:
        raise _refuse("credential_revoked", "credential has been revoked", **detail)
    raise _refuse("credential_invalid", f"credential verification failed: {result.error_text}", **detail)


def interpret(result, *, key_required=True, allow_limited=True, require_limited=False,
              max_proxy_lifetime=None, min_remaining=None, now=None, allow_legacy=True,
              legacy_max_levels=1):
    """Turn a native ChainResult into an Identity, or raise CallerError (201).

    key_required: the proxy file must hold the private key of the leaf (proof of possession)
    unless the caller is allowed to omit it. allow_limited=False: any limited proxy refuses
    (credential_limited); require_limited: the leaf must be a limited proxy (GT2, GT3 or
    RFC; credential_limited). max_proxy_lifetime (seconds): no proxy level may have a
    validity period (notAfter - notBefore) longer (credential_lifetime). min_remaining
    (seconds): the earliest notAfter of the proxies and the EEC must be at least that far
    after ``now`` (default: the current time; credential_expiring). allow_legacy=False:
    GT2/GT3 proxies refuse (credential_legacy). legacy_max_levels: how many GT2/GT3 proxy
    levels a chain may have (credential_legacy beyond); the default 1 is what LCMAPS
    verify-proxy accepts with OpenSSL 3 (it refuses a proxy of a GT2/GT3 proxy: error 32 at
    the EEC). Structural faults: see the module doc."""
    _check_result(result)
    chain = result.chain
    eec, classes = _classify(chain)
    for depth, code in result.tolerated:
        if not _explained(code, depth, eec, classes, chain):
            raise _refuse("credential_invalid", f"verification error {code} at depth {depth} is not explained "
                          "by the chain", depth=depth, openssl_error=code)
    proxies = classes[:eec]
    if not allow_legacy and classes[0][0] in _LEGACY:
        raise _refuse("credential_legacy", "legacy (GT2/GT3) proxies are not accepted", kind=classes[0][0])
    if classes[0][0] in _LEGACY and eec > legacy_max_levels:
        raise _refuse("credential_legacy", f"{eec} levels of legacy (GT2/GT3) proxies, at most "
                      f"{legacy_max_levels} accepted", kind=classes[0][0])
    limited = any(lim for _, lim in proxies)
    if limited and not allow_limited:
        raise _refuse("credential_limited", "limited proxies are not accepted")
    if require_limited and not classes[0][1]:
        raise _refuse("credential_limited", "a limited proxy is required")
    if max_proxy_lifetime is not None:
        for i in range(eec):
            period = chain[i].not_after - chain[i].not_before
            if period > max_proxy_lifetime:
                raise _refuse("credential_lifetime", f"proxy lifetime {period} s exceeds {max_proxy_lifetime} s",
                              depth=i)
    not_after = min(c.not_after for c in chain[:eec + 1])
    if min_remaining is not None:
        if now is None:
            import time
            now = int(time.time())
        if not_after - now < min_remaining:
            raise _refuse("credential_expiring", f"credential expires in {not_after - now} s, "
                          f"less than the required {min_remaining} s")
    if key_required and not (result.has_key and result.key_matches):
        raise _refuse("credential_no_key", "credential does not contain the private key of its proxy certificate")
    kinds = tuple(k + ("-limited" if lim else "") for k, lim in reversed(proxies))
    return Identity(subject=chain[eec].subject, issuer=chain[eec].issuer, eec_sha256=chain[eec].sha256,
                    leaf_sha256=chain[0].sha256, not_after=not_after, depth=eec, limited=limited, kinds=kinds)
