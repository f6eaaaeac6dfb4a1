/* x509info.c - per-certificate helpers of x509chain.c: the copies handed to Python (gx_cert),
 * GT3 (draft) proxy extension lookup, and the structural test that lets the verify callback
 * tolerate the errors OpenSSL reports for the issuer of a legacy GT2/GT3 proxy. */
#define _GNU_SOURCE
#include <limits.h>
#include <string.h>
#include <time.h>
#include <openssl/x509v3.h>
#include "native.h"
/* DER content of OID 1.3.6.1.4.1.3536.1.222, the GT3 (draft) proxyCertInfo extension */
static const unsigned char GT3[] = {0x2b, 6, 1, 4, 1, 0x9b, 0x50, 1, 0x81, 0x5e};

/* Index of the critical GT3 proxy extension (-1: none); *only: no other unhandled critical ext. */
int gx_gt3_ext(X509 *x, int *only) {
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

/* CA by basicConstraints, or by what OpenSSL would accept as an issuer (v1, keyCertSign, ...). */
static int is_ca(X509 *x) {
    return (X509_get_extension_flags(x) & EXFLAG_CA) || X509_check_ca(x) != 0;
}

static int is_str(const ASN1_STRING *v, const char *s) {
    size_t n = strlen(s);
    return ASN1_STRING_length(v) == (int)n && !memcmp(ASN1_STRING_get0_data(v), s, n);
}

/* 1 iff x is shaped like a legacy proxy issued by `issuer`: neither is a CA, x's issuer name is
 * issuer's subject, x's subject DER is issuer's subject DER plus exactly one RDN holding a
 * single CN, and either that CN is "proxy"/"limited proxy" (GT2) or x carries the critical GT3
 * extension.  Only the shape: signatures are OpenSSL's, the semantics are judged in Python. */
int gx_legacy_proxy_of(X509 *issuer, X509 *x) {
    const X509_NAME *is, *xs;
    const X509_NAME_ENTRY *last;
    const unsigned char *a, *b;
    size_t alen, blen;
    X509_NAME *prefix;
    int n, same = 0, only;
    if (!issuer || !x || is_ca(issuer) || is_ca(x))
        return 0;
    is = X509_get_subject_name(issuer), xs = X509_get_subject_name(x);
    n = X509_NAME_entry_count(is);
    if (X509_NAME_cmp(X509_get_issuer_name(x), is) != 0 || X509_NAME_entry_count(xs) != n + 1)
        return 0;
    last = X509_NAME_get_entry(xs, n);
    if (OBJ_obj2nid(X509_NAME_ENTRY_get_object(last)) != NID_commonName || (n > 0
        && X509_NAME_ENTRY_set(last) == X509_NAME_ENTRY_set(X509_NAME_get_entry(xs, n - 1))))
        return 0;                           /* not a CN, or not an RDN of its own */
    if ((prefix = X509_NAME_dup(xs)) != NULL) {     /* byte-exact prefix: re-encoded without */
        X509_NAME_ENTRY_free(X509_NAME_delete_entry(prefix, n));   /* the last RDN */
        same = X509_NAME_get0_der(prefix, &a, &alen) && X509_NAME_get0_der(is, &b, &blen)
            && alen == blen && !memcmp(a, b, alen);
        X509_NAME_free(prefix);
    }
    return same && (gx_gt3_ext(x, &only) >= 0 || is_str(X509_NAME_ENTRY_get_data(last), "proxy")
                    || is_str(X509_NAME_ENTRY_get_data(last), "limited proxy"));
}

/* Fill one gx_cert; -1 if any field cannot be produced. */
int gx_cert_info(X509 *x, gx_cert *c) {
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    const ASN1_OCTET_STRING *v;
    unsigned int mdlen = 0;
    long pl = X509_get_pathlen(x);
    struct tm nb, na;
    int idx, only, bad, hashed = 0;
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
    else if ((idx = gx_gt3_ext(x, &only)) >= 0)
        c->proxy = 2;
    if (c->proxy) {                         /* the value is parsed in Python (RFC/GT3 differ) */
        v = X509_EXTENSION_get_data(X509_get_ext(x, idx));
        c->pci_len = ASN1_STRING_length(v);
        bad |= !(c->pci = OPENSSL_memdup(ASN1_STRING_get0_data(v), c->pci_len));
    }
    bad |= !X509_digest(x, EVP_sha256(), c->sha256, &mdlen) || mdlen != sizeof c->sha256;
    c->subject_hash = (uint32_t)X509_NAME_hash_ex(X509_get_subject_name(x), NULL, NULL, &hashed);
    bad |= !hashed;                         /* names the CA's policy files in ca_dir */
    return bad || c->der_len <= 0 || c->subject_der_len <= 0 || c->issuer_der_len <= 0
        || !c->subject || !c->issuer || !c->serial ? -1 : 0;
}
