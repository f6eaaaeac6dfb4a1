"""glexec_py.core.tokens: offline JWT verification (security.md §4.C case 18)."""
import base64
import hashlib
import hmac
import json

import pytest

from glexec_py.core import tokens
from glexec_py.core.tokens import TokenPolicy
from glexec_py.errors import CallerError, ConfigError

from .conftest import (AUD, ISS_A, ISS_B, ISS_SCI, NOW, issuer, make_policy, parse, scitokens_create,
                       sign, verify_token, wlcg_claims)


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=")


def hand_made(header, claims, signature=b"sig"):
    """A token assembled by hand (for what PyJWT refuses to produce)."""
    h = b64(json.dumps(header).encode())
    p = b64(json.dumps(claims).encode())
    return h + b"." + p + b"." + (b64(signature) if signature else b"")


def refused(reason, raw, policy, keys, now=NOW):
    with pytest.raises(CallerError) as ei:
        verify_token(raw, policy, keys, now)
    assert ei.value.reason == reason, (ei.value.reason, ei.value.message, ei.value.detail)
    assert ei.value.exit_code == 201
    # the bearer token itself never ends up in the message or the audit detail
    text = ei.value.message + repr(ei.value.detail)
    assert raw.strip().decode("latin-1") not in text or len(raw.strip()) < 4
    return ei.value


# --- accepted ---------------------------------------------------------------------

def test_valid_wlcg_token(policy, keys_by_issuer, rsa_a):
    raw = sign(wlcg_claims(), rsa_a)
    ident = verify_token(raw + b"\n", policy, keys_by_issuer, NOW)
    assert ident.kind == "jwt"
    assert ident.key == (ISS_A, "user-1")
    assert (ident.issuer, ident.subject) == (ISS_A, "user-1")
    assert ident.groups == ("/cms/pilot", "/cms", "/cms/uscms")          # order kept, first = primary
    assert ident.scopes == ("compute.create", "compute.read")
    assert ident.audience == (AUD,)
    assert ident.expires == NOW + 3600 and ident.not_before == NOW - 10 and ident.issued_at == NOW - 10
    assert ident.jti == "jti-user-1" and ident.profile == "wlcg"
    assert ident.alg == "RS256" and ident.kid == "rsa-a"
    assert ident.fingerprint == hashlib.sha256(raw).hexdigest()
    assert ident.mapping_name == f"{ISS_A},user-1"
    assert ident.roles == ()
    json.dumps(ident.to_audit())


def test_groups_order_is_the_tokens_and_duplicates_collapse(policy, keys_by_issuer, rsa_a):
    g = ["/atlas/b", "/atlas", "/atlas/a", "/atlas"]
    ident = verify_token(sign(wlcg_claims(**{"wlcg.groups": g}), rsa_a), policy, keys_by_issuer, NOW)
    assert ident.groups == ("/atlas/b", "/atlas", "/atlas/a")


def test_no_groups_claim_means_no_groups(policy, keys_by_issuer, rsa_a):
    ident = verify_token(sign(wlcg_claims(**{"wlcg.groups": None}), rsa_a), policy, keys_by_issuer, NOW)
    assert ident.groups == ()


def test_audience_list_and_string(policy, keys_by_issuer, rsa_a):
    for aud in (AUD, ["https://other.example.org", AUD]):
        assert verify_token(sign(wlcg_claims(aud=aud), rsa_a), policy, keys_by_issuer, NOW).subject == "user-1"


def test_scitoken_from_scitokens_create(policy, keys_by_issuer, ec_sci):
    raw = scitokens_create(ec_sci, f"aud={AUD}", "sub=alice", "scope=compute.create")
    import time
    ident = verify_token(raw, policy, keys_by_issuer, time.time())
    assert ident.key == (ISS_SCI, "alice")
    assert ident.profile == "scitokens" and ident.alg == "ES256"
    assert ident.groups == ()                      # SciTokens: none unless configured
    assert ident.scopes == ("compute.create",)
    assert ident.kid is None and ident.key_source == "test-keys#0"   # PEM key: no kid


def test_scitoken_groups_only_when_configured(keys_by_issuer, ec_sci):
    import time
    pol = make_policy(issuer(ISS_SCI, profile="scitokens", algorithms=["ES256"], groups_claim="group"))
    raw = scitokens_create(ec_sci, f"aud={AUD}", "sub=alice", "group=/dune")
    # --claim only makes strings: a string is not a list of groups
    refused("token_profile", raw, pol, keys_by_issuer, now=__import__("time").time())


def test_scitokens_create_wlcg_profile_with_jwks(keys_by_issuer, ec_sci):
    import time
    keys = {ISS_SCI: parse(json.dumps({"keys": [ec_sci.jwk()]}).encode())}
    pol = make_policy(issuer(ISS_SCI, profile="any", algorithms=["ES256"]))
    raw = scitokens_create(ec_sci, f"aud={AUD}", "sub=bob", profile="wlcg")
    ident = verify_token(raw, pol, keys, time.time())
    assert ident.profile == "wlcg" and ident.kid == "sci-1" and ident.key == (ISS_SCI, "bob")
    raw2 = scitokens_create(ec_sci, f"aud={AUD}", "sub=bob")
    assert verify_token(raw2, pol, keys, time.time()).profile == "scitokens"
    # a wlcg-only issuer refuses a SciToken and vice versa
    refused("token_profile", raw2, make_policy(issuer(ISS_SCI, algorithms=["ES256"])), keys, time.time())
    refused("token_profile", raw, make_policy(issuer(ISS_SCI, profile="scitokens", algorithms=["ES256"])),
            keys, time.time())


def test_scitokens_verify_agrees(ec_sci, keys_by_issuer, policy):
    """The reference implementation accepts what we accept (same token, same key)."""
    import shutil
    import subprocess
    import time
    exe = shutil.which("scitokens-verify")
    if exe is None:
        pytest.skip("scitokens-verify not installed")
    raw = scitokens_create(ec_sci, f"aud={AUD}", "sub=alice")
    verify_token(raw, policy, keys_by_issuer, time.time())
    r = subprocess.run([exe, "--cred", ec_sci.pub_path, "--issuer", ISS_SCI, "--keyid", ec_sci.kid,
                        raw.decode()], capture_output=True)
    assert r.returncode == 0, r.stderr


# --- algorithm confusion ----------------------------------------------------------

@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none(policy, keys_by_issuer, alg):
    refused("token_alg", hand_made({"alg": alg, "kid": "rsa-a"}, wlcg_claims(), signature=b""),
            policy, keys_by_issuer)
    refused("token_alg", hand_made({"alg": alg, "kid": "rsa-a"}, wlcg_claims(), signature=b"x"),
            policy, keys_by_issuer)


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
def test_hmac_keyed_with_the_public_key(policy, keys_by_issuer, rsa_a, alg):
    """The classic RS/HS confusion: HMAC over the token with the issuer's public key PEM
    (and its JWK JSON) as the secret."""
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    for secret in (rsa_a.pub_pem, rsa_a.pub_pem.strip(), json.dumps(rsa_a.jwk()).encode()):
        h = b64(json.dumps({"alg": alg, "kid": "rsa-a", "typ": "JWT"}).encode())
        p = b64(json.dumps(wlcg_claims()).encode())
        sig = hmac.new(secret, h + b"." + p, digest).digest()
        refused("token_alg", h + b"." + p + b"." + b64(sig), policy, keys_by_issuer)


def test_hmac_refused_even_if_the_verifier_would_accept(policy, keys_by_issuer, rsa_a):
    """Our header check runs before the signature check: even a verifier that accepted
    anything cannot help (it is never called)."""
    h = b64(json.dumps({"alg": "HS256", "kid": "rsa-a"}).encode())
    p = b64(json.dumps(wlcg_claims()).encode())
    raw = h + b"." + p + b"." + b64(hmac.new(rsa_a.pub_pem, h + b"." + p, hashlib.sha256).digest())
    with pytest.raises(CallerError) as ei:
        tokens.verify_token(raw, policy, keys_by_issuer, NOW, verify=lambda *a: pytest.fail("verifier called"))
    assert ei.value.reason == "token_alg"


def test_alg_not_allow_listed_for_issuer(keys_by_issuer, rsa_a):
    pol = make_policy(issuer(ISS_A, algorithms=["ES256"]))
    refused("token_alg", sign(wlcg_claims(), rsa_a), pol, keys_by_issuer)
    pol = make_policy(issuer(ISS_A, algorithms=["RS256"]))
    refused("token_alg", sign(wlcg_claims(), rsa_a, alg="RS512"), pol, keys_by_issuer)
    refused("token_alg", sign(wlcg_claims(), rsa_a, alg="PS256"), pol, keys_by_issuer)


def test_alg_key_type_mismatch_is_no_key(keys_by_issuer, ec_sci):
    """ES256 header, but the issuer only has an RSA key: no fitting key."""
    pol = make_policy(issuer(ISS_A, algorithms=["RS256", "ES256"]))
    refused("token_kid", sign(wlcg_claims(), ec_sci, headers={"kid": "rsa-a"}), pol, keys_by_issuer)


@pytest.mark.parametrize("bad", [["HS256"], ["none"], ["RS256", "HS512"], ["rs256"], []])
def test_policy_never_allows_hmac_or_none(bad):
    with pytest.raises(ConfigError):
        make_policy(issuer(ISS_A, algorithms=bad))


# --- keys, issuers, audiences ------------------------------------------------------

def test_unknown_kid(policy, keys_by_issuer, rsa_a):
    refused("token_kid", sign(wlcg_claims(), rsa_a, headers={"kid": "not-there"}), policy, keys_by_issuer)


def test_kid_of_another_issuer(policy, keys_by_issuer, rsa_b):
    """Key rsa-b belongs to ISS_B: a token claiming ISS_A with kid rsa-b finds no key."""
    refused("token_kid", sign(wlcg_claims(), rsa_b), policy, keys_by_issuer)


def test_no_kid_tries_issuer_keys(policy, keys_by_issuer, rsa_a):
    assert verify_token(sign(wlcg_claims(), rsa_a, headers={"kid": None}), policy, keys_by_issuer,
                        NOW).kid == "rsa-a"


def test_forged_signature(policy, keys_by_issuer, rsa_a, rsa_b):
    """Right kid, wrong private key."""
    refused("token_signature", sign(wlcg_claims(), rsa_b, headers={"kid": "rsa-a"}), policy, keys_by_issuer)


def test_tampered_payload(policy, keys_by_issuer, rsa_a):
    h, p, s = sign(wlcg_claims(), rsa_a).split(b".")
    p2 = b64(json.dumps(wlcg_claims(sub="root")).encode())
    refused("token_signature", b".".join((h, p2, s)), policy, keys_by_issuer)


def test_wrong_issuer(policy, keys_by_issuer, rsa_a):
    refused("token_unknown_issuer", sign(wlcg_claims(iss="https://evil.example.org"), rsa_a), policy,
            keys_by_issuer)
    # exact match only: scheme, case and trailing slash matter
    for iss in ("http://wlcg-a.example.org/", "https://WLCG-A.example.org/", "https://wlcg-a.example.org"):
        refused("token_unknown_issuer", sign(wlcg_claims(iss=iss), rsa_a), policy, keys_by_issuer)
    refused("token_unknown_issuer", sign(wlcg_claims(iss=None), rsa_a), policy, keys_by_issuer)


def test_wrong_audience(policy, keys_by_issuer, rsa_a):
    refused("token_audience", sign(wlcg_claims(aud="https://other.example.org"), rsa_a), policy, keys_by_issuer)
    refused("token_audience", sign(wlcg_claims(aud=["https://x", "https://y"]), rsa_a), policy, keys_by_issuer)
    refused("token_profile", sign(wlcg_claims(aud=None), rsa_a), policy, keys_by_issuer)
    refused("token_profile", sign(wlcg_claims(aud=[]), rsa_a), policy, keys_by_issuer)


def test_any_audience_only_when_configured(keys_by_issuer, rsa_a):
    raw = sign(wlcg_claims(aud=tokens.WLCG_ANY_AUDIENCE), rsa_a)
    refused("token_audience", raw, make_policy(issuer(ISS_A)), keys_by_issuer)
    pol = make_policy(issuer(ISS_A, audiences=[AUD, tokens.WLCG_ANY_AUDIENCE]))
    assert verify_token(raw, pol, keys_by_issuer, NOW).audience == (tokens.WLCG_ANY_AUDIENCE,)


def test_same_sub_two_issuers_two_identities(policy, keys_by_issuer, rsa_a, rsa_b):
    a = verify_token(sign(wlcg_claims(ISS_A, "same"), rsa_a), policy, keys_by_issuer, NOW)
    b = verify_token(sign(wlcg_claims(ISS_B, "same"), rsa_b), policy, keys_by_issuer, NOW)
    assert a.subject == b.subject == "same"
    assert a.key != b.key and a.mapping_name != b.mapping_name


def test_identity_key_works_with_token_bans(policy, keys_by_issuer, rsa_a, rsa_b):
    from glexec_py.core import bans
    bl = bans.from_plain({"token": [{"issuer": ISS_A, "subject": "same"}]}, "bans.yaml")
    a = verify_token(sign(wlcg_claims(ISS_A, "same"), rsa_a), policy, keys_by_issuer, NOW)
    b = verify_token(sign(wlcg_claims(ISS_B, "same"), rsa_b), policy, keys_by_issuer, NOW)
    assert bans.check(bl, token=a.key, fqans=a.groups).reason == "banned_token"
    assert bans.check(bl, token=b.key, fqans=b.groups) is None


# --- time ---------------------------------------------------------------------------

def test_exp_with_leeway(policy, keys_by_issuer, rsa_a):
    raw = sign(wlcg_claims(exp=NOW - 30, iat=NOW - 600, nbf=NOW - 600), rsa_a)
    verify_token(raw, policy, keys_by_issuer, NOW)               # 30 s past exp, 60 s leeway
    refused("token_expired", raw, policy, keys_by_issuer, now=NOW + 31)
    refused("token_expired", raw, make_policy(leeway=0), keys_by_issuer)


def test_nbf_and_iat_with_leeway(policy, keys_by_issuer, rsa_a):
    raw = sign(wlcg_claims(nbf=NOW + 50, iat=NOW), rsa_a)
    verify_token(raw, policy, keys_by_issuer, NOW)
    refused("token_not_yet_valid", raw, policy, keys_by_issuer, now=NOW - 11)
    raw = sign(wlcg_claims(nbf=None, iat=NOW + 3000), rsa_a)
    refused("token_not_yet_valid", raw, policy, keys_by_issuer)


def test_max_lifetime(keys_by_issuer, rsa_a):
    pol = make_policy(issuer(ISS_A), max_lifetime=3600)
    verify_token(sign(wlcg_claims(iat=NOW, nbf=None, exp=NOW + 3600), rsa_a), pol, keys_by_issuer, NOW)
    refused("token_lifetime", sign(wlcg_claims(iat=NOW, nbf=None, exp=NOW + 3601), rsa_a), pol, keys_by_issuer)
    refused("token_lifetime", sign(wlcg_claims(iat=NOW, nbf=NOW, exp=NOW - 1), rsa_a), make_policy(),
            keys_by_issuer)


@pytest.mark.parametrize("name,value", [("exp", "tomorrow"), ("exp", True), ("exp", None), ("iat", None),
                                        ("nbf", [1]), ("exp", 1e300), ("exp", 10 ** 400),
                                        ("iat", -(10 ** 4000)), ("nbf", 2 ** 64), ("exp", -1)])
def test_time_claims_typed(policy, keys_by_issuer, rsa_a, name, value):
    refused("token_profile", sign(wlcg_claims(**{name: value}), rsa_a), policy, keys_by_issuer)


# --- profile ------------------------------------------------------------------------

@pytest.mark.parametrize("missing", ["sub", "jti", "iat", "exp", "wlcg.ver"])
def test_wlcg_required_claims(policy, keys_by_issuer, rsa_a, missing):
    refused("token_profile", sign(wlcg_claims(**{missing: None}), rsa_a), policy, keys_by_issuer)


@pytest.mark.parametrize("claims", [{"wlcg.ver": "2.0"}, {"wlcg.ver": 1.0}, {"sub": ""}, {"sub": "a\nb"},
                                    {"sub": "x" * 256}, {"sub": 42}, {"jti": ["x"]},
                                    {"wlcg.groups": "/cms"}, {"wlcg.groups": ["cms"]},
                                    {"wlcg.groups": ["/cms/../atlas"]}, {"wlcg.groups": ["/cms\n"]},
                                    {"wlcg.groups": [["/cms"]]}, {"scope": ["compute.create"]}])
def test_wlcg_claim_shapes(policy, keys_by_issuer, rsa_a, claims):
    refused("token_profile", sign(wlcg_claims(**claims), rsa_a), policy, keys_by_issuer)


def test_typ_header(policy, keys_by_issuer, rsa_a):
    for typ in ("JWT", "at+jwt", "application/at+JWT"):
        verify_token(sign(wlcg_claims(), rsa_a, headers={"typ": typ}), policy, keys_by_issuer, NOW)
    refused("token_profile", sign(wlcg_claims(), rsa_a, headers={"typ": "dpop+jwt"}), policy, keys_by_issuer)


@pytest.mark.parametrize("hdr", [{"crit": ["exp"]}, {"b64": False}, {"enc": "A256GCM"}, {"zip": "DEF"}])
def test_unsupported_headers(policy, keys_by_issuer, rsa_a, hdr):
    refused("token_malformed", sign(wlcg_claims(), rsa_a, headers=hdr), policy, keys_by_issuer)


def test_required_scopes(keys_by_issuer, rsa_a):
    pol = make_policy(issuer(ISS_A, required_scopes=["compute.create"]))
    verify_token(sign(wlcg_claims(), rsa_a), pol, keys_by_issuer, NOW)
    refused("token_scope", sign(wlcg_claims(scope="storage.read:/"), rsa_a), pol, keys_by_issuer)
    refused("token_scope", sign(wlcg_claims(scope=None), rsa_a), pol, keys_by_issuer)


def test_claims_checked_only_after_signature(policy, keys_by_issuer, rsa_a, rsa_b):
    """A forged token learns nothing about its claims: expired+wrong aud+bad sig = signature."""
    raw = sign(wlcg_claims(exp=NOW - 9999, aud="https://x"), rsa_b, headers={"kid": "rsa-a"})
    refused("token_signature", raw, policy, keys_by_issuer)


# --- size and structure --------------------------------------------------------------

def test_one_mib_token(policy, keys_by_issuer, rsa_a):
    big = sign(wlcg_claims(pad="x" * (1 << 20)), rsa_a)
    assert len(big) > 1 << 20
    refused("token_too_large", big, policy, keys_by_issuer)
    refused("token_too_large", b"a" * (1 << 20), policy, keys_by_issuer)
    refused("token_too_large", sign(wlcg_claims(pad="x" * 20000), rsa_a), policy, keys_by_issuer)


@pytest.mark.parametrize("raw", [b"", b"   \n", b"abc", b"a.b", b"a.b.c.d", b"..", b"e30.e30.",
                                 b"e30=.e30.c2ln", b"e30.e30.c2ln", b"eyJhbGciOiJSUzI1NiJ9.W10.c2ln",
                                 b"e30\n.e30.c2ln", b"\xff\xfe.e30.c2ln"])
def test_malformed(policy, keys_by_issuer, raw):
    refused("token_malformed", raw, policy, keys_by_issuer)


def test_duplicate_members_and_non_json(policy, keys_by_issuer, rsa_a):
    good = sign(wlcg_claims(), rsa_a)
    h, p, s = good.split(b".")
    dup_payload = base64.urlsafe_b64decode(p + b"==")[:-1] + b',"sub":"root"}'
    refused("token_malformed", h + b"." + b64(dup_payload) + b"." + s, policy, keys_by_issuer)
    dup_header = b'{"alg":"RS256","kid":"rsa-a","alg":"none"}'
    refused("token_malformed", b64(dup_header) + b"." + p + b"." + s, policy, keys_by_issuer)
    nan = base64.urlsafe_b64decode(p + b"==")[:-1] + b',"x":NaN}'
    refused("token_malformed", h + b"." + b64(nan) + b"." + s, policy, keys_by_issuer)
    deep = b'{"x":' + b"[" * 5000 + b"]" * 5000 + b"}"
    refused("token_malformed", h + b"." + b64(deep) + b"." + s, policy, keys_by_issuer)
    surrogate = b'{"iss":"\\ud800"}'
    refused("token_malformed", h + b"." + b64(surrogate) + b"." + s, policy, keys_by_issuer)


def test_nesting_deeper_than_the_limit_is_refused_even_when_signed(policy, keys_by_issuer, rsa_a):
    """Nesting the JSON parser still handles (below its recursion limit) but beyond
    tokens._MAX_DEPTH is refused, even in a token the issuer really signed."""
    deep = "x"
    for _ in range(tokens._MAX_DEPTH + 5):
        deep = [deep]
    refused("token_malformed", sign(wlcg_claims(extra=deep), rsa_a), policy, keys_by_issuer)
    shallow = "x"
    for _ in range(tokens._MAX_DEPTH - 2):
        shallow = [shallow]
    assert verify_token(sign(wlcg_claims(extra=shallow), rsa_a), policy, keys_by_issuer, NOW).subject == "user-1"


def test_empty_signature_is_refused_before_the_verifier_is_asked(policy, keys_by_issuer, rsa_a):
    """An empty signature segment never reaches the signature check (a verifier that
    took an empty signature for a valid one could not make it pass)."""
    h, p, _ = sign(wlcg_claims(), rsa_a).split(b".")
    asked = []

    def verify(*args):
        asked.append(args)
        return 1
    with pytest.raises(CallerError) as ei:
        tokens.verify_token(h + b"." + p + b".", policy, keys_by_issuer, NOW, verify=verify)
    assert ei.value.reason == "token_malformed" and asked == []


def test_non_canonical_base64_is_refused(policy, keys_by_issuer, rsa_a):
    """Two encodings of one signature would give two fingerprints for one token."""
    h, p, s = sign(wlcg_claims(), rsa_a).split(b".")
    # RSA-2048 signature: 256 bytes -> 342 chars, last char carries 2 unused bits
    last = s[-1:]
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    twin = s[:-1] + alphabet[alphabet.index(last) | 1:alphabet.index(last) + 2][:1]
    if twin != s:
        refused("token_malformed", h + b"." + p + b"." + twin, policy, keys_by_issuer)


# --- policy -------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [
    {}, {"issuers": []}, {"issuers": [issuer("http://plain.example.org")]},
    {"issuers": [issuer(ISS_A, audiences=[])]}, {"issuers": [issuer(ISS_A, keys=[])]},
    {"issuers": [issuer(ISS_A, keys=["relative.jwks"])]}, {"issuers": [issuer(ISS_A, profile="x")]},
    {"issuers": [issuer(ISS_A, key_headers="fetch")]}, {"issuers": [issuer(ISS_A, extra=1)]},
    {"issuers": [issuer(ISS_A), issuer(ISS_A.rstrip("/"))]}, {"issuers": [issuer(ISS_A)], "leeway": 3600},
    {"issuers": [issuer(ISS_A)], "max_size": True}, {"issuers": [issuer(ISS_A)], "bogus": 1},
])
def test_policy_refuses(bad):
    with pytest.raises(ConfigError):
        TokenPolicy(bad, "glexec.yaml")


def test_policy_round_trip():
    pol = make_policy(issuer(ISS_A, keys="/etc/a.jwks"), issuer(ISS_SCI, profile="scitokens", groups_claim="grp"),
                      max_lifetime=7200)
    again = TokenPolicy(pol.to_plain())
    assert again.to_plain() == pol.to_plain()
    assert again.issuer(ISS_A).groups_claim == "wlcg.groups" and not again.issuer(ISS_A).groups_claim_explicit
    assert again.issuer(ISS_SCI).groups_claim == "grp"
    assert again.max_size == 16384 and again.leeway == 60 and again.max_lifetime == 7200
    assert again.issuer(ISS_A).algorithms == ("RS256", "ES256")


# --- key files (pure parsing) ----------------------------------------------------------

def test_key_file_refusals(rsa_a, ec_sci):
    with pytest.raises(ConfigError, match="private"):
        parse(rsa_a.priv_pem)
    with pytest.raises(ConfigError, match="private"):
        parse(json.dumps({"keys": [dict(rsa_a.jwk(), d="AQAB")]}).encode())
    with pytest.raises(ConfigError, match="oct|secret"):
        parse(json.dumps({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}).encode())
    with pytest.raises(ConfigError, match="duplicate kid"):
        parse(json.dumps({"keys": [rsa_a.jwk(), rsa_a.jwk()]}).encode())
    with pytest.raises(ConfigError, match="no usable"):
        parse(json.dumps({"keys": [rsa_a.jwk(use="enc")]}).encode())
    with pytest.raises(ConfigError):
        parse(b"garbage")
    with pytest.raises(ConfigError, match="alg"):
        parse(json.dumps({"keys": [rsa_a.jwk(alg="HS256")]}).encode())
    with pytest.raises(ConfigError):   # point not on the curve
        j = ec_sci.jwk()
        j["y"] = j["x"]
        parse(json.dumps({"keys": [j]}).encode())
    from cryptography.hazmat.primitives.asymmetric import rsa
    weak = rsa.generate_private_key(65537, 1024).public_key()
    import jwt
    with pytest.raises(ConfigError, match="weak"):
        parse(json.dumps({"keys": [json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(weak))]}).encode())
    cert_like = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    with pytest.raises(ConfigError, match="PUBLIC KEY"):
        parse(cert_like)


def test_key_file_pem_and_jwks(rsa_a, rsa_b, ec_sci):
    ks = parse(rsa_a.pub_pem + ec_sci.pub_pem)
    assert [(k.kid, k.kty, k.crv) for k in ks] == [(None, "RSA", None), (None, "EC", "P-256")]
    ks = parse(rsa_a.jwks(rsa_b, ec_sci))
    assert [k.kid for k in ks] == ["rsa-a", "rsa-b", "sci-1"]
    ks = parse(json.dumps({"keys": [rsa_a.jwk(use="enc"), rsa_b.jwk()]}).encode())
    assert [k.kid for k in ks] == ["rsa-b"]


def test_jwk_alg_pins_the_algorithm(rsa_a):
    keys = {ISS_A: parse(json.dumps({"keys": [rsa_a.jwk(alg="RS256")]}).encode())}
    pol = make_policy(issuer(ISS_A, algorithms=["RS256", "PS256"]))
    verify_token(sign(wlcg_claims(), rsa_a), pol, keys, NOW)
    refused("token_kid", sign(wlcg_claims(), rsa_a, alg="PS256"), pol, keys)
