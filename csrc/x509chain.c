/* x509chain.c - verify a proxy chain from PEM with libcrypto, LCMAPS verify-proxy style: hash-dir
 * trust store, CRLs, proxies allowed, a few errors tolerated but recorded so the Python engine can
 * judge them against the chain classification.  Results are copies owned by gx_result. */
#define _GNU_SOURCE
#include <limits.h>
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
/* DER content of OID 1.3.6.1.4.1.3536.1.222, the GT3 (draft) proxyCertInfo extension */
static const unsigned char GT3[] = {0x2b, 6, 1, 4, 1, 0x9b, 0x50, 1, 0x81, 0x5e};

static void set_err(gx_result *res, int code, int depth, const char *text) {
    if (res->error == 0)    /* the first error is reported; later ones are its consequences */
        res->error = code, res->error_depth = depth,
        snprintf(res->error_text, sizeof res->error_text, "%s", text);
}

/* Index of the critical GT3 proxy extension (-1: none); *only: no other unhandled critical ext. */
static int gt3_ext(X509 *x, int *only) {
    int i, idx = -1, other = 0;
    for (i = 0; i < X509_get_ext_count(x); i++) {
        X509_EXTENSION *e = X509_get_ext(x, i);
        const ASN1_OBJECT *o = X509_EXTENSION_get_object(e);
        if (!X509_EXTENSION_get_critical(e))
            continue;
        if (idx < 0 && OBJ_length(o) == sizeof GT3 && !memcmp(OBJ_get0_data(o), GT3, sizeof GT3))
            idx = i;
        else if (!X509_supported_extension(e))
            other = 1;
    }
    *only = idx >= 0 && !other;
    return idx;
}

/* Tolerate (and record) what LCMAPS verify-proxy tolerates; any other error is fatal. */
static int verify_cb(int ok, X509_STORE_CTX *ctx) {
    gx_result *res = X509_STORE_CTX_get_app_data(ctx);
    int e = X509_STORE_CTX_get_error(ctx), d = X509_STORE_CTX_get_error_depth(ctx), only = 0;
    X509 *x = X509_STORE_CTX_get_current_cert(ctx);
    if (ok)
        return 1;
    if (e == X509_V_ERR_UNHANDLED_CRITICAL_EXTENSION && x)
        gt3_ext(x, &only);
    if ((only || e == X509_V_ERR_UNABLE_TO_GET_CRL || e == X509_V_ERR_INVALID_CA
         || e == X509_V_ERR_INVALID_PURPOSE || e == X509_V_ERR_INVALID_NON_CA)
        && res->ntolerated < NELEM(res->tol_code)) {
        res->tol_depth[res->ntolerated] = d;
        res->tol_code[res->ntolerated++] = e;
        return 1;
    }
    set_err(res, e ? e : -1, d, e ? X509_verify_cert_error_string(e) : "verify failed");
    return 0;
}

/* Fill one gx_cert; -1 if any field cannot be produced. */
static int cert_info(X509 *x, gx_cert *c) {
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    const ASN1_OCTET_STRING *v;
    unsigned int mdlen = 0;
    long pl = X509_get_pathlen(x);
    struct tm nb, na;
    int idx, only, bad;
    c->der_len = i2d_X509(x, &c->der);      /* i2d allocates when *out is NULL */
    c->subject_der_len = i2d_X509_NAME(X509_get_subject_name(x), &c->subject_der);
    c->issuer_der_len = i2d_X509_NAME(X509_get_issuer_name(x), &c->issuer_der);
    c->subject = X509_NAME_oneline(X509_get_subject_name(x), NULL, 0);
    c->issuer = X509_NAME_oneline(X509_get_issuer_name(x), NULL, 0);
    c->serial = bn ? BN_bn2hex(bn) : NULL;
    BN_free(bn);
    bad = !ASN1_TIME_to_tm(X509_get0_notBefore(x), &nb)
        || !ASN1_TIME_to_tm(X509_get0_notAfter(x), &na);
    c->not_before = bad ? 0 : (int64_t)timegm(&nb);
    c->not_after = bad ? 0 : (int64_t)timegm(&na);
    c->is_ca = (X509_get_extension_flags(x) & EXFLAG_CA) != 0;
    c->ca_pathlen = pl < 0 ? -1 : pl > INT_MAX ? INT_MAX : (int)pl;
    /* RFC 3820 as OpenSSL itself classified it (EXFLAG_PROXY), else a critical GT3 ext. */
    idx = X509_get_ext_by_NID(x, NID_proxyCertInfo, -1);
    if ((X509_get_extension_flags(x) & EXFLAG_PROXY) && idx >= 0)
        c->proxy = 1;
    else if ((idx = gt3_ext(x, &only)) >= 0)
        c->proxy = 2;
    if (c->proxy) {                         /* the value is parsed in Python (RFC/GT3 differ) */
        v = X509_EXTENSION_get_data(X509_get_ext(x, idx));
        c->pci_len = ASN1_STRING_length(v);
        bad |= !(c->pci = OPENSSL_memdup(ASN1_STRING_get0_data(v), c->pci_len));
    }
    bad |= !X509_digest(x, EVP_sha256(), c->sha256, &mdlen) || mdlen != sizeof c->sha256;
    return bad || c->der_len <= 0 || c->subject_der_len <= 0 || c->issuer_der_len <= 0
        || !c->subject || !c->issuer || !c->serial ? -1 : 0;
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
                     int crl_check, gx_result *res) {
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
    X509_STORE_CTX_set_flags(ctx, X509_V_FLAG_ALLOW_PROXY_CERTS | (crl_check
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
        if (cert_info(sk_X509_value(chain, i), &res->chain[i]))
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
