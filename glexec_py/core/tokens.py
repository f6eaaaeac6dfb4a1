"""JWT bearer tokens (WLCG common JWT profile, SciTokens 2.0), verified offline.  Pure.

Nothing here touches the network or the file system: the policy is built from a plain
dict (the validated ``tokens:`` config section), keys arrive as parsed ``TokenKey``
objects (``parse_key_file`` turns the bytes of a root-owned JWKS/PEM file into them; the
effects layer, ``glexec_py.effects.tokenkeys``, reads the files), the token arrives as
bytes and the time as a number.

``verify_token(raw, policy, keys_by_issuer, now) -> TokenIdentity`` or ``CallerError``.

Order of the checks (a forged token never gets past step 5, so it can never learn which
claim would have failed -- no oracle beyond "issuer known / alg allowed / kid known"):

1. size (``token_too_large``), then structure: three base64url segments (strict,
   canonical), header and payload UTF-8 JSON objects without duplicate keys, NaN,
   lone surrogates or deep nesting (``token_malformed``);
2. header ``alg``: ``none`` (any case), every HMAC (``HS*``) and anything outside the
   asymmetric algorithms we implement are refused here, independent of the policy and of
   PyJWT (``token_alg``); ``crit``, ``b64``, ``enc``, ``zip`` (extensions, unencoded
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
5. signature, by PyJWT (imported lazily here), with exactly the one checked algorithm and
   a public-key object of the matching type (``token_signature``);
6. claims: profile (``token_profile``), ``aud`` (``token_audience``), ``exp``
   (``token_expired``), ``nbf``/``iat`` (``token_not_yet_valid``), lifetime
   (``token_lifetime``), required scopes (``token_scope``).

The token itself is a bearer credential: it never appears in a message or in ``detail``;
``fingerprint`` (SHA-256 of the token, surrounding whitespace stripped) identifies it.
"""
import hashlib
import math
import re

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
    ``public_key`` (a cryptography public-key object), ``source`` (``file#index``)."""
    __slots__ = ("kid", "kty", "crv", "alg", "public_key", "source")

    def __init__(self, kid, kty, crv, alg, public_key, source):
        self.kid, self.kty, self.crv, self.alg = kid, kty, crv, alg
        self.public_key, self.source = public_key, source

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

def parse_key_file(data, source):
    """The trusted keys in one file (bytes): a JWKS (``{"keys": [...]}``) or one or more
    PEM ``PUBLIC KEY`` blocks.  Returns a tuple of ``TokenKey``.  Raises
    ``ConfigError(source, None, what)`` for: private key material (JWK ``d``/``k``/...,
    PEM ``PRIVATE KEY``), symmetric keys (``oct``), RSA < 2048 bits or even/small
    exponent, points not on the curve, unknown ``kty``/curve, duplicate ``kid``, no key at
    all.  JWKs with ``use`` other than ``sig`` or ``key_ops`` without ``verify`` are
    skipped (issuers publish encryption keys in the same set)."""
    def bad(what):
        return ConfigError(source, None, what)

    data = bytes(data)
    if b"PRIVATE KEY" in data:
        raise bad("contains a private key: configure the issuer's public key(s) only")
    text = data.strip(_WS)
    if text.startswith(b"{"):
        keys = _parse_jwks(text, source, bad)
    elif text.startswith(b"-----BEGIN"):
        keys = _parse_pem(text, source, bad)
    else:
        raise bad("neither a JWKS (JSON) nor a PEM public key file")
    if not keys:
        raise bad("holds no usable signature key")
    kids = [k.kid for k in keys if k.kid is not None]
    if len(set(kids)) != len(kids):
        raise bad("duplicate kid")
    return tuple(keys)


def _parse_pem(text, source, bad):
    from cryptography.hazmat.primitives.serialization import load_pem_public_key
    blocks = re.findall(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", text, re.S)
    rest = re.sub(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", b"", text, flags=re.S)
    if rest.strip(_WS):
        raise bad("text outside PEM blocks")
    keys = []
    for i, (label, body) in enumerate(blocks):
        if label != b"PUBLIC KEY":
            raise bad(f"PEM block {i} is {label.decode()!r}; only 'PUBLIC KEY' blocks are accepted")
        pem = b"-----BEGIN PUBLIC KEY-----\n" + body + b"-----END PUBLIC KEY-----\n"
        try:
            pub = load_pem_public_key(pem)
        except (ValueError, TypeError) as e:
            raise bad(f"PEM block {i}: {e}") from None
        keys.append(_from_public_key(pub, None, None, f"{source}#{i}", bad))
    return keys


def _from_public_key(pub, kid, alg, where, bad):
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
    if isinstance(pub, rsa.RSAPublicKey):
        nums = pub.public_numbers()
        if pub.key_size < _MIN_RSA_BITS or nums.e < 3 or nums.e % 2 == 0:
            raise bad(f"{where}: RSA key too weak ({pub.key_size} bits, e={nums.e})")
        return TokenKey(kid, "RSA", None, alg, pub, where)
    if isinstance(pub, ec.EllipticCurvePublicKey):
        crv = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}.get(pub.curve.name)
        if crv is None:
            raise bad(f"{where}: EC curve {pub.curve.name} is not supported")
        return TokenKey(kid, "EC", crv, alg, pub, where)
    if isinstance(pub, ed25519.Ed25519PublicKey):
        return TokenKey(kid, "OKP", "Ed25519", alg, pub, where)
    raise bad(f"{where}: unsupported key type {type(pub).__name__}")


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


def _parse_jwks(text, source, bad):
    try:
        doc = _json_object(text)
    except ValueError as e:
        raise bad(f"not a valid JWKS: {e}") from None
    if set(doc) - {"keys"} or not isinstance(doc.get("keys"), list):
        raise bad('a JWKS must be {"keys": [...]}')
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
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
        kty = jwk.get("kty")
        try:
            if kty == "RSA":
                n = int.from_bytes(_b64_strict(jwk["n"]), "big")
                e = int.from_bytes(_b64_strict(jwk["e"]), "big")
                pub = rsa.RSAPublicNumbers(e, n).public_key()
            elif kty == "EC":
                curve, size = {"P-256": (ec.SECP256R1, 32), "P-384": (ec.SECP384R1, 48),
                               "P-521": (ec.SECP521R1, 66)}[jwk["crv"]]
                x, y = _b64_strict(jwk["x"]), _b64_strict(jwk["y"])
                if len(x) != size or len(y) != size:
                    raise ValueError("coordinate length does not match the curve")
                pub = ec.EllipticCurvePublicKey.from_encoded_point(curve(), b"\x04" + x + y)
            elif kty == "OKP":
                if jwk.get("crv") != "Ed25519":
                    raise ValueError(f"OKP curve {jwk.get('crv')!r} is not supported")
                pub = ed25519.Ed25519PublicKey.from_public_bytes(_b64_strict(jwk["x"]))
            elif kty == "oct":
                raise ValueError("symmetric (oct) keys are never accepted")
            else:
                raise ValueError(f"unsupported kty {kty!r}")
        except (KeyError, TypeError, ValueError, UnicodeEncodeError) as e:
            raise bad(f"{where}: bad JWK: {e}") from None
        keys.append(_from_public_key(pub, kid, alg, where, bad))
    return keys


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
    return tok, fp, header, payload, sig


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


def _verify_signature(tok, alg, cands, fp, issuer):
    import jwt  # PyJWT, lazily: not on the X.509 path
    jws = jwt.PyJWS(algorithms=[alg])
    text = tok.decode("ascii")
    for k in cands:
        try:
            out = jws.decode_complete(text, key=k.public_key, algorithms=[alg])
        except jwt.exceptions.InvalidSignatureError:
            continue
        except jwt.exceptions.PyJWTError as e:
            raise _refuse("token_malformed", "signature could not be checked", fingerprint=fp,
                          error=type(e).__name__) from None
        if out["header"].get("alg") != alg:      # belt and braces: what PyJWT used
            raise _refuse("token_alg", "algorithm mismatch", fingerprint=fp)
        return k, out["payload"]
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


def verify_token(raw, policy, keys_by_issuer, now):
    """Verify a JWT offline and return its ``TokenIdentity``; raise ``CallerError``
    (exit 201) with ``reason`` one of: token_too_large, token_malformed, token_alg,
    token_unknown_issuer, token_kid, token_signature, token_profile, token_audience,
    token_expired, token_not_yet_valid, token_lifetime, token_scope.

    ``raw``: the token bytes (surrounding whitespace is ignored); ``policy``: a
    ``TokenPolicy``; ``keys_by_issuer``: mapping issuer -> sequence of ``TokenKey`` (only
    the token's issuer is looked up, with ``[]``: a lazy mapping such as
    ``effects.tokenkeys.KeyStore`` may raise ``SystemFault`` for an unusable key file,
    which propagates); ``now``: seconds since the epoch."""
    tok, fp, header, payload, sig = _split(raw, policy.max_size)
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
    key, signed_payload = _verify_signature(tok, alg, cands, fp, iss)
    if signed_payload != _b64_strict(tok.split(b".")[1]):   # same bytes we parsed
        raise _refuse("token_malformed", "payload mismatch", fingerprint=fp)

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
