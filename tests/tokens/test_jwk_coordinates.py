"""EC JWK coordinates: every encoding of a key's point that a real producer writes gives the
key's one SPKI, and nothing longer than the curve's coordinate is accepted.

The class of failure: PyJWT < 2.8 (Debian 12's python3-jwt 2.6) writes a coordinate without
its leading zero bytes, so about one random P-256 key in 128 came out short and the issuer's
whole key file was refused.  The keys here are derived from chosen scalars, so the cases with
a leading zero are found deterministically, not by luck."""
import base64
import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings, strategies as st

from glexec_py.errors import ConfigError

from .conftest import jwt, parse

CURVES = {"P-256": (ec.SECP256R1(), 32), "P-384": (ec.SECP384R1(), 48), "P-521": (ec.SECP521R1(), 66)}


def b64(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def point(crv, scalar):
    pub = ec.derive_private_key(scalar, CURVES[crv][0]).public_key()
    n = pub.public_numbers()
    return pub, n.x, n.y


def spki_of(pub):
    return pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def jwk(crv, x, y):
    return json.dumps({"keys": [{"kty": "EC", "crv": crv, "x": b64(x), "y": b64(y), "use": "sig"}]}).encode()


def full(v, size):
    return v.to_bytes(size, "big")


def minimal(v):
    return v.to_bytes(max(1, (v.bit_length() + 7) // 8), "big")


def first_scalar_with_short(crv, coord):
    """The smallest scalar >= 2 whose x (coord 1) or y (coord 2) has a leading zero byte."""
    size = CURVES[crv][1]
    for k in range(2, 100_000):
        if minimal(point(crv, k)[coord]) != full(point(crv, k)[coord], size):
            return k
    raise AssertionError("no short coordinate in 100000 scalars")


@pytest.mark.parametrize("crv", sorted(CURVES))
@pytest.mark.parametrize("coord", [1, 2], ids=["x", "y"])
def test_a_short_coordinate_is_the_same_key(crv, coord):
    size = CURVES[crv][1]
    pub, x, y = point(crv, first_scalar_with_short(crv, coord))
    (padded,) = parse(jwk(crv, full(x, size), full(y, size)))
    (short,) = parse(jwk(crv, minimal(x), minimal(y)))
    assert short.spki == padded.spki == spki_of(pub)


@pytest.mark.parametrize("crv", sorted(CURVES))
def test_the_test_oracle_producer_is_accepted(crv):
    """What PyJWT itself writes for the same short-coordinate key parses to that key."""
    pub, _, _ = point(crv, first_scalar_with_short(crv, 1))
    d = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(pub))
    (key,) = parse(json.dumps({"keys": [d]}).encode())
    assert key.spki == spki_of(pub)


@settings(max_examples=150, deadline=None)
@given(crv=st.sampled_from(sorted(CURVES)), scalar=st.integers(min_value=2, max_value=2**250),
       pad_x=st.integers(0, 66), pad_y=st.integers(0, 66))
def test_every_length_up_to_the_curve_gives_one_spki_and_longer_is_refused(crv, scalar, pad_x, pad_y):
    size = CURVES[crv][1]
    pub, x, y = point(crv, scalar)
    lx, ly = len(minimal(x)) + pad_x, len(minimal(y)) + pad_y
    data = jwk(crv, x.to_bytes(lx, "big"), y.to_bytes(ly, "big"))
    if lx <= size and ly <= size:
        (key,) = parse(data)
        assert key.spki == spki_of(pub)
    else:
        with pytest.raises(ConfigError, match=f"a {crv} coordinate is 1 to {size} bytes"):
            parse(data)


@pytest.mark.parametrize("crv", sorted(CURVES))
def test_an_empty_coordinate_or_a_point_off_the_curve_is_refused(crv):
    size = CURVES[crv][1]
    _, x, y = point(crv, 7)
    with pytest.raises(ConfigError, match="coordinate is 1 to"):
        parse(jwk(crv, b"", full(y, size)))
    with pytest.raises(ConfigError, match="not a valid EC public key"):
        parse(jwk(crv, full(x, size), full(y ^ 1, size)))
