/* sigverify.c - two libcrypto primitives for VOMS attribute certificates (glexec_py/core/voms.py
 * parses the AC in Python; only the cryptography happens here):
 *   gx_verify_signature   a signature over given TBS bytes with the key of a given certificate
 *   gx_verify_der_chain   a DER certificate (plus untrusted intermediates) against a hash-dir
 * Inputs are copied into OpenSSL objects; nothing is kept between calls. */
#define _GNU_SOURCE
#include <string.h>
#include <time.h>
#include <openssl/asn1.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include "native.h"
#define MAX_CHAIN 16

/* 1: the signature `sig` (a DER BIT STRING TLV) made with algorithm `alg` (a DER
 * AlgorithmIdentifier TLV) over `tbs` (one complete DER TLV, verified byte-exactly as given)
 * verifies with the public key of `cert` (DER); 0: it does not (wrong value, algorithm that
 * does not fit the key or that libcrypto does not know); -1: an input does not decode. */
int gx_verify_signature(const unsigned char *cert, size_t cert_len,
                        const unsigned char *alg, size_t alg_len,
                        const unsigned char *tbs, size_t tbs_len,
                        const unsigned char *sig, size_t sig_len) {
    X509 *x = NULL;
    X509_ALGOR *a = NULL;
    ASN1_BIT_STRING *s = NULL;
    ASN1_TYPE *t = NULL;
    EVP_PKEY *key;
    int rc = -1;
    OPENSSL_init_crypto(OPENSSL_INIT_NO_LOAD_CONFIG, NULL);
    ERR_clear_error();
    x = D2I_EXACT(X509, d2i_X509, cert, cert_len);
    a = D2I_EXACT(X509_ALGOR, d2i_X509_ALGOR, alg, alg_len);
    s = D2I_EXACT(ASN1_BIT_STRING, d2i_ASN1_BIT_STRING, sig, sig_len);
    /* ASN1_ANY keeps a SEQUENCE as its raw encoding, so i2d inside ASN1_item_verify gives
     * back exactly the bytes we were handed (the AC's acinfo as signed). */
    t = D2I_EXACT(ASN1_TYPE, d2i_ASN1_TYPE, tbs, tbs_len);
    if (!x || !a || !s || !t || ASN1_TYPE_get(t) != V_ASN1_SEQUENCE
        || (s->flags & 0x07) || !(key = X509_get0_pubkey(x)))
        goto out;
    /* 1 valid; 0 or -1 (bad value, algorithm/key mismatch, unsupported): not verified */
    rc = ASN1_item_verify(ASN1_ITEM_rptr(ASN1_ANY), a, s, t, key) == 1 ? 1 : 0;
out:
    X509_free(x), X509_ALGOR_free(a), ASN1_BIT_STRING_free(s), ASN1_TYPE_free(t);
    ERR_clear_error();
    return rc;
}

/* Only a missing CRL is tolerated (no CRL published is not a revocation). */
static int chain_cb(int ok, X509_STORE_CTX *ctx) {
    int *first = X509_STORE_CTX_get_app_data(ctx);
    int e = X509_STORE_CTX_get_error(ctx);
    if (ok || e == X509_V_ERR_UNABLE_TO_GET_CRL)
        return 1;
    if (first[0] == 0)
        first[0] = e ? e : -1, first[1] = X509_STORE_CTX_get_error_depth(ctx);
    return 0;
}

/* Verify certificate 0 of `n` DER certificates (concatenated in `buf`, lengths in `lens`;
 * the others are untrusted intermediates) against the hash-dir `ca_dir` at `at_time`:
 * signatures, validity of every certificate, CRLs (a missing CRL is fine, a revoked or an
 * expired CRL is not) if crl_check, no proxy certificates, any purpose.  Returns 1 if it
 * verifies; 0 otherwise with *error = X509_V_ERR code (-1: malformed input or setup
 * failure) and *error_depth. */
int gx_verify_der_chain(const unsigned char *buf, const size_t *lens, int n, const char *ca_dir,
                        int64_t at_time, int crl_check, int *error, int *error_depth) {
    STACK_OF(X509) *certs = sk_X509_new_null();
    X509_STORE *store = NULL;
    X509_STORE_CTX *ctx = NULL;
    X509_LOOKUP *lu;
    X509 *x;
    size_t off = 0;
    int i, rc = 0, first[2] = {0, 0};
    OPENSSL_init_crypto(OPENSSL_INIT_NO_LOAD_CONFIG, NULL);
    ERR_clear_error();
    *error = -1, *error_depth = 0;
    if (!certs || n < 1 || n > MAX_CHAIN || !ca_dir || !*ca_dir || strchr(ca_dir, ':'))
        goto out;
    for (i = 0; i < n; off += lens[i], i++) {
        x = D2I_EXACT(X509, d2i_X509, buf + off, lens[i]);
        if (!x || !sk_X509_push(certs, x)) {
            X509_free(x);
            *error_depth = i;
            goto out;
        }
    }
    if (!(store = X509_STORE_new()) || !(ctx = X509_STORE_CTX_new())
        || !(lu = X509_STORE_add_lookup(store, X509_LOOKUP_hash_dir()))
        || !X509_LOOKUP_add_dir(lu, ca_dir, X509_FILETYPE_PEM)
        || !X509_STORE_CTX_init(ctx, store, sk_X509_value(certs, 0), certs))
        goto out;
    X509_STORE_CTX_set_time(ctx, 0, (time_t)at_time);
    X509_STORE_CTX_set_depth(ctx, MAX_CHAIN);
    if (crl_check)
        X509_STORE_CTX_set_flags(ctx, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
    X509_STORE_CTX_set_verify_cb(ctx, chain_cb);
    X509_STORE_CTX_set_app_data(ctx, first);
    rc = X509_verify_cert(ctx) == 1 && first[0] == 0;
    /* A proxy (or anything OpenSSL flags as one) never signs VOMS attributes. */
    for (i = 0; rc && i < sk_X509_num(certs); i++)
        if (X509_get_extension_flags(sk_X509_value(certs, i)) & EXFLAG_PROXY)
            rc = 0, first[0] = X509_V_ERR_PROXY_CERTIFICATES_NOT_ALLOWED, first[1] = i;
    if (!rc) {
        *error = first[0] ? first[0] : X509_STORE_CTX_get_error(ctx) ? X509_STORE_CTX_get_error(ctx) : -1;
        *error_depth = first[0] ? first[1] : X509_STORE_CTX_get_error_depth(ctx);
    } else {
        *error = 0;
    }
out:
    sk_X509_pop_free(certs, X509_free);
    X509_STORE_CTX_free(ctx), X509_STORE_free(store);
    ERR_clear_error();
    return rc;
}
