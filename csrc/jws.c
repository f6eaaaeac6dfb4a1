/* jws.c - libcrypto primitives for JWT bearer tokens (glexec_py/core/tokens.py parses the
 * token, the JWKS/PEM key files and builds each key's DER SubjectPublicKeyInfo in Python;
 * only the cryptography happens here):
 *   gx_check_pubkey   what kind of key a SubjectPublicKeyInfo holds, and is it well formed
 *                     (an EC point on its curve); run once when a key file is loaded
 *   gx_jws_verify     one JWS signature (RFC 7515/7518) for exactly one allow-listed alg
 * Inputs are copied into OpenSSL objects or only read; nothing is kept between calls. */
#define _GNU_SOURCE
#include <string.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include "native.h"
#define MAX_MSG (1 << 21)     /* a signing input; tokens are refused above 1 MiB anyway */
#define MIN_RSA_BITS 2048

/* Per alg: the key kind it needs, the digest (NULL: EdDSA signs the message itself), RSA
 * padding, and for ECDSA the byte length of one coordinate (r and s are that long each). */
static const struct jws_alg {
    int kind;
    const EVP_MD *(*md)(void);
    int padding, coord;
} ALGS[] = {
    [GX_JWS_RS256] = {GX_KEY_RSA, EVP_sha256, RSA_PKCS1_PADDING, 0},
    [GX_JWS_RS384] = {GX_KEY_RSA, EVP_sha384, RSA_PKCS1_PADDING, 0},
    [GX_JWS_RS512] = {GX_KEY_RSA, EVP_sha512, RSA_PKCS1_PADDING, 0},
    [GX_JWS_PS256] = {GX_KEY_RSA, EVP_sha256, RSA_PKCS1_PSS_PADDING, 0},
    [GX_JWS_PS384] = {GX_KEY_RSA, EVP_sha384, RSA_PKCS1_PSS_PADDING, 0},
    [GX_JWS_PS512] = {GX_KEY_RSA, EVP_sha512, RSA_PKCS1_PSS_PADDING, 0},
    [GX_JWS_ES256] = {GX_KEY_P256, EVP_sha256, 0, 32},
    [GX_JWS_ES384] = {GX_KEY_P384, EVP_sha384, 0, 48},
    [GX_JWS_ES512] = {GX_KEY_P521, EVP_sha512, 0, 66},
    [GX_JWS_EDDSA] = {GX_KEY_ED25519, NULL, 0, 0},
};

/* enum gx_key_kind of a decoded key (0: a type or curve we do not accept); *bits its size. */
static int key_kind(EVP_PKEY *k, int *bits) {
    char group[64];
    size_t glen = 0;
    int nid;
    *bits = EVP_PKEY_get_bits(k);
    switch (EVP_PKEY_get_base_id(k)) {       /* RSA-PSS keys (EVP_PKEY_RSA_PSS) are not RSA */
    case EVP_PKEY_RSA:
        return GX_KEY_RSA;
    case EVP_PKEY_ED25519:
        return GX_KEY_ED25519;
    case EVP_PKEY_EC:
        if (!EVP_PKEY_get_group_name(k, group, sizeof group, &glen))
            return 0;
        nid = OBJ_txt2nid(group);
        return nid == NID_X9_62_prime256v1 ? GX_KEY_P256 : nid == NID_secp384r1 ? GX_KEY_P384
             : nid == NID_secp521r1 ? GX_KEY_P521 : 0;
    default:
        return 0;
    }
}

/* The key of a DER SubjectPublicKeyInfo of exactly len bytes, or NULL. */
static EVP_PKEY *pubkey(const unsigned char *spki, size_t len) {
    return spki ? D2I_EXACT(EVP_PKEY, d2i_PUBKEY, spki, len) : NULL;
}

/* enum gx_key_kind of the DER SubjectPublicKeyInfo `spki` (exactly spki_len bytes), its size
 * in bits in *bits; 0: it decodes but is a key type or curve we do not accept; -1: it does
 * not decode, has trailing bytes, or fails libcrypto's public-key check (an EC point not on
 * its curve, the point at infinity).  RSA size and exponent are judged by the caller. */
int gx_check_pubkey(const unsigned char *spki, size_t spki_len, int *bits) {
    EVP_PKEY *k;
    EVP_PKEY_CTX *ctx = NULL;
    int kind = -1;
    OPENSSL_init_crypto(OPENSSL_INIT_NO_LOAD_CONFIG, NULL);
    ERR_clear_error();
    *bits = 0;
    if (!(k = pubkey(spki, spki_len)))
        goto out;
    kind = key_kind(k, bits);
    if (kind >= GX_KEY_P256 && kind <= GX_KEY_P521
        && (!(ctx = EVP_PKEY_CTX_new_from_pkey(NULL, k, NULL)) || EVP_PKEY_public_check(ctx) != 1))
        kind = -1;
out:
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(k);
    ERR_clear_error();
    return kind;
}

/* DER ECDSA-Sig-Value of a JWS ECDSA signature r||s (2 * coord bytes); NULL on failure. */
static unsigned char *ecdsa_der(const unsigned char *sig, int coord, int *der_len) {
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, coord, NULL), *s = BN_bin2bn(sig + coord, coord, NULL);
    unsigned char *der = NULL;
    if (!es || !r || !s || !ECDSA_SIG_set0(es, r, s)) {
        BN_free(r), BN_free(s), ECDSA_SIG_free(es);
        return NULL;
    }
    *der_len = i2d_ECDSA_SIG(es, &der);          /* es owns r and s now */
    ECDSA_SIG_free(es);
    if (*der_len <= 0) {
        OPENSSL_free(der);
        return NULL;
    }
    return der;
}

/* 1: `sig` is a valid JWS signature of algorithm `alg` (enum gx_jws_alg) over the signing
 * input `msg` (ASCII(BASE64URL(header) '.' BASE64URL(payload))) with the key of the DER
 * SubjectPublicKeyInfo `spki`; 0: it is not (wrong value, an ECDSA signature that is not
 * exactly 2 * coordinate size, a key whose type or curve does not fit alg, RSA < 2048 bits);
 * -1: an unknown alg, a key that does not decode, oversized input or a libcrypto failure.
 *   RS*: RSASSA-PKCS1-v1_5; PS*: RSASSA-PSS, MGF1 with the same hash, salt length = hash
 *   length (RFC 7518 3.5); ES*: ECDSA with P-256/384/521 only for ES256/384/512, raw r||s;
 *   EdDSA: Ed25519 (no digest).  Never none, never HMAC. */
int gx_jws_verify(int alg, const unsigned char *spki, size_t spki_len,
                  const unsigned char *msg, size_t msg_len,
                  const unsigned char *sig, size_t sig_len) {
    const struct jws_alg *a;
    EVP_PKEY *k = NULL;
    EVP_MD_CTX *ctx = NULL;
    EVP_PKEY_CTX *pctx = NULL;
    unsigned char *der = NULL;
    const unsigned char *s = sig;
    size_t slen = sig_len;
    int bits, der_len = 0, rc = -1;
    OPENSSL_init_crypto(OPENSSL_INIT_NO_LOAD_CONFIG, NULL);
    ERR_clear_error();
    if (alg < GX_JWS_RS256 || alg > GX_JWS_EDDSA || !msg || !sig || msg_len > MAX_MSG
        || !(k = pubkey(spki, spki_len)))
        goto out;
    a = &ALGS[alg];
    rc = 0;
    if (key_kind(k, &bits) != a->kind || (a->kind == GX_KEY_RSA && bits < MIN_RSA_BITS))
        goto out;
    if (a->coord) {
        if (sig_len != 2 * (size_t)a->coord)
            goto out;
        if (!(der = ecdsa_der(sig, a->coord, &der_len))) {
            rc = -1;
            goto out;
        }
        s = der, slen = (size_t)der_len;
    }
    rc = -1;
    if (!(ctx = EVP_MD_CTX_new())
        || EVP_DigestVerifyInit(ctx, &pctx, a->md ? a->md() : NULL, NULL, k) != 1)
        goto out;
    if (a->kind == GX_KEY_RSA
        && (EVP_PKEY_CTX_set_rsa_padding(pctx, a->padding) <= 0
            || (a->padding == RSA_PKCS1_PSS_PADDING
                && (EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) <= 0
                    || EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, a->md()) <= 0))))
        goto out;
    /* 1 valid; 0 or negative (bad value, bad encoding, wrong length): not verified */
    rc = EVP_DigestVerify(ctx, s, slen, msg, msg_len) == 1 ? 1 : 0;
out:
    OPENSSL_free(der);
    EVP_MD_CTX_free(ctx);                        /* frees pctx too */
    EVP_PKEY_free(k);
    ERR_clear_error();
    return rc;
}
