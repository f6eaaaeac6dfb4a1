"""VOMS attribute certificates: find them in a proxy chain, parse them strictly, decide.

Pure: no os, no time, no file access, no crypto.  The checks that need libcrypto or the
vomsdir are passed in as callables (``glexec_py.effects.vomsdir.check_voms`` wires the real
ones), so everything here is testable with plain bytes.

Where they are
--------------
The VOMS extension (OID 1.3.6.1.4.1.8005.100.100.5, non-critical) holds
``SEQUENCE { SEQUENCE OF AttributeCertificate }``.  Like the VOMS library (``RECURSE_CHAIN``)
only the first certificate that carries it, walking from the leaf towards the end-entity
certificate (EEC), counts; ACs in certificates further up are ignored.

What is parsed (RFC 3281, VOMS profile), strictly
--------------------------------------------------
DER only (definite minimal lengths, minimal INTEGERs, no trailing bytes at any level,
BOOLEAN TRUE = 0xFF and DEFAULT FALSE omitted, GeneralizedTime ``YYYYMMDDHHMMSSZ``).
``AttributeCertificate ::= SEQUENCE { acinfo, signatureAlgorithm, signatureValue }`` with
acinfo = version v2 (1); holder = ``baseCertificateID`` only (issuer = one directoryName,
serial, optional issuerUID; entityName/objectDigestInfo are refused); issuer = ``v2Form``
with exactly one directoryName; signature; serial (at most 20 octets); validity; attributes
(the FQAN attribute 1.3.6.1.4.1.8005.100.100.4 exactly once: one IetfAttrSyntax with exactly
one policyAuthority URI ``vo://host:port`` and OCTET STRING values; other attributes are
ignored); optional issuerUniqueID; extensions (each OID at most once; noRevAvail and
authorityKeyIdentifier required as VOMS requires them; ac_certs 1.3.6.1.4.1.8005.100.100.10
= ``SEQUENCE { SEQUENCE OF Certificate }``, the VOMS server certificate first; targets
2.5.29.55; VOMS generic attributes 1.3.6.1.4.1.8005.100.100.11; any other critical extension
makes the AC invalid).  The acinfo's signature algorithm must equal the outer one.
Every FQAN must start with ``/<vo>`` (then end or ``/``) and be well-formed
(``fqan.canonical_fqan``; a newline or any control character is malformed).

Everything that is wrong raises ``VomsParseError`` (a ``ValueError``) and nothing else.
"""
from glexec_py.core import der as _der
from glexec_py.core import dn as _dn
from glexec_py.core import fqan as _fqan

OID_VOMS_ACSEQ = "1.3.6.1.4.1.8005.100.100.5"
OID_VOMS_FQAN = "1.3.6.1.4.1.8005.100.100.4"
OID_VOMS_AC_CERTS = "1.3.6.1.4.1.8005.100.100.10"
OID_VOMS_GA = "1.3.6.1.4.1.8005.100.100.11"
OID_NO_REV_AVAIL = "2.5.29.56"
OID_AKI = "2.5.29.35"
OID_TARGETS = "2.5.29.55"
_KNOWN_EXTS = frozenset([OID_VOMS_AC_CERTS, OID_VOMS_GA, OID_NO_REV_AVAIL, OID_AKI, OID_TARGETS])
_CRITICAL_OK = frozenset([OID_TARGETS])

# Signature algorithms accepted for an AC (md2/md4/md5 and unknown ones are refused).
SIG_ALGS = {
    "1.2.840.113549.1.1.5": "sha1WithRSAEncryption",
    "1.2.840.113549.1.1.14": "sha224WithRSAEncryption",
    "1.2.840.113549.1.1.11": "sha256WithRSAEncryption",
    "1.2.840.113549.1.1.12": "sha384WithRSAEncryption",
    "1.2.840.113549.1.1.13": "sha512WithRSAEncryption",
    "1.2.840.113549.1.1.10": "rsassaPss",
    "1.2.840.10045.4.1": "ecdsa-with-SHA1",
    "1.2.840.10045.4.3.1": "ecdsa-with-SHA224",
    "1.2.840.10045.4.3.2": "ecdsa-with-SHA256",
    "1.2.840.10045.4.3.3": "ecdsa-with-SHA384",
    "1.2.840.10045.4.3.4": "ecdsa-with-SHA512",
    "1.3.101.112": "Ed25519",
    "1.3.101.113": "Ed448",
}

MAX_AC_DER = 256 * 1024
MAX_ACS = 16
MAX_FQANS = 256
MAX_AC_CERTS = 8


class VomsParseError(ValueError):
    """A certificate or attribute certificate that is not what VOMS defines, in DER."""


# --- a small strict DER reader ------------------------------------------------------

def _tl(der, i, end):
    return _der.tl(der, i, end, VomsParseError)


def _expect(der, i, end, tag, what):
    t, s, e = _tl(der, i, end)
    if t != tag:
        raise VomsParseError(f"{what}: expected tag 0x{tag:02x}, got 0x{t:02x}")
    return s, e


def _items(der, s, e):
    """The (tag, start, end, tlv_start) of each element inside a constructed value."""
    out = []
    i = s
    while i < e:
        t, cs, ce = _tl(der, i, e)
        out.append((t, cs, ce, i))
        i = ce
    return out


def _oid(b):
    return _der.oid(b, VomsParseError, 64)


def _int(der, s, e, what):
    if s == e:
        raise VomsParseError(f"{what}: empty INTEGER")
    if e - s > 1 and ((der[s] == 0 and der[s + 1] < 0x80) or (der[s] == 0xFF and der[s + 1] >= 0x80)):
        raise VomsParseError(f"{what}: non-minimal INTEGER")
    return int.from_bytes(der[s:e], "big", signed=True)


def _gentime(der, s, e):
    """Unix seconds of a DER GeneralizedTime ``YYYYMMDDHHMMSSZ``."""
    raw = der[s:e]
    if len(raw) != 15 or raw[14] != 0x5A or not raw[:14].isdigit():
        raise VomsParseError("GeneralizedTime is not YYYYMMDDHHMMSSZ")
    y, mo, d = int(raw[0:4]), int(raw[4:6]), int(raw[6:8])
    h, mi, sec = int(raw[8:10]), int(raw[10:12]), int(raw[12:14])
    mdays = (31, 29 if (y % 4 == 0 and y % 100 != 0) or y % 400 == 0 else 28,
             31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
    if not (1 <= mo <= 12 and 1 <= d <= mdays[mo - 1] and h < 24 and mi < 60 and sec < 60):
        raise VomsParseError("GeneralizedTime out of range")
    # days from civil (proleptic Gregorian), H. Hinnant's algorithm
    yy = y - (mo <= 2)
    era = yy // 400
    yoe = yy - era * 400
    doy = (153 * (mo + (-3 if mo > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    days = era * 146097 + doe - 719468
    return days * 86400 + h * 3600 + mi * 60 + sec


def _one_dirname(der, s, e, what):
    """The Name DER of GeneralNames content holding exactly one directoryName."""
    names = _items(der, s, e)
    if len(names) != 1 or names[0][0] != 0xA4:
        raise VomsParseError(f"{what}: must be exactly one directoryName")
    _, ns, ne, _ = names[0]
    t, xs, xe = _tl(der, ns, ne)
    if t != 0x30 or xe != ne:
        raise VomsParseError(f"{what}: directoryName is not one Name")
    name = der[ns:ne]
    try:
        _dn.parse_der_name(name)
    except _dn.DNError as ex:
        raise VomsParseError(f"{what}: {ex}") from None
    return name


# --- certificates -------------------------------------------------------------------

class CertFields:
    """What voms needs of an X.509 certificate: ``der``, ``serial`` (int), ``issuer_der``
    and ``subject_der`` (Name DER), ``issuer_uid`` (raw BIT STRING content or None),
    ``extensions`` {oid: (critical, value bytes)}."""
    __slots__ = ("der", "serial", "issuer_der", "subject_der", "issuer_uid", "extensions")

    def __init__(self, **kw):
        for k in self.__slots__:
            setattr(self, k, kw[k])


def parse_certificate(der):
    """CertFields of one DER X.509 certificate (structure only: no signature, no validity).
    Raises VomsParseError."""
    der = bytes(der)
    if len(der) > MAX_AC_DER:
        raise VomsParseError("certificate too large")
    cs, ce = _expect(der, 0, len(der), 0x30, "Certificate")
    if ce != len(der):
        raise VomsParseError("trailing bytes after the Certificate")
    parts = _items(der, cs, ce)
    if len(parts) != 3 or parts[0][0] != 0x30:
        raise VomsParseError("Certificate is not SEQUENCE {tbs, alg, sig}")
    tbs = _items(der, parts[0][1], parts[0][2])
    k = 0
    if tbs and tbs[0][0] == 0xA0:
        k = 1
    if len(tbs) < k + 6:
        raise VomsParseError("TBSCertificate too short")
    t, s, e, _ = tbs[k]
    if t != 0x02:
        raise VomsParseError("serialNumber is not an INTEGER")
    serial = _int(der, s, e, "serialNumber")
    if tbs[k + 2][0] != 0x30 or tbs[k + 4][0] != 0x30:
        raise VomsParseError("issuer/subject is not a Name")
    issuer_der = der[tbs[k + 2][3]:tbs[k + 2][2]]
    subject_der = der[tbs[k + 4][3]:tbs[k + 4][2]]
    issuer_uid = None
    exts = {}
    for t, s, e, _ in tbs[k + 6:]:
        if t == 0x81 and issuer_uid is None and not exts:
            issuer_uid = der[s:e]
        elif t == 0x82 and not exts:
            continue
        elif t == 0xA3 and not exts:
            exts = _extensions(der, *_expect(der, s, e, 0x30, "extensions"))
            if not exts:
                raise VomsParseError("empty extensions")
        else:
            raise VomsParseError("unexpected element in TBSCertificate")
    return CertFields(der=der, serial=serial, issuer_der=issuer_der, subject_der=subject_der,
                      issuer_uid=issuer_uid, extensions=exts)


def _extensions(der, s, e):
    """{oid: (critical, value)} of a SEQUENCE OF Extension's content; duplicates refused."""
    out = {}
    for t, xs, xe, _ in _items(der, s, e):
        if t != 0x30:
            raise VomsParseError("Extension is not a SEQUENCE")
        f = _items(der, xs, xe)
        if len(f) not in (2, 3) or f[0][0] != 0x06 or f[-1][0] != 0x04:
            raise VomsParseError("Extension is not {OID, [critical], OCTET STRING}")
        oid = _oid(der[f[0][1]:f[0][2]])
        critical = False
        if len(f) == 3:
            if f[1][0] != 0x01 or f[1][2] - f[1][1] != 1 or der[f[1][1]] != 0xFF:
                raise VomsParseError("critical flag is not DER TRUE")
            critical = True
        if oid in out:
            raise VomsParseError(f"duplicate extension {oid}")
        out[oid] = (critical, der[f[-1][1]:f[-1][2]])
    return out


def acs_from_extension(value):
    """The DER of each AttributeCertificate in a VOMS extension value (OID
    1.3.6.1.4.1.8005.100.100.5): ``SEQUENCE { SEQUENCE OF AttributeCertificate }``."""
    value = bytes(value)
    if len(value) > MAX_AC_DER:
        raise VomsParseError("VOMS extension too large")
    s, e = _expect(value, 0, len(value), 0x30, "AC sequence")
    if e != len(value):
        raise VomsParseError("trailing bytes after the AC sequence")
    inner = _items(value, s, e)
    if len(inner) != 1 or inner[0][0] != 0x30:
        raise VomsParseError("AC sequence must hold exactly one SEQUENCE OF AC")
    acs = [value[ts:ce] for t, cs, ce, ts in _items(value, inner[0][1], inner[0][2])]
    if not acs:
        raise VomsParseError("empty AC sequence")
    if len(acs) > MAX_ACS:
        raise VomsParseError("too many ACs")
    return acs


def find_acs(cert_ders, eec_index):
    """``(index, [AC DER, ...])`` of the first certificate, from the leaf (index 0) to the EEC
    (``eec_index``) inclusive, carrying the VOMS extension; ``(None, [])`` if none does."""
    for i in range(0, eec_index + 1):
        exts = parse_certificate(cert_ders[i]).extensions
        if OID_VOMS_ACSEQ in exts:
            return i, acs_from_extension(exts[OID_VOMS_ACSEQ][1])
    return None, []


# --- the attribute certificate ------------------------------------------------------

class AttributeCertificate:
    """One parsed AC.  Fields: ``der``; ``tbs`` (the exact acinfo TLV that is signed);
    ``sig_alg`` (AlgorithmIdentifier TLV), ``sig_alg_oid``, ``signature`` (BIT STRING TLV);
    ``holder_issuer`` (Name DER), ``holder_serial`` (int), ``holder_uid`` (bytes or None);
    ``issuer`` (Name DER of the VOMS server); ``issuer_dn`` (``dn`` tuple); ``serial`` (int);
    ``not_before``/``not_after`` (unix seconds); ``policy_authority`` (``vo://host:port``),
    ``vo``, ``host``, ``port``; ``fqans`` (as in the AC, order kept) and ``canonical_fqans``
    (``/vo/g/Role=r/Capability=c``, duplicates dropped, order of first occurrence kept);
    ``extensions`` {oid: (critical, value)}; ``ac_certs`` (list of certificate DER, the VOMS
    server certificate first; empty if the extension is absent); ``targets`` (tuple of
    target name strings, or None if the AC has no targets extension)."""
    __slots__ = ("der", "tbs", "sig_alg", "sig_alg_oid", "signature", "holder_issuer",
                 "holder_serial", "holder_uid", "issuer", "issuer_dn", "serial", "not_before",
                 "not_after", "policy_authority", "vo", "host", "port", "fqans",
                 "canonical_fqans", "extensions", "ac_certs", "targets")

    def __init__(self, **kw):
        for k in self.__slots__:
            setattr(self, k, kw[k])


def parse_ac(der):
    """AttributeCertificate from one AC's DER.  Raises VomsParseError (and nothing else)."""
    der = bytes(der)
    if len(der) > MAX_AC_DER:
        raise VomsParseError("AC too large")
    s, e = _expect(der, 0, len(der), 0x30, "AttributeCertificate")
    if e != len(der):
        raise VomsParseError("trailing bytes after the AC")
    top = _items(der, s, e)
    if len(top) != 3 or top[0][0] != 0x30 or top[1][0] != 0x30 or top[2][0] != 0x03:
        raise VomsParseError("AC is not SEQUENCE {acinfo, algorithm, BIT STRING}")
    tbs = der[top[0][3]:top[0][2]]
    sig_alg = der[top[1][3]:top[1][2]]
    sig_alg_oid = _alg_oid(der, top[1])
    bs, be = top[2][1], top[2][2]
    if be - bs < 2 or der[bs] != 0:
        raise VomsParseError("signature BIT STRING with unused bits or empty")
    signature = der[top[2][3]:be]

    f = _items(der, top[0][1], top[0][2])
    if len(f) < 7:
        raise VomsParseError("acinfo has too few fields")
    # version
    if f[0][0] != 0x02 or _int(der, f[0][1], f[0][2], "version") != 1:
        raise VomsParseError("AC version is not v2")
    # holder
    if f[1][0] != 0x30:
        raise VomsParseError("holder is not a SEQUENCE")
    h = _items(der, f[1][1], f[1][2])
    if len(h) != 1 or h[0][0] != 0xA0:
        raise VomsParseError("holder must be exactly a baseCertificateID")
    hb = _items(der, h[0][1], h[0][2])
    if len(hb) not in (2, 3) or hb[0][0] != 0x30 or hb[1][0] != 0x02:
        raise VomsParseError("holder baseCertificateID is not {GeneralNames, serial}")
    holder_issuer = _one_dirname(der, hb[0][1], hb[0][2], "holder issuer")
    holder_serial = _int(der, hb[1][1], hb[1][2], "holder serial")
    holder_uid = None
    if len(hb) == 3:
        if hb[2][0] != 0x03:
            raise VomsParseError("holder issuerUID is not a BIT STRING")
        holder_uid = der[hb[2][1]:hb[2][2]]
    # issuer: v2Form [0] { issuerName GeneralNames }
    if f[2][0] != 0xA0:
        raise VomsParseError("AC issuer is not v2Form")
    v2 = _items(der, f[2][1], f[2][2])
    if len(v2) != 1 or v2[0][0] != 0x30:
        raise VomsParseError("v2Form must hold exactly issuerName")
    issuer = _one_dirname(der, v2[0][1], v2[0][2], "AC issuer")
    issuer_dn = _dn.parse_der_name(issuer)
    if not issuer_dn:
        raise VomsParseError("empty AC issuer name")
    # signature algorithm (inner) must equal the outer one
    if f[3][0] != 0x30 or der[f[3][3]:f[3][2]] != sig_alg:
        raise VomsParseError("acinfo signature algorithm differs from the AC's")
    # serial
    if f[4][0] != 0x02 or f[4][2] - f[4][1] > 20:
        raise VomsParseError("AC serial is not an INTEGER of at most 20 octets")
    serial = _int(der, f[4][1], f[4][2], "AC serial")
    # validity
    if f[5][0] != 0x30:
        raise VomsParseError("validity is not a SEQUENCE")
    v = _items(der, f[5][1], f[5][2])
    if len(v) != 2 or v[0][0] != 0x18 or v[1][0] != 0x18:
        raise VomsParseError("validity is not two GeneralizedTimes")
    not_before = _gentime(der, v[0][1], v[0][2])
    not_after = _gentime(der, v[1][1], v[1][2])
    if not_after < not_before:
        raise VomsParseError("validity ends before it starts")
    # attributes
    if f[6][0] != 0x30:
        raise VomsParseError("attributes is not a SEQUENCE")
    authority, raw_fqans = _fqan_attribute(der, f[6][1], f[6][2])
    # issuerUniqueID, extensions
    extensions = {}
    rest = f[7:]
    if rest and rest[0][0] == 0x03:
        rest = rest[1:]
    if rest:
        if len(rest) != 1 or rest[0][0] != 0x30:
            raise VomsParseError("unexpected element after the attributes")
        extensions = _extensions(der, rest[0][1], rest[0][2])
    for oid, (crit, _) in extensions.items():
        if crit and oid not in _CRITICAL_OK:
            raise VomsParseError(f"unknown critical extension {oid}")
    if OID_NO_REV_AVAIL not in extensions or OID_AKI not in extensions:
        raise VomsParseError("required AC extensions missing (noRevAvail, authorityKeyIdentifier)")
    ac_certs = _ac_certs(extensions[OID_VOMS_AC_CERTS][1]) if OID_VOMS_AC_CERTS in extensions else []
    targets = _targets(extensions[OID_TARGETS][1]) if OID_TARGETS in extensions else None

    vo, host, port = _authority(authority)
    canon = []
    top_group = "/" + vo
    for q in raw_fqans:
        if not (q == top_group or q.startswith(top_group + "/")):
            raise VomsParseError(f"FQAN {q!r} is not in VO {vo!r}")
        try:
            c = _fqan.canonical_fqan(q)
        except _fqan.FQANError as ex:
            raise VomsParseError(f"malformed FQAN: {ex}") from None
        if c not in canon:
            canon.append(c)
    return AttributeCertificate(
        der=der, tbs=tbs, sig_alg=sig_alg, sig_alg_oid=sig_alg_oid, signature=signature,
        holder_issuer=holder_issuer, holder_serial=holder_serial, holder_uid=holder_uid,
        issuer=issuer, issuer_dn=issuer_dn, serial=serial, not_before=not_before,
        not_after=not_after, policy_authority=authority, vo=vo, host=host, port=port,
        fqans=tuple(raw_fqans), canonical_fqans=tuple(canon), extensions=extensions,
        ac_certs=ac_certs, targets=targets)


def _alg_oid(der, item):
    a = _items(der, item[1], item[2])
    if not 1 <= len(a) <= 2 or a[0][0] != 0x06:
        raise VomsParseError("AlgorithmIdentifier is not {OID, [parameters]}")
    return _oid(der[a[0][1]:a[0][2]])


def _fqan_attribute(der, s, e):
    found = None
    for t, xs, xe, _ in _items(der, s, e):
        if t != 0x30:
            raise VomsParseError("Attribute is not a SEQUENCE")
        a = _items(der, xs, xe)
        if len(a) != 2 or a[0][0] != 0x06 or a[1][0] != 0x31:
            raise VomsParseError("Attribute is not {OID, SET}")
        if _oid(der[a[0][1]:a[0][2]]) != OID_VOMS_FQAN:
            continue
        if found is not None:
            raise VomsParseError("FQAN attribute twice")
        vals = _items(der, a[1][1], a[1][2])
        if len(vals) != 1 or vals[0][0] != 0x30:
            raise VomsParseError("FQAN attribute must hold exactly one IetfAttrSyntax")
        ietf = _items(der, vals[0][1], vals[0][2])
        if len(ietf) != 2 or ietf[0][0] != 0xA0 or ietf[1][0] != 0x30:
            raise VomsParseError("IetfAttrSyntax must be {policyAuthority, values}")
        pa = _items(der, ietf[0][1], ietf[0][2])
        if len(pa) != 1 or pa[0][0] != 0x86:
            raise VomsParseError("policyAuthority must be exactly one URI")
        raw = der[pa[0][1]:pa[0][2]]
        if not raw.isascii():
            raise VomsParseError("policyAuthority is not ASCII")
        fqans = []
        for vt, vs, ve, _ in _items(der, ietf[1][1], ietf[1][2]):
            if vt != 0x04:
                raise VomsParseError("FQAN value is not an OCTET STRING")
            try:
                fqans.append(der[vs:ve].decode("ascii"))
            except UnicodeDecodeError:
                raise VomsParseError("FQAN is not ASCII") from None
        if not fqans:
            raise VomsParseError("no FQANs in the AC")
        if len(fqans) > MAX_FQANS:
            raise VomsParseError("too many FQANs")
        found = (raw.decode("ascii"), fqans)
    if found is None:
        raise VomsParseError("VOMS attributes missing from the AC")
    return found


_HOSTCHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_")


def _authority(pa):
    """(vo, host, port) of ``vo://host:port``."""
    vo, sep, rest = pa.partition("://")
    host, colon, port = rest.rpartition(":")
    if not sep or not colon or not vo or not host or not port.isdigit() or len(port) > 5:
        raise VomsParseError(f"policyAuthority {pa!r} is not vo://host:port")
    if not _safe_name(vo) or not all(c in _HOSTCHARS for c in host) or host[0] in ".-":
        raise VomsParseError(f"unusable VO or host name in {pa!r}")
    return vo, host, int(port)


def _safe_name(s):
    """A VO name that is a safe single path component (vomsdir/<vo>/...)."""
    return (bool(s) and len(s) <= 255 and s[0] != "." and s.isascii()
            and all(c.isalnum() or c in "._-" for c in s))


def _ac_certs(value):
    s, e = _expect(value, 0, len(value), 0x30, "ac_certs")
    if e != len(value):
        raise VomsParseError("trailing bytes after ac_certs")
    inner = _items(value, s, e)
    if len(inner) != 1 or inner[0][0] != 0x30:
        raise VomsParseError("ac_certs must hold one SEQUENCE OF Certificate")
    certs = [value[ts:ce] for t, cs, ce, ts in _items(value, inner[0][1], inner[0][2])]
    if not certs or len(certs) > MAX_AC_CERTS:
        raise VomsParseError("ac_certs holds no or too many certificates")
    for c in certs:
        parse_certificate(c)
    return certs


def _targets(value):
    """Target names (URI/dNSName text) of an RFC 3281 targetInformation value."""
    s, e = _expect(value, 0, len(value), 0x30, "targets")
    if e != len(value):
        raise VomsParseError("trailing bytes after targets")
    names = []
    for t, ts, te, _ in _items(value, s, e):
        if t != 0x30:
            raise VomsParseError("Targets is not a SEQUENCE")
        for tt, xs, xe, _ in _items(value, ts, te):
            if tt not in (0xA0, 0xA1):
                raise VomsParseError("unsupported Target kind")
            g = _items(value, xs, xe)
            if len(g) != 1 or g[0][0] not in (0x82, 0x86):
                raise VomsParseError("Target is not a URI or dNSName")
            raw = value[g[0][1]:g[0][2]]
            if not raw.isascii():
                raise VomsParseError("Target name is not ASCII")
            names.append(raw.decode("ascii"))
    return tuple(names)
