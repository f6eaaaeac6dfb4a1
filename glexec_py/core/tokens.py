"""JWT bearer tokens (WLCG common JWT profile, SciTokens 2.0), verified offline.  Pure.

Nothing here touches the network or the file system: the policy is built from a plain
dict (the validated ``tokens:`` config section), keys arrive as parsed ``TokenKey``
objects (``parse_key_file`` turns the bytes of a root-owned JWKS/PEM file into them, each
key as the DER SubjectPublicKeyInfo built or read here; the effects layer,
``glexec_py.effects.tokenkeys``, reads the files), the token arrives as bytes and the time
as a number.  The cryptography is passed in (libcrypto through the native module:
``effects.native.check_pubkey`` when keys are parsed, ``effects.native.verify_jws`` for
the signature), so neither PyJWT nor ``cryptography`` is ever imported here.

``verify_token(raw, policy, keys_by_issuer, now, verify=...) -> TokenIdentity`` or
``CallerError``.

Order of the checks (a forged token never gets past step 5, so it can never learn which
claim would have failed -- no oracle beyond "issuer known / alg allowed / kid known"):

1. size (``token_too_large``), then structure: three base64url segments (strict,
   canonical), header and payload UTF-8 JSON objects without duplicate keys, NaN,
   lone surrogates or deep nesting (``token_malformed``);
2. header ``alg``: ``none`` (any case), every HMAC (``HS*``) and anything outside the
   asymmetric algorithms we implement are refused here, independent of the policy and of
   the verifier (``token_alg``); ``crit``, ``b64``, ``enc``, ``zip`` (extensions, unencoded
   payloads, JWE) are refused (``token_malformed``); ``typ`` must be a JWT access-token
   type (``token_profile``);
3. ``iss`` (from the still unverified payload) must be a configured issuer, compared
   exactly (``token_unknown_issuer``); then ``alg`` must be in that issuer's allow-list
   (``token_alg``);
4. key headers ``jku``, ``x5u``, ``x5c``, ``jwk`` are never read, never fetched: with the
   issuer's ``key_headers: refuse`` (the default) their presence refuses the token
   (``token_kid``), with ``ignore`` they are skipped.  The key is chosen only among the
   issuer's local keys, by ``kid`` and by key type/curve matching ``alg``
   (``token_kid``);
5. signature, by libcrypto (the injected ``verify``), over the signing input exactly as
   received, with exactly the one checked algorithm and a key of the matching type/curve
   (``token_signature``);
6. claims: profile (``token_profile``), ``aud`` (``token_audience``), ``exp``
   (``token_expired``), ``nbf``/``iat`` (``token_not_yet_valid``), lifetime
   (``token_lifetime``), required scopes (``token_scope``).

The token itself is a bearer credential: it never appears in a message or in ``detail``;
``fingerprint`` (SHA-256 of the token, surrounding whitespace stripped) identifies it.
"""
import hashlib
import math
import re

from glexec_py.core import der
from glexec_py.errors import CallerError, ConfigError

WLCG_ANY_AUDIENCE = "https://wlcg.cern.ch/jwt/v1/any"
PROFILES = ("wlcg", "scitokens", "any")
KEY_HEADERS = ("refuse", "ignore")
DEFAULT_ALGORITHMS = ("RS256", "ES256")
DEFAULT_MAX_SIZE = 16384
DEFAULT_LEEWAY = 60

# alg -> (key type, curve or None).  Only asymmetric signatures; HMAC can never be
# configured (ConfigError) and is refused before the policy is even consulted.
ALGORITHMS = {
    "RS256": ("RSA", None), "RS384": ("RSA", None), "RS512": ("RSA", None),
    "PS256": ("RSA", None), "PS384": ("RSA", None), "PS512": ("RSA", None),
    "ES256": ("EC", "P-256"), "ES384": ("EC", "P-384"), "ES512": ("EC", "P-521"),
    "EdDSA": ("OKP", "Ed25519"),
}
KEY_HEADER_NAMES = ("jku", "x5u", "x5c", "jwk")
_TYP_OK = ("jwt", "at+jwt", "application/at+jwt", "application/jwt")
_MIN_RSA_BITS = 2048
_MAX_DEPTH = 20
_MAX_KID = 256
_MAX_SUB = 255
_MAX_CLAIM_STR = 4096
_MAX_KEYS_TRIED = 8

_B64URL = re.compile(rb"[A-Za-z0-9_-]*\Z")
_GROUP = re.compile(r"(?:/(?!\.\.?(?:/|\Z))[A-Za-z0-9_.-]+)+\Z")     # no "." / ".." components
_SCOPE = re.compile(r"[\x21-\x7e]+\Z")
_WS = b" \t\r\n"


# --- values -------------------------------------------------------------------------

class TokenIdentity:
    """The verified identity behind a token.

    ``kind`` "jwt"; ``issuer``/``subject`` the ``iss``/``sub`` claims as signed;
    ``key`` the identity key ``(issuer, subject)`` -- never the subject alone;
    ``groups`` ordered tuple (``wlcg.groups`` or the configured claim; first = primary;
    duplicates dropped, first occurrence kept); ``roles`` always ``()``; ``scopes``
    tuple from ``scope``; ``audience`` tuple of the token's ``aud`` values;
    ``not_before`` (``nbf``, else ``iat``), ``issued_at``, ``expires`` (int seconds or
    None); ``jti``; ``profile`` ("wlcg" / "scitokens"); ``alg``; ``kid`` (of the key that
    verified the signature, may be None for a PEM key); ``key_source`` (``file#index``);
    ``fingerprint`` (sha256 hex of the token)."""
    __slots__ = ("issuer", "subject", "groups", "scopes", "audience", "not_before",
                 "issued_at", "expires", "jti", "profile", "alg", "kid", "key_source",
                 "fingerprint")
    kind = "jwt"
    roles = ()

    def __init__(self, **kw):
        for k in self.__slots__:
            setattr(self, k, kw.pop(k))
        if kw:
            raise TypeError(f"unknown fields {sorted(kw)}")

    @property
    def key(self):
        return (self.issuer, self.subject)

    @property
    def mapping_name(self):
        """``iss,sub`` -- the authenticated name HTCondor mapfiles use for tokens."""
        return f"{self.issuer},{self.subject}"

    def to_audit(self):
        return {"kind": "jwt", "issuer": self.issuer, "subject": self.subject,
                "groups": list(self.groups), "scopes": list(self.scopes),
                "audience": list(self.audience), "not_before": self.not_before,
                "issued_at": self.issued_at, "expires": self.expires, "jti": self.jti,
                "profile": self.profile, "alg": self.alg, "kid": self.kid,
                "key_source": self.key_source, "fingerprint": self.fingerprint}

    def __repr__(self):
        return f"TokenIdentity(iss={self.issuer!r}, sub={self.subject!r}, groups={self.groups!r})"


class TokenKey:
    """One trusted public key of an issuer: ``kid`` (None for PEM keys), ``kty`` ("RSA",
    "EC", "OKP"), ``crv`` (EC/OKP curve name), ``alg`` (the JWK's ``alg`` or None),
    ``spki`` (the key as DER SubjectPublicKeyInfo bytes), ``source`` (``file#index``)."""
    __slots__ = ("kid", "kty", "crv", "alg", "spki", "source")

    def __init__(self, kid, kty, crv, alg, spki, source):
        self.kid, self.kty, self.crv, self.alg = kid, kty, crv, alg
        self.spki, self.source = spki, source

    def fits(self, alg):
        kty, crv = ALGORITHMS[alg]
        return self.kty == kty and (crv is None or self.crv == crv) and self.alg in (None, alg)

    def __repr__(self):
        return f"TokenKey(kid={self.kid!r}, {self.kty}/{self.crv}, {self.source})"


# --- policy -------------------------------------------------------------------------

class IssuerPolicy:
    """One trusted issuer (see ``TokenPolicy``)."""
    __slots__ = ("issuer", "audiences", "keys", "algorithms", "profile", "groups_claim",
                 "groups_claim_explicit", "required_scopes", "key_headers")

    def __init__(self, issuer, audiences, keys, algorithms, profile, groups_claim,
                 groups_claim_explicit, required_scopes, key_headers):
        self.issuer, self.audiences, self.keys = issuer, audiences, keys
        self.algorithms, self.profile, self.groups_claim = algorithms, profile, groups_claim
        self.groups_claim_explicit = groups_claim_explicit
        self.required_scopes, self.key_headers = required_scopes, key_headers

    def to_plain(self):
        d = {"issuer": self.issuer, "audiences": list(self.audiences), "keys": list(self.keys),
             "algorithms": list(self.algorithms), "profile": self.profile,
             "required_scopes": list(self.required_scopes), "key_headers": self.key_headers}
        if self.groups_claim_explicit:
            d["groups_claim"] = self.groups_claim
        return d

    def __repr__(self):
        return f"IssuerPolicy({self.issuer!r}, profile={self.profile!r})"


_ISSUER_KEYS = ("issuer", "audiences", "keys", "algorithms", "profile", "groups_claim",
                "required_scopes", "key_headers")
_TOP_KEYS = ("issuers", "max_size", "leeway", "max_lifetime")


def _has_ctl(s):
    return any(ord(c) < 0x20 or 0x7f <= ord(c) <= 0x9f or 0xd800 <= ord(c) <= 0xdfff for c in s)


class TokenPolicy:
    """Which issuers are trusted and how tokens are checked, from a plain dict::

        {"issuers": [{"issuer": "https://...",          # required, https URL, exact
                      "audiences": ["https://ce.example.org", ...],   # required, >= 1
                      "keys": "/etc/.../iss.jwks" | [paths],          # required, absolute
                      "algorithms": ["RS256", "ES256"],               # default
                      "profile": "wlcg" | "scitokens" | "any",        # default "wlcg"
                      "groups_claim": "wlcg.groups" | None,           # see below
                      "required_scopes": ["compute.create"],          # default []
                      "key_headers": "refuse" | "ignore"}],           # default "refuse"
         "max_size": 16384, "leeway": 60, "max_lifetime": None}

    ``WLCG_ANY_AUDIENCE`` is accepted only if listed in ``audiences``.  ``groups_claim``
    defaults to ``"wlcg.groups"`` for the wlcg/any profiles (read only from tokens that
    passed as WLCG tokens) and to None (no groups) for scitokens; set explicitly, the
    claim is read from every token of that issuer.  Raises ``ConfigError(source, None,
    "tokens...: what")`` for anything wrong.  ``to_plain()`` gives the dict back (for
    the marshal config cache)."""
    __slots__ = ("issuers", "max_size", "leeway", "max_lifetime", "source")

    def __init__(self, plain, source="tokens"):
        self.source = source

        def bad(what):
            return ConfigError(source, None, what)

        if not isinstance(plain, dict):
            raise bad("tokens must be a mapping")
        for k in plain:
            if k not in _TOP_KEYS:
                raise bad(f"tokens: unknown key {k!r}")
        self.max_size = _int(plain.get("max_size", DEFAULT_MAX_SIZE), 256, 1 << 20, "tokens.max_size", bad)
        self.leeway = _int(plain.get("leeway", DEFAULT_LEEWAY), 0, 600, "tokens.leeway", bad)
        ml = plain.get("max_lifetime")
        self.max_lifetime = None if ml is None else _int(ml, 60, 10 ** 8, "tokens.max_lifetime", bad)
        items = plain.get("issuers")
        if not isinstance(items, (list, tuple)) or not items:
            raise bad("tokens.issuers must be a non-empty list")
        issuers, seen = {}, {}
        for i, item in enumerate(items):
            ip = _issuer(item, f"tokens.issuers[{i}]", bad)
            norm = ip.issuer.rstrip("/")
            if norm in seen:
                raise bad(f"tokens.issuers[{i}]: issuer {ip.issuer!r} duplicates "
                          f"tokens.issuers[{seen[norm]}] (trailing '/' does not make a different issuer)")
            seen[norm] = i
            issuers[ip.issuer] = ip
        self.issuers = issuers

    def issuer(self, iss):
        """The IssuerPolicy for ``iss`` (exact string match) or None."""
        return self.issuers.get(iss)

    def to_plain(self):
        return {"issuers": [ip.to_plain() for ip in self.issuers.values()], "max_size": self.max_size,
                "leeway": self.leeway, "max_lifetime": self.max_lifetime}

    def __repr__(self):
        return f"TokenPolicy({list(self.issuers)!r})"


def _int(v, lo, hi, where, bad):
    if type(v) is not int or not lo <= v <= hi:
        raise bad(f"{where} must be an integer in {lo}..{hi}")
    return v


def _str_list(v, where, bad, allow_single=False):
    if allow_single and isinstance(v, str):
        v = [v]
    if not isinstance(v, (list, tuple)) or not all(isinstance(x, str) and x for x in v):
        raise bad(f"{where} must be a list of non-empty strings")
    for x in v:
        if _has_ctl(x) or x != x.strip():
            raise bad(f"{where}: {x!r} contains control characters or surrounding spaces")
    if len(set(v)) != len(v):
        raise bad(f"{where} has duplicate entries")
    return tuple(v)


def _issuer(item, where, bad):
    if not isinstance(item, dict):
        raise bad(f"{where} must be a mapping")
    for k in item:
        if k not in _ISSUER_KEYS:
            raise bad(f"{where}: unknown key {k!r}")
    iss = item.get("issuer")
    if not isinstance(iss, str) or not re.fullmatch(r"https://[\x21-\x7e]+", iss) or len(iss) > 1024:
        raise bad(f"{where}.issuer must be an https:// URL without spaces")
    aud = _str_list(item.get("audiences", ()), f"{where}.audiences", bad)
    if not aud:
        raise bad(f"{where}.audiences must list at least one audience (aud is always required)")
    keys = _str_list(item.get("keys", ()), f"{where}.keys", bad, allow_single=True)
    if not keys:
        raise bad(f"{where}.keys must name at least one JWKS or PEM public key file")
    for k in keys:
        if not k.startswith("/") or "/../" in k + "/" or "/./" in k + "/":
            raise bad(f"{where}.keys: {k!r} must be an absolute path without . or .. components")
    algs = _str_list(item.get("algorithms", DEFAULT_ALGORITHMS), f"{where}.algorithms", bad)
    if not algs:
        raise bad(f"{where}.algorithms must not be empty")
    for a in algs:
        if a not in ALGORITHMS:
            raise bad(f"{where}.algorithms: {a!r} is not allowed (asymmetric only: "
                      f"{', '.join(ALGORITHMS)}; never none or HMAC)")
    profile = item.get("profile", "wlcg")
    if profile not in PROFILES:
        raise bad(f"{where}.profile must be one of {', '.join(PROFILES)}")
    if "groups_claim" in item:
        gc = item["groups_claim"]
        if gc is not None and (not isinstance(gc, str) or not gc or _has_ctl(gc)):
            raise bad(f"{where}.groups_claim must be a claim name or null")
        explicit = True
    else:
        gc, explicit = ("wlcg.groups" if profile != "scitokens" else None), False
    scopes = _str_list(item.get("required_scopes", ()), f"{where}.required_scopes", bad)
    for s in scopes:
        if not _SCOPE.match(s):
            raise bad(f"{where}.required_scopes: {s!r} is not a scope token")
    kh = item.get("key_headers", "refuse")
    if kh not in KEY_HEADERS:
        raise bad(f"{where}.key_headers must be refuse or ignore")
    return IssuerPolicy(iss, aud, keys, algs, profile, gc, explicit, scopes, kh)


# --- keys ---------------------------------------------------------------------------

def parse_key_file(data, source, check_key):
    """The trusted keys in one file (bytes): a JWKS (``{"keys": [...]}``) or one or more
    PEM ``PUBLIC KEY`` blocks.  Returns a tuple of ``TokenKey``.  Raises
    ``ConfigError(source, None, what)`` for: private key material (JWK ``d``/``k``/...,
    PEM ``PRIVATE KEY``), symmetric keys (``oct``), RSA < 2048 bits or even/small
    exponent, points not on the curve, unknown ``kty``/curve, duplicate ``kid``, no key at
    all.  JWKs with ``use`` other than ``sig`` or ``key_ops`` without ``verify`` are
    skipped (issuers publish encryption keys in the same set).

    Each key becomes a DER SubjectPublicKeyInfo (built here for a JWK, read here for PEM),
    which ``check_key(spki) -> (kty, crv, bits) | None`` (``effects.native.check_pubkey``:
    libcrypto decodes it exactly and checks the point is on its curve) must confirm."""
    def bad(what):
        return ConfigError(source, None, what)

    data = bytes(data)
    if b"PRIVATE KEY" in data:
        raise bad("contains a private key: configure the issuer's public key(s) only")
    text = data.strip(_WS)
    if text.startswith(b"{"):
        keys = _parse_jwks(text, source, bad, check_key)
    elif text.startswith(b"-----BEGIN"):
        keys = _parse_pem(text, source, bad, check_key)
    else:
        raise bad("neither a JWKS (JSON) nor a PEM public key file")
    if not keys:
        raise bad("holds no usable signature key")
    kids = [k.kid for k in keys if k.kid is not None]
    if len(set(kids)) != len(kids):
        raise bad("duplicate kid")
    return tuple(keys)


# SubjectPublicKeyInfo (RFC 5280 4.1.2.7): SEQUENCE {AlgorithmIdentifier, BIT STRING key}.
# Algorithm OIDs (RFC 3279, 5480, 8410) and the named curves, DER-encoded.
_OID_RSA = "1.2.840.113549.1.1.1"                     # rsaEncryption, parameters NULL
_OID_EC = "1.2.840.10045.2.1"                         # id-ecPublicKey, namedCurve OID
_OID_ED25519 = "1.3.101.112"                          # id-Ed25519, no parameters
_OID_DER = {_OID_RSA: b"\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x01\x01",
            _OID_EC: b"\x06\x07\x2a\x86\x48\xce\x3d\x02\x01",
            _OID_ED25519: b"\x06\x03\x2b\x65\x70"}
# JWK crv -> (namedCurve OID, DER of it, coordinate length in bytes)
_CURVES = {"P-256": ("1.2.840.10045.3.1.7", b"\x06\x08\x2a\x86\x48\xce\x3d\x03\x01\x07", 32),
           "P-384": ("1.3.132.0.34", b"\x06\x05\x2b\x81\x04\x00\x22", 48),
           "P-521": ("1.3.132.0.35", b"\x06\x05\x2b\x81\x04\x00\x23", 66)}
_CURVE_OF_OID = {oid: crv for crv, (oid, _, _) in _CURVES.items()}


def _spki(alg_oid, params, key):
    return der.encode(0x30, der.encode(0x30, _OID_DER[alg_oid] + params) + der.encode(0x03, b"\x00" + key))


def _der_uint(v):
    return der.encode(0x02, v.to_bytes(v.bit_length() // 8 + 1, "big"))


def _rsa_spki(n, e):
    return _spki(_OID_RSA, b"\x05\x00", der.encode(0x30, _der_uint(n) + _der_uint(e)))


def _read_uint(b, i, end):
    tag, s, e = der.tl(b, i, end, ValueError)
    if tag != 0x02 or s == e or b[s] & 0x80 or (b[s] == 0 and e - s > 1 and not b[s + 1] & 0x80):
        raise ValueError("not a minimal positive INTEGER")
    return int.from_bytes(b[s:e], "big"), e


def _read_spki(b):
    """(kty, crv, rsa (n, e) or None) of a DER SubjectPublicKeyInfo (exactly ``b``).
    ValueError for anything malformed or not an RSA, P-256/384/521 or Ed25519 key."""
    tag, s, end = der.tl(b, 0, len(b), ValueError)
    if tag != 0x30 or end != len(b):
        raise ValueError("not a SubjectPublicKeyInfo")
    tag, a, a_end = der.tl(b, s, end, ValueError)
    if tag != 0x30:
        raise ValueError("no AlgorithmIdentifier")
    tag, o, o_end = der.tl(b, a, a_end, ValueError)
    if tag != 0x06:
        raise ValueError("no algorithm OID")
    alg, params = der.oid(b[o:o_end], ValueError), b[o_end:a_end]
    tag, k, k_end = der.tl(b, a_end, end, ValueError)
    if tag != 0x03 or k_end != end or k == k_end or b[k] != 0:
        raise ValueError("public key is not a whole-octet BIT STRING")
    key = b[k + 1:k_end]
    if alg == _OID_RSA:
        if params not in (b"", b"\x05\x00"):
            raise ValueError("RSA parameters are not NULL")
        tag, r, r_end = der.tl(key, 0, len(key), ValueError)
        if tag != 0x30 or r_end != len(key):
            raise ValueError("not an RSAPublicKey")
        n, i = _read_uint(key, r, r_end)
        e, i = _read_uint(key, i, r_end)
        if i != r_end:
            raise ValueError("trailing data in RSAPublicKey")
        return "RSA", None, (n, e)
    if alg == _OID_EC:
        tag, c, c_end = der.tl(params, 0, len(params), ValueError) if params else (0, 0, 0)
        crv = _CURVE_OF_OID.get(der.oid(params[c:c_end], ValueError)) if tag == 0x06 else None
        if crv is None or c_end != len(params):
            raise ValueError("EC key is not on a named curve P-256, P-384 or P-521")
        if len(key) != 1 + 2 * _CURVES[crv][2] or key[0] != 4:
            raise ValueError("EC point is not uncompressed or its length does not match the curve")
        return "EC", crv, None
    if alg == _OID_ED25519:
        if params or len(key) != 32:
            raise ValueError("malformed Ed25519 key")
        return "OKP", "Ed25519", None
    raise ValueError(f"unsupported key type (algorithm {alg})")


def _checked_key(spki, kty, crv, rsa, kid, alg, where, bad, check_key):
    if rsa is not None:
        n, e = rsa
        if n.bit_length() < _MIN_RSA_BITS or e < 3 or e % 2 == 0:
            raise bad(f"{where}: RSA key too weak ({n.bit_length()} bits, e={e})")
        if e >= n or n % 2 == 0:
            raise bad(f"{where}: not a valid RSA public key")
    got = check_key(spki)
    if got is None or got[:2] != (kty, crv) or (rsa is not None and got[2] != rsa[0].bit_length()):
        raise bad(f"{where}: not a valid {kty} public key (point not on the curve, or "
                  f"libcrypto does not accept it)")
    return TokenKey(kid, kty, crv, alg, spki, where)


def _parse_pem(text, source, bad, check_key):
    import base64
    import binascii
    blocks = re.findall(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", text, re.S)
    rest = re.sub(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", b"", text, flags=re.S)
    if rest.strip(_WS):
        raise bad("text outside PEM blocks")
    keys = []
    for i, (label, body) in enumerate(blocks):
        if label != b"PUBLIC KEY":
            raise bad(f"PEM block {i} is {label.decode()!r}; only 'PUBLIC KEY' blocks are accepted")
        where = f"{source}#{i}"
        try:
            spki = base64.b64decode(b"".join(body.split()), validate=True)
            kty, crv, rsa = _read_spki(spki)
        except (ValueError, binascii.Error) as e:
            raise bad(f"PEM block {i}: {e}") from None
        keys.append(_checked_key(spki, kty, crv, rsa, None, None, where, bad, check_key))
    return keys


def _parse_jwks(text, source, bad, check_key):
    try:
        doc = _json_object(text)
    except ValueError as e:
        raise bad(f"not a valid JWKS: {e}") from None
    if set(doc) - {"keys"} or not isinstance(doc.get("keys"), list):
        raise bad('a JWKS must be {"keys": [...]}')
    keys = []
    for i, jwk in enumerate(doc["keys"]):
        where = f"{source}#{i}"
        if not isinstance(jwk, dict):
            raise bad(f"{where}: JWK must be an object")
        private = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"} & set(jwk)
        if private:
            raise bad(f"{where}: contains private/secret key material ({', '.join(sorted(private))})")
        use, ops = jwk.get("use"), jwk.get("key_ops")
        if use is not None and use != "sig":
            continue
        if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
            continue
        kid = jwk.get("kid")
        if kid is not None and (not isinstance(kid, str) or not kid or len(kid) > _MAX_KID or _has_ctl(kid)):
            raise bad(f"{where}: bad kid")
        alg = jwk.get("alg")
        if alg is not None and alg not in ALGORITHMS:
            raise bad(f"{where}: alg {alg!r} is not an allowed signature algorithm")
        kty, crv, rsa = jwk.get("kty"), None, None
        try:
            if kty == "RSA":
                rsa = (int.from_bytes(_b64_strict(jwk["n"]), "big"), int.from_bytes(_b64_strict(jwk["e"]), "big"))
                spki = _rsa_spki(*rsa)
            elif kty == "EC":
                crv = jwk["crv"]
                if crv not in _CURVES:
                    raise ValueError(f"EC curve {crv!r} is not supported")
                _, params, size = _CURVES[crv]
                x, y = _b64_strict(jwk["x"]), _b64_strict(jwk["y"])
                # RFC 7518 6.2.1.2 wants full-length coordinates, but PyJWT < 2.8 (Debian 12's
                # python3-jwt) drops leading zero bytes, about 1 key in 128, and scitokens-cpp
                # takes them; the integer is the same, so pad.  Longer is never accepted.
                if not (0 < len(x) <= size and 0 < len(y) <= size):
                    raise ValueError(f"a {crv} coordinate is 1 to {size} bytes")
                spki = _spki(_OID_EC, params, b"\x04" + x.rjust(size, b"\0") + y.rjust(size, b"\0"))
            elif kty == "OKP":
                crv = jwk.get("crv")
                if crv != "Ed25519":
                    raise ValueError(f"OKP curve {crv!r} is not supported")
                x = _b64_strict(jwk["x"])
                if len(x) != 32:
                    raise ValueError("an Ed25519 key is 32 bytes")
                spki = _spki(_OID_ED25519, b"", x)
            elif kty == "oct":
                raise ValueError("symmetric (oct) keys are never accepted")
            else:
                raise ValueError(f"unsupported kty {kty!r}")
        except (KeyError, TypeError, ValueError, UnicodeEncodeError) as e:
            raise bad(f"{where}: bad JWK: {e}") from None
        keys.append(_checked_key(spki, kty, crv, rsa, kid, alg, where, bad, check_key))
    return keys


def _b64_strict(seg):
    """Decode unpadded base64url, refusing anything non-canonical.  ValueError."""
    import base64
    if isinstance(seg, str):
        seg = seg.encode("ascii")
    if not _B64URL.match(seg) or len(seg) % 4 == 1:
        raise ValueError("not unpadded base64url")
    out = base64.urlsafe_b64decode(seg + b"=" * (-len(seg) % 4))
    if base64.urlsafe_b64encode(out).rstrip(b"=") != seg:
        raise ValueError("non-canonical base64url")
    return out


# --- JSON ---------------------------------------------------------------------------

def _no_dups(pairs):
    d = {}
    for k, v in pairs:
        if k in d:
            raise ValueError(f"duplicate member {k!r}")
        d[k] = v
    return d


def _no_constant(name):
    raise ValueError(f"{name} is not JSON")


def _check_tree(v, depth=0):
    if depth > _MAX_DEPTH:
        raise ValueError("nested too deeply")
    if isinstance(v, str):
        if any(0xd800 <= ord(c) <= 0xdfff for c in v):
            raise ValueError("lone surrogate in string")
    elif isinstance(v, float):
        if not math.isfinite(v):
            raise ValueError("non-finite number")
    elif isinstance(v, dict):
        for k, x in v.items():
            _check_tree(k, depth + 1)
            _check_tree(x, depth + 1)
    elif isinstance(v, list):
        for x in v:
            _check_tree(x, depth + 1)


def _json_object(b):
    import json
    try:
        text = b.decode("utf-8")
        v = json.loads(text, object_pairs_hook=_no_dups, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    if not isinstance(v, dict):
        raise ValueError("not a JSON object")
    _check_tree(v)
    return v


# --- verification -------------------------------------------------------------------

def _refuse(reason, message, **detail):
    return CallerError(reason, "glexec: token " + message, **detail)


def _num(v):
    # int first: math.isfinite(10**400) raises OverflowError (JSON allows 4300 digits)
    return type(v) is int or (type(v) is float and math.isfinite(v))


def _split(raw, max_size):
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise TypeError("token must be bytes")
    raw = bytes(raw)
    if len(raw) > max_size:
        raise _refuse("token_too_large", f"is larger than {max_size} bytes", size=len(raw))
    tok = raw.strip(_WS)
    fp = hashlib.sha256(tok).hexdigest()
    parts = tok.split(b".")
    if len(parts) != 3 or not parts[0] or not parts[1]:   # empty signature: alg none, refused below
        raise _refuse("token_malformed", "is not a signed JWT (header.payload.signature)", fingerprint=fp)
    try:
        hb, pb, sig = (_b64_strict(p) for p in parts)
        header = _json_object(hb)
        payload = _json_object(pb)
    except ValueError as e:
        raise _refuse("token_malformed", "is not a well-formed JWT", fingerprint=fp, error=str(e)[:200]) from None
    # the JWS signing input: the first two segments exactly as received and parsed above
    return parts[0] + b"." + parts[1], fp, header, payload, sig


def _check_header(header, fp):
    alg = header.get("alg")
    if not isinstance(alg, str):
        raise _refuse("token_malformed", "header has no alg", fingerprint=fp)
    if alg.lower() == "none" or alg.upper().startswith("HS") or alg not in ALGORITHMS:
        raise _refuse("token_alg", f"algorithm {alg[:20]!r} is not accepted", fingerprint=fp, alg=alg[:40])
    for name in ("crit", "b64", "enc", "zip"):
        if name in header:
            raise _refuse("token_malformed", f"header {name!r} is not supported", fingerprint=fp)
    typ = header.get("typ")
    if typ is not None and (not isinstance(typ, str) or typ.lower() not in _TYP_OK):
        raise _refuse("token_profile", "typ is not a JWT access token type", fingerprint=fp,
                      typ=str(typ)[:40])
    kid = header.get("kid")
    if kid is not None and (not isinstance(kid, str) or not kid or len(kid) > _MAX_KID or _has_ctl(kid)):
        raise _refuse("token_kid", "kid is malformed", fingerprint=fp)
    return alg, kid


def _choose_keys(ip, keys, alg, kid, header, fp):
    present = [h for h in KEY_HEADER_NAMES if h in header]
    if present and ip.key_headers == "refuse":
        raise _refuse("token_kid", f"carries key header(s) {', '.join(present)}; keys come only from "
                      f"the issuer's local key files", fingerprint=fp, issuer=ip.issuer, headers=present)
    fitting = [k for k in keys if k.fits(alg)]
    if kid is not None:
        cands = [k for k in fitting if k.kid == kid] or [k for k in fitting if k.kid is None]
    else:
        cands = fitting
    if not cands:
        raise _refuse("token_kid", "key id is not among the issuer's configured keys", fingerprint=fp,
                      issuer=ip.issuer, kid=kid, alg=alg)
    return cands[:_MAX_KEYS_TRIED]


def _verify_signature(verify, signing_input, sig, alg, cands, fp, issuer):
    for k in cands:
        ok = verify(k.spki, alg, signing_input, sig)
        if ok == 1:
            return k
        if ok != 0:
            raise _refuse("token_malformed", "signature could not be checked", fingerprint=fp)
    raise _refuse("token_signature", "signature does not verify with the issuer's keys",
                  fingerprint=fp, issuer=issuer, kid=cands[0].kid, alg=alg)


def _claim_str(payload, name, fp, *, required, maxlen=_MAX_CLAIM_STR):
    v = payload.get(name)
    if v is None:
        if required:
            raise _refuse("token_profile", f"lacks the required claim {name!r}", fingerprint=fp, claim=name)
        return None
    if not isinstance(v, str) or not v or len(v) > maxlen or _has_ctl(v):
        raise _refuse("token_profile", f"claim {name!r} is not a valid string", fingerprint=fp, claim=name)
    return v


def _claim_time(payload, name, fp, *, required):
    v = payload.get(name)
    if v is None:
        if required:
            raise _refuse("token_profile", f"lacks the required claim {name!r}", fingerprint=fp, claim=name)
        return None
    if not _num(v) or v < 0 or v > 1e11:
        raise _refuse("token_profile", f"claim {name!r} is not a NumericDate", fingerprint=fp, claim=name)
    return int(v) if float(v).is_integer() else v


def _profile_of(ip, payload, fp):
    """The profile the token is checked under: "wlcg" or "scitokens"."""
    if ip.profile == "wlcg" or (ip.profile == "any" and "wlcg.ver" in payload):
        if payload.get("wlcg.ver") != "1.0":
            raise _refuse("token_profile", "is not a WLCG 1.0 token (wlcg.ver)", fingerprint=fp)
        return "wlcg"
    if ip.profile == "scitokens" or (ip.profile == "any" and "ver" in payload):
        if payload.get("ver") != "scitoken:2.0":
            raise _refuse("token_profile", "is not a SciToken 2.0 (ver)", fingerprint=fp)
        return "scitokens"
    raise _refuse("token_profile", "is neither a WLCG nor a SciTokens token", fingerprint=fp)


def _groups(ip, profile, payload, fp):
    claim = ip.groups_claim
    if claim is None or (not ip.groups_claim_explicit and profile != "wlcg"):
        return ()
    v = payload.get(claim)
    if v is None:
        return ()
    if not isinstance(v, list) or len(v) > 256:
        raise _refuse("token_profile", f"claim {claim!r} is not a list of groups", fingerprint=fp)
    out = []
    for g in v:
        if not isinstance(g, str) or len(g) > 1024 or not _GROUP.match(g):
            raise _refuse("token_profile", f"claim {claim!r} holds a malformed group", fingerprint=fp,
                          group=str(g)[:80])
        if g not in out:
            out.append(g)
    return tuple(out)


def verify_token(raw, policy, keys_by_issuer, now, *, verify):
    """Verify a JWT offline and return its ``TokenIdentity``; raise ``CallerError``
    (exit 201) with ``reason`` one of: token_too_large, token_malformed, token_alg,
    token_unknown_issuer, token_kid, token_signature, token_profile, token_audience,
    token_expired, token_not_yet_valid, token_lifetime, token_scope.

    ``raw``: the token bytes (surrounding whitespace is ignored); ``policy``: a
    ``TokenPolicy``; ``keys_by_issuer``: mapping issuer -> sequence of ``TokenKey`` (only
    the token's issuer is looked up, with ``[]``: a lazy mapping such as
    ``effects.tokenkeys.KeyStore`` may raise ``SystemFault`` for an unusable key file,
    which propagates); ``now``: seconds since the epoch; ``verify``: the signature check,
    ``verify(spki, alg, signing_input, signature) -> 1 (valid) | 0 (not) | -1 (cannot be
    checked)`` -- ``effects.native.verify_jws`` (libcrypto); called only for an allow-listed
    ``alg`` and a key whose type/curve fits it."""
    signing_input, fp, header, payload, sig = _split(raw, policy.max_size)
    alg, kid = _check_header(header, fp)
    if not sig:
        raise _refuse("token_malformed", "has an empty signature", fingerprint=fp)

    iss = payload.get("iss")
    ip = policy.issuer(iss) if isinstance(iss, str) else None
    if ip is None:
        raise _refuse("token_unknown_issuer", "issuer is not trusted", fingerprint=fp,
                      issuer=iss[:200] if isinstance(iss, str) else None)
    if alg not in ip.algorithms:
        raise _refuse("token_alg", f"algorithm {alg} is not accepted for this issuer", fingerprint=fp,
                      issuer=iss, alg=alg)
    cands = _choose_keys(ip, keys_by_issuer[ip.issuer], alg, kid, header, fp)
    key = _verify_signature(verify, signing_input, sig, alg, cands, fp, iss)

    # --- signed from here on: claims --------------------------------------------
    profile = _profile_of(ip, payload, fp)
    wlcg = profile == "wlcg"
    sub = _claim_str(payload, "sub", fp, required=True, maxlen=_MAX_SUB)
    jti = _claim_str(payload, "jti", fp, required=wlcg)
    exp = _claim_time(payload, "exp", fp, required=True)
    iat = _claim_time(payload, "iat", fp, required=wlcg)
    nbf = _claim_time(payload, "nbf", fp, required=False)
    aud = payload.get("aud")
    if aud is None:
        raise _refuse("token_profile", "lacks the required claim 'aud'", fingerprint=fp, claim="aud")
    auds = (aud,) if isinstance(aud, str) else aud
    if not isinstance(auds, (list, tuple)) or not auds or len(auds) > 64 or \
            not all(isinstance(a, str) and a and len(a) <= 1024 and not _has_ctl(a) for a in auds):
        raise _refuse("token_profile", "claim 'aud' is not a string or list of strings", fingerprint=fp)
    scope = payload.get("scope")
    if scope is not None and (not isinstance(scope, str) or len(scope) > _MAX_CLAIM_STR or _has_ctl(scope)):
        raise _refuse("token_profile", "claim 'scope' is not a string", fingerprint=fp)
    scopes = tuple(scope.split()) if scope else ()
    groups = _groups(ip, profile, payload, fp)

    if not any(a in ip.audiences for a in auds):
        raise _refuse("token_audience", "is not meant for this service (aud)", fingerprint=fp,
                      issuer=iss, audience=[a[:200] for a in auds[:8]])
    leeway = policy.leeway
    if now > exp + leeway:
        raise _refuse("token_expired", "has expired", fingerprint=fp, issuer=iss, expires=exp)
    if nbf is not None and now + leeway < nbf:
        raise _refuse("token_not_yet_valid", "is not valid yet (nbf)", fingerprint=fp, not_before=nbf)
    if iat is not None and now + leeway < iat:
        raise _refuse("token_not_yet_valid", "is issued in the future (iat)", fingerprint=fp, issued_at=iat)
    start = nbf if nbf is not None else iat
    if start is not None and exp < start:
        raise _refuse("token_lifetime", "expires before it becomes valid", fingerprint=fp)
    if policy.max_lifetime is not None:
        life = exp - (start if start is not None else now)
        if life > policy.max_lifetime:
            raise _refuse("token_lifetime", f"lifetime {int(life)} s exceeds the maximum of "
                          f"{policy.max_lifetime} s", fingerprint=fp, lifetime=life)
    missing = [s for s in ip.required_scopes if s not in scopes]
    if missing:
        raise _refuse("token_scope", f"lacks the required scope(s) {' '.join(missing)}", fingerprint=fp,
                      issuer=iss, missing=missing)
    return TokenIdentity(issuer=iss, subject=sub, groups=groups, scopes=scopes, audience=tuple(auds),
                         not_before=start, issued_at=iat, expires=exp, jti=jti, profile=profile,
                         alg=alg, kid=key.kid, key_source=key.source, fingerprint=fp)
