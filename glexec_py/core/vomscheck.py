"""The VOMS decision: which FQANs of a verified proxy chain may be used.  Pure.

Called after the X.509 chain verified, with the verified chain's DER certificates (leaf
first) and the index of the end-entity certificate.  File and libcrypto access come in as
callables (``glexec_py.effects.vomsdir.check_voms`` supplies the real ones).

An AC is valid iff (checked in this order, the first failure is recorded):
 1. it parses strictly (``voms.parse_ac``)                         -> ``voms_malformed``
 2. holder: baseCertificateID serial == EEC serial and its issuer name equals the EEC's
    issuer (VOMS servers) or the EEC's subject (``voms-proxy-fake``; VOMS accepts both),
    issuerUID equal or both absent                                  -> ``voms_holder``
 3. at_time within [not_before - skew, not_after + skew]           -> ``voms_not_yet_valid``
                                                                      / ``voms_expired``
 4. a targets extension must name ``hostname``                     -> ``voms_target``
 5. the signer: if the AC carries ac_certs and ``<vomsdir>/<vo>/<host>.lsc`` exists, one
    chain of the .lsc must match ac_certs pairwise (subject, issuer; DNs compared parsed,
    ``dn.parse_slash`` on the .lsc side) and the signer is ac_certs[0]   -> ``voms_lsc_mismatch``;
    otherwise (legacy) a trusted certificate file in ``<vomsdir>/<vo>/`` or ``<vomsdir>/``
    whose subject is the AC issuer and whose key verifies the AC      -> ``voms_unknown_server``;
    an unreadable/untrusted vomsdir file                             -> ``vomsdir_untrusted``
 6. AC issuer name == signer subject; signature over the exact acinfo bytes verifies with
    the signer's key, algorithm in ``voms.SIG_ALGS``                   -> ``voms_signature``
 7. the signer (plus the other ac_certs as untrusted intermediates) verifies against the CA
    dir at at_time: not expired, not revoked, no proxy                -> ``voms_server_untrusted``
Modes: ``"lcmaps"`` (default; any error drops ALL FQANs of ALL ACs, the errors are
returned for the audit record, DN-only mapping continues) and ``"strict"`` (any error
raises ``CallerError("voms_invalid")``, exit 201).  No VOMS extension is not an error.
"""
from glexec_py.core import dn as _dn
from glexec_py.core import voms as _voms
from glexec_py.errors import CallerError

MODES = ("lcmaps", "strict")
DEFAULT_SKEW = 300          # seconds, as the VOMS library allows
NEXT_CHAIN = "------ NEXT CHAIN ------"


class VomsdirError(Exception):
    """A vomsdir file that must not be used (untrusted, unreadable); raised by lookups."""


class VomsResult:
    """``fqans``: canonical FQANs to use (tuple; empty unless every AC verified; first =
    primary); ``vo``: VO of the first AC or None; ``errors``: list of
    ``{"reason", "detail", "ac"}`` dicts (ac = index in the AC sequence or None);
    ``acs``: audit summaries of the ACs that verified; ``cert_index``: which certificate
    of the chain carried the ACs (None: no VOMS extension).  Unpacks as
    ``fqans, vo, errors = result``."""
    __slots__ = ("fqans", "vo", "errors", "acs", "cert_index")

    def __init__(self, fqans=(), vo=None, errors=None, acs=None, cert_index=None):
        self.fqans = tuple(fqans)
        self.vo = vo
        self.errors = errors or []
        self.acs = acs or []
        self.cert_index = cert_index

    def __iter__(self):
        return iter((self.fqans, self.vo, self.errors))

    def to_audit(self):
        return {"fqans": list(self.fqans), "vo": self.vo, "errors": list(self.errors),
                "acs": list(self.acs), "cert_index": self.cert_index}

    def __repr__(self):
        return f"VomsResult(fqans={self.fqans!r}, vo={self.vo!r}, errors={self.errors!r})"


class _Fail(Exception):
    def __init__(self, reason, detail):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def parse_lsc(text):
    """Chains of a ``.lsc`` file: list of lists of ``(subject, issuer)`` text pairs.
    Blank lines are skipped, surrounding whitespace and one pair of enclosing double quotes
    are removed, ``------ NEXT CHAIN ------`` separates alternatives.  A chain with an odd
    number of lines is kept as ``None`` (unusable)."""
    chains, cur = [], []
    for line in text.split("\n") + [NEXT_CHAIN]:
        line = line.strip()
        if not line:
            continue
        if line == NEXT_CHAIN:
            if cur:
                chains.append(None if len(cur) % 2 else
                              [(cur[i], cur[i + 1]) for i in range(0, len(cur), 2)])
            cur = []
            continue
        if len(line) >= 2 and line[0] == '"' and line[-1] == '"':
            line = line[1:-1]
        cur.append(line)
    return chains


def _name(der):
    try:
        return _dn.parse_der_name(der)
    except _dn.DNError:
        return None


def _same_name(a, b):
    if a == b:
        return True
    x = _name(a)
    return x is not None and x == _name(b)


def _text_dn(s):
    try:
        return _dn.parse_slash(s)
    except _dn.DNError:
        return None


def _lsc_matches(chain, ac_certs):
    if chain is None or len(chain) < len(ac_certs):
        return False
    for (subj, iss), der in zip(chain, ac_certs):
        c = _voms.parse_certificate(der)
        want_s, want_i = _text_dn(subj), _text_dn(iss)
        if want_s is None or want_i is None:
            return False
        if _name(c.subject_der) != want_s or _name(c.issuer_der) != want_i:
            return False
    return True


def _check_one(ac, eec, at_time, skew, hostname, lookup_lsc, legacy_certs, verify_signature,
               verify_chain):
    if ac.holder_serial != eec.serial:
        raise _Fail("voms_holder", "AC holder serial is not the end-entity certificate's")
    if not (_same_name(ac.holder_issuer, eec.issuer_der)
            or _same_name(ac.holder_issuer, eec.subject_der)):
        raise _Fail("voms_holder", "AC holder issuer is not the end-entity certificate's")
    if ac.holder_uid != eec.issuer_uid:
        raise _Fail("voms_holder", "AC holder issuerUID does not match")
    if at_time < ac.not_before - skew:
        raise _Fail("voms_not_yet_valid", f"AC not valid before {ac.not_before}")
    if at_time > ac.not_after + skew:
        raise _Fail("voms_expired", f"AC expired at {ac.not_after}")
    if ac.targets is not None and (hostname is None or hostname not in ac.targets):
        raise _Fail("voms_target", f"AC targets {list(ac.targets)!r} do not include this host")
    if ac.sig_alg_oid not in _voms.SIG_ALGS:
        raise _Fail("voms_signature", f"AC signature algorithm {ac.sig_alg_oid} not accepted")
    try:
        chains = lookup_lsc(ac.vo, ac.host) if ac.ac_certs else None
    except VomsdirError as e:
        raise _Fail("vomsdir_untrusted", str(e)) from None
    if chains is not None:
        if not any(_lsc_matches(c, ac.ac_certs) for c in chains):
            raise _Fail("voms_lsc_mismatch",
                        f"VOMS server certificate does not match {ac.vo}/{ac.host}.lsc")
        signer = _voms.parse_certificate(ac.ac_certs[0])
        if not _same_name(ac.issuer, signer.subject_der):
            raise _Fail("voms_signature", "AC issuer is not the subject of the VOMS server certificate")
        if not verify_signature(signer.der, ac.sig_alg, ac.tbs, ac.signature):
            raise _Fail("voms_signature", "AC signature does not verify")
        chain = ac.ac_certs
    else:
        try:
            candidates = legacy_certs(ac.vo)
        except VomsdirError as e:
            raise _Fail("vomsdir_untrusted", str(e)) from None
        signer = None
        for der in candidates:
            try:
                c = _voms.parse_certificate(der)
            except _voms.VomsParseError:
                continue
            if _same_name(ac.issuer, c.subject_der) and verify_signature(
                    c.der, ac.sig_alg, ac.tbs, ac.signature):
                signer = c
                break
        if signer is None:
            raise _Fail("voms_unknown_server",
                        f"no {ac.vo}/{ac.host}.lsc and no VOMS server certificate in the vomsdir "
                        f"for {_dn.canonical(ac.issuer_dn)}")
        chain = [signer.der]
    ok, err, depth = verify_chain(chain, at_time)
    if not ok:
        raise _Fail("voms_server_untrusted",
                    f"VOMS server certificate does not verify (OpenSSL error {err} at depth {depth})")


def check(cert_ders, eec_index, at_time, *, lookup_lsc, legacy_certs, verify_signature,
          verify_chain, mode="lcmaps", skew=DEFAULT_SKEW, hostname=None):
    """The VomsResult for a verified chain (see the module docstring).

    ``cert_ders``: DER certificates of the verified chain, leaf first; ``eec_index``: index
    of the end-entity certificate in it; ``at_time``: unix seconds; ``lookup_lsc(vo, host)``
    -> None (no such .lsc) or ``parse_lsc`` chains; ``legacy_certs(vo)`` -> list of DER
    certificates; ``verify_signature(cert_der, alg_der, tbs_der, sig_der)`` -> bool;
    ``verify_chain(ders, at_time)`` -> ``(ok, error, depth)``.  Both lookups may raise
    VomsdirError.  Raises CallerError only in strict mode."""
    if mode not in MODES:
        raise ValueError(f"unknown VOMS mode {mode!r}")
    if not 0 <= skew <= 3600:
        raise ValueError("VOMS clock skew must be 0..3600 seconds")
    errors, acs, fqans = [], [], []
    vo = None
    where = None
    try:
        where, ac_ders = _voms.find_acs(cert_ders, eec_index)
        eec = _voms.parse_certificate(cert_ders[eec_index]) if ac_ders else None
    except _voms.VomsParseError as e:
        ac_ders = []
        errors.append({"reason": "voms_malformed", "detail": str(e), "ac": None})
    for i, der in enumerate(ac_ders):
        try:
            try:
                ac = _voms.parse_ac(der)
            except _voms.VomsParseError as e:
                raise _Fail("voms_malformed", str(e)) from None
            _check_one(ac, eec, at_time, skew, hostname, lookup_lsc, legacy_certs,
                       verify_signature, verify_chain)
        except _Fail as f:
            errors.append({"reason": f.reason, "detail": f.detail, "ac": i})
            break
        if vo is None:
            vo = ac.vo
        for q in ac.canonical_fqans:
            if q not in fqans:
                fqans.append(q)
        acs.append({"vo": ac.vo, "authority": ac.policy_authority,
                    "issuer": _dn.canonical(ac.issuer_dn), "serial": format(ac.serial, "x"),
                    "not_before": ac.not_before, "not_after": ac.not_after,
                    "fqans": list(ac.canonical_fqans)})
    if errors:
        if mode == "strict":
            e = errors[0]
            raise CallerError("voms_invalid",
                              f"glexec: VOMS attributes could not be verified ({e['reason']})",
                              voms_errors=errors)
        return VomsResult((), None, errors, [], where)
    return VomsResult(fqans, vo, [], acs, where)
