"""The oracle for the VOMS decision (``core.vomscheck.check``), shared by
fuzz/fuzz_vomscheck.py and tests/voms/test_vomscheck_props.py: granted FQANs come only
from ACs of this holder, valid now, signed by the VOMS server -- the signature re-checked
with `cryptography`, independently of the code under test."""
from glexec_py.core import voms


def bitstring(tlv):
    """The bits of a DER BIT STRING TLV with no unused bits (read here, independently)."""
    if len(tlv) < 3 or tlv[0] != 0x03:
        return None
    n, i = tlv[1], 2
    if n & 0x80:
        k = n & 0x7F
        n, i = int.from_bytes(tlv[2:2 + k], "big"), 2 + k
    body = tlv[i:i + n]
    return body[1:] if len(body) == n and n >= 1 and body[0] == 0 else None


def signed_by(ac, public_key):
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    name = voms.SIG_ALGS.get(ac.sig_alg_oid, "").split("With")[0]
    algo = {"sha1": hashes.SHA1, "sha224": hashes.SHA224, "sha256": hashes.SHA256,
            "sha384": hashes.SHA384, "sha512": hashes.SHA512}.get(name)
    sig = bitstring(bytes(ac.signature))
    if algo is None or sig is None:
        return False
    try:
        public_key.verify(sig, bytes(ac.tbs), padding.PKCS1v15(), algo())
        return True
    except Exception:
        return False


def problems(outcome, ders, eec_index, mode, at, skew, voms_public_key):
    """``outcome``: the VomsResult, or the exception check() raised."""
    from glexec_py.errors import CallerError
    if isinstance(outcome, BaseException):
        if mode == "strict" and isinstance(outcome, CallerError) and outcome.exit_code == 201 \
                and outcome.reason == "voms_invalid":
            return []
        return [f"{type(outcome).__name__} {outcome} in {mode} mode"]
    res = outcome
    if res.errors:
        out = [] if res.fqans == () and res.vo is None else ["FQANs granted despite an error"]
        return out + ([] if mode == "lcmaps" else ["strict mode returned errors"])
    if not res.fqans:
        return []
    out, allowed = [], set()
    eec = voms.parse_certificate(ders[eec_index])
    for der in voms.find_acs(ders, eec_index)[1]:
        ac = voms.parse_ac(der)
        if ac.holder_serial != eec.serial:
            out.append("FQANs from an AC of another holder")
        if not ac.not_before - skew <= at <= ac.not_after + skew:
            out.append("FQANs from an AC outside its validity")
        if not signed_by(ac, voms_public_key):
            out.append("FQANs from an AC the VOMS server did not sign")
        allowed.update(ac.canonical_fqans)
    if not set(res.fqans) <= allowed or len(set(res.fqans)) != len(res.fqans):
        out.append(f"FQANs {res.fqans!r} not from the ACs")
    if not all(f.startswith("/" + res.vo) for f in res.fqans):
        out.append("FQAN outside the VO")
    return out
