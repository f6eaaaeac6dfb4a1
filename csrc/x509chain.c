/* x509chain.c - verify a proxy chain from PEM with libcrypto, LCMAPS verify-proxy style: hash-dir
 * trust store, CRLs, proxies allowed, a few errors tolerated but recorded so the Python engine can
 * judge them against the chain classification.  Results are copies owned by gx_result. */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include "native.h"
#define NELEM(a) ((int)(sizeof(a) / sizeof((a)[0])))
#define MAX_PEM (1 << 20)
#define MAX_CERTS 16
static void set_err(gx_result *res, int code, int depth, const char *text) {
    if (res->error == 0)    /* the first error is reported; later ones are its consequences */
        res->error = code, res->error_depth = depth,
        snprintf(res->error_text, sizeof res->error_text, "%s", text);
}

/* 1 iff some certificate of the built chain is shaped like a GT2/GT3 proxy of the one above. */
static int has_legacy(STACK_OF(X509) *ch) {
    int k;
    for (k = 1; ch && k < sk_X509_num(ch); k++)
        if (gx_legacy_proxy_of(sk_X509_value(ch, k), sk_X509_value(ch, k - 1)))
            return 1;
    return 0;
}

/* Tolerate (and record) what LCMAPS verify-proxy tolerates; any other error is fatal.  What
 * OpenSSL reports for the issuer of a GT2/GT3 proxy (it takes it for a CA: INVALID_CA, no
 * keyCertSign) only where the issued certificate is shaped like one; a CA path length it
 * counted legacy proxies into only if there are any (Python recounts without them). */
static int verify_cb(int ok, X509_STORE_CTX *ctx) {
    gx_result *res = X509_STORE_CTX_get_app_data(ctx);
    STACK_OF(X509) *ch = X509_STORE_CTX_get0_chain(ctx);
    int e = X509_STORE_CTX_get_error(ctx), d = X509_STORE_CTX_get_error_depth(ctx), tol = 0, only = 0;
    X509 *x = X509_STORE_CTX_get_current_cert(ctx);
    if (ok)
        return 1;
    switch (e) {
    case X509_V_ERR_UNABLE_TO_GET_CRL: case X509_V_ERR_INVALID_PURPOSE:
    case X509_V_ERR_INVALID_NON_CA:
        tol = 1;
        break;
    case X509_V_ERR_UNHANDLED_CRITICAL_EXTENSION:
        tol = x && gx_gt3_ext(x, &only) >= 0 && only;
        break;
    case X509_V_ERR_INVALID_CA: case X509_V_ERR_KEYUSAGE_NO_CERTSIGN:
        tol = ch && d > 0 && d < sk_X509_num(ch) && sk_X509_value(ch, d) == x
            && gx_legacy_proxy_of(x, sk_X509_value(ch, d - 1));
        break;
    case X509_V_ERR_PATH_LENGTH_EXCEEDED:
        tol = x && (X509_get_extension_flags(x) & EXFLAG_CA) && has_legacy(ch);
        break;
    case X509_V_ERR_CRL_HAS_EXPIRED:
        tol = (res->flags & GX_VC_CRL_EXPIRED_OK) != 0;
        break;
    }
    if (tol && res->ntolerated < NELEM(res->tol_code)) {
        res->tol_depth[res->ntolerated] = d;
        res->tol_code[res->ntolerated++] = e;
        return 1;
    }
    set_err(res, e ? e : -1, d, e ? X509_verify_cert_error_string(e) : "verify failed");
    return 0;
}

/* Certificates and at most one unencrypted key; -1 if malformed or too many certificates. */
static int parse_pem(BIO *bio, STACK_OF(X509) *certs, EVP_PKEY **key, gx_result *res) {
    char *name = NULL, *hdr = NULL;
    unsigned char *data = NULL;
    const unsigned char *p;
    long len = 0;
    int rc = 0;
    X509 *x = NULL;
    while (rc == 0) {
        if (!PEM_read_bio(bio, &name, &hdr, &data, &len)) {
            unsigned long e = ERR_peek_last_error();    /* clean EOF reads as "no start line" */
            return ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE ? 0 : -1;
        }
        p = data;
        rc = -1;    /* headers (Proc-Type: 4,ENCRYPTED), other blocks, a second key: malformed */
        if (hdr[0] == '\0' && strcmp(name, "CERTIFICATE") == 0) {
            if (sk_X509_num(certs) >= MAX_CERTS)
                set_err(res, -1, 0, "too many certificates");
            else if ((x = d2i_X509(NULL, &p, len)) && p == data + len && sk_X509_push(certs, x))
                rc = 0;
            else
                X509_free(x);
        } else if (hdr[0] == '\0' && !*key && (!strcmp(name, "PRIVATE KEY")
                   || !strcmp(name, "RSA PRIVATE KEY") || !strcmp(name, "EC PRIVATE KEY"))) {
            *key = d2i_AutoPrivateKey(NULL, &p, len);
            rc = *key && p == data + len ? 0 : -1;
        }
        OPENSSL_free(name), OPENSSL_free(hdr);
        OPENSSL_clear_free(data, len);      /* may hold key material */
    }
    return rc;
}

void gx_verify_chain(const char *pem, size_t len, const char *ca_dir, int64_t at_time,
                     int flags, gx_result *res) {
    STACK_OF(X509) *certs = sk_X509_new_null(), *chain = NULL;
    X509_STORE *store = NULL;
    X509_STORE_CTX *ctx = NULL;
    X509_LOOKUP *lu;
    EVP_PKEY *key = NULL, *pub;
    BIO *bio = NULL;
    int i, n, rc = -1;
    /* Not the process-wide openssl.cnf/OPENSSL_CONF: results must not depend on them. */
    OPENSSL_init_crypto(OPENSSL_INIT_NO_LOAD_CONFIG, NULL);
    ERR_clear_error();
    memset(res, 0, sizeof *res);
    res->flags = flags;
    if (len > MAX_PEM)
        set_err(res, -1, 0, "PEM too large");
    else if (!ca_dir || !*ca_dir || strchr(ca_dir, ':'))    /* ':' would make it a dir list */
        set_err(res, -1, 0, "bad CA directory");
    else if (certs && (bio = BIO_new_mem_buf(pem, (int)len)))
        rc = parse_pem(bio, certs, &key, res);
    if (rc != 0 || sk_X509_num(certs) == 0)
        goto out;
    pub = X509_get0_pubkey(sk_X509_value(certs, 0));
    res->has_key = key != NULL, res->key_matches = key && pub && EVP_PKEY_eq(pub, key) == 1;
    /* A fresh store per call: CA and CRL files are re-read, never cached stale. */
    if (!(store = X509_STORE_new()) || !(ctx = X509_STORE_CTX_new())
        || !(lu = X509_STORE_add_lookup(store, X509_LOOKUP_hash_dir()))
        || !X509_LOOKUP_add_dir(lu, ca_dir, X509_FILETYPE_PEM)
        || !X509_STORE_CTX_init(ctx, store, sk_X509_value(certs, 0), certs)) {
        set_err(res, -1, 0, "verifier setup failed");
        goto out;
    }
    X509_STORE_CTX_set_time(ctx, 0, (time_t)at_time);
    X509_STORE_CTX_set_depth(ctx, 32);     /* keeps the built chain within res->chain */
    X509_STORE_CTX_set_flags(ctx, X509_V_FLAG_ALLOW_PROXY_CERTS | (flags & GX_VC_CRL_CHECK
                             ? X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL : 0));
    X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT);
    X509_STORE_CTX_set_verify_cb(ctx, verify_cb);
    X509_STORE_CTX_set_app_data(ctx, res);
    if ((rc = X509_verify_cert(ctx)) != 1)  /* it can fail without calling the callback */
        set_err(res, -1, X509_STORE_CTX_get_error_depth(ctx), "verify failed");
    /* The chain as built (partial on failure), leaf first up to the trust anchor. */
    chain = X509_STORE_CTX_get1_chain(ctx);
    n = chain ? sk_X509_num(chain) : 0;
    for (i = 0; i < n && i < NELEM(res->chain); i++) {
        res->nchain = i + 1;                /* a partly filled entry is freed too */
        if (gx_cert_info(sk_X509_value(chain, i), &res->chain[i]))
            set_err(res, -1, i, "unusable certificate in chain");
    }
    if (n > NELEM(res->chain))
        set_err(res, -1, 0, "chain too long");
    res->ok = rc == 1 && res->error == 0;
out:
    if (!res->ok)
        set_err(res, -1, 0, "malformed PEM");   /* only if nothing more specific was set */
    sk_X509_pop_free(chain, X509_free), sk_X509_pop_free(certs, X509_free);
    X509_STORE_CTX_free(ctx), X509_STORE_free(store);
    EVP_PKEY_free(key), BIO_free(bio);
    ERR_clear_error();                      /* leave no error state behind for the caller */
}

void gx_result_free(gx_result *res) {
    gx_cert *c;
    for (c = res->chain; c < res->chain + res->nchain && c < res->chain + NELEM(res->chain); c++) {
        OPENSSL_free(c->der), OPENSSL_free(c->subject_der), OPENSSL_free(c->issuer_der);
        OPENSSL_free(c->subject), OPENSSL_free(c->issuer), OPENSSL_free(c->serial);
        OPENSSL_free(c->pci);
    }
    memset(res, 0, sizeof *res);
}
