/* native.h - the C API of glexec_py._native.
 *
 * Everything between the BEGIN/END CDEF markers is fed verbatim to cffi's cdef() by
 * glexec_py/_native_build.py, so it must stay plain declarations (no preprocessor).
 */
#ifndef GLEXEC_NATIVE_H
#define GLEXEC_NATIVE_H
#include <stddef.h>
#include <stdint.h>

/* BEGIN CDEF */
/* identity.c: step that failed (0 = success); errno goes to *err. */
enum gx_step {
    GX_OK = 0, GX_ARGS, GX_CAP_LAST_CAP, GX_SETGROUPS, GX_SETRESGID, GX_SETRESUID,
    GX_GETRESUID, GX_GETRESGID, GX_GETGROUPS, GX_SETUID0, GX_SETGID0, GX_CAPGET,
    GX_AMBIENT, GX_SETFSGID, GX_SETFSUID, GX_NO_NEW_PRIVS,
    GX_CAPSET, GX_SECCOMP
};
int gx_switch_identity(uint32_t uid, uint32_t gid, const uint32_t *groups, size_t n, int *err);
int gx_set_fs_identity(uint32_t uid, uint32_t gid, const uint32_t *groups, size_t n, int *err);
int gx_set_no_new_privs(int *err);
/* guards.c: the caller's inheritable/ambient capabilities cleared; the TIOCSTI/TIOCLINUX
 * seccomp filter (needs CAP_SYS_ADMIN or no_new_privs). Same return convention. */
int gx_clear_inherited_caps(int *err);
int gx_tty_guard(int *err);

/* plan_decode.c, plan_run.c, plan_linger.c: the one executor of the payload plan
 * (docs/internals.md, "The payload plan"). A step that failed (0 = success), errno in err;
 * GX_SP_IDENTITY + enum gx_step when the identity switch failed. */
enum gx_spawn_step {
    GX_SP_OK = 0, GX_SP_SIGNALS, GX_SP_RLIMITS, GX_SP_NO_NEW_PRIVS, GX_SP_CHDIR, GX_SP_EXEC,
    GX_SP_CLONE, GX_SP_TTY_GUARD, GX_SP_PDEATHSIG, GX_SP_PLAN, GX_SP_LINGER, GX_SP_IDENTITY = 100
};
typedef struct gx_plan gx_plan;      /* a decoded plan: one allocation, gx_plan_free */
typedef struct { int step, err; } gx_exec_result;
typedef struct {
    int status;                      /* wait status */
    int64_t utime_sec, utime_usec, stime_sec, stime_usec;
} gx_linger_result;
int gx_plan_decode(const unsigned char *buf, size_t len, gx_plan **out);
void gx_plan_free(gx_plan *plan);
int gx_plan_exec(const gx_plan *plan, gx_exec_result *res);
int gx_plan_spawn(const gx_plan *plan, gx_exec_result *res);
int gx_plan_linger(const gx_plan *plan, int pid, gx_linger_result *out, gx_exec_result *res);

/* x509chain.c */
typedef struct {
    unsigned char *der, *subject_der, *issuer_der;   /* OPENSSL_malloc'd */
    int der_len, subject_der_len, issuer_der_len;
    char *subject, *issuer, *serial;                 /* oneline names, hex serial */
    int64_t not_before, not_after;
    int is_ca, ca_pathlen;                           /* -1 = no CA path length */
    int proxy;                                       /* 0 none, 1 rfc3820, 2 gt3 */
    unsigned char *pci;                              /* proxyCertInfo value (DER), parsed */
    int pci_len;                                     /*   in Python: RFC and GT3 differ */
    unsigned char sha256[32];
    uint32_t subject_hash;                           /* X509_NAME_hash_ex: <hash>.0 name */
} gx_cert;
typedef struct {
    int ok, error, error_depth;                      /* error -1 = malformed input */
    char error_text[128];
    int ntolerated, tol_depth[64], tol_code[64];
    int nchain;
    gx_cert chain[40];
    int has_key, key_matches;
    int flags;                                       /* in: the gx_verify_chain flags */
} gx_result;
enum gx_verify_flags { GX_VC_CRL_CHECK = 1, GX_VC_CRL_EXPIRED_OK = 2 };
void gx_verify_chain(const char *pem, size_t len, const char *ca_dir, int64_t at_time,
                     int flags, gx_result *res);
void gx_result_free(gx_result *res);
void gx_crypto_warm(void);
/* sigverify.c (VOMS attribute certificates; the AC itself is parsed in Python) */
int gx_verify_signature(const unsigned char *cert, size_t cert_len,
                        const unsigned char *alg, size_t alg_len,
                        const unsigned char *tbs, size_t tbs_len,
                        const unsigned char *sig, size_t sig_len);
int gx_verify_der_chain(const unsigned char *buf, const size_t *lens, int n, const char *ca_dir,
                        int64_t at_time, int crl_check, int *error, int *error_depth);
/* jws.c (JWT bearer tokens; the token and the key files are parsed in Python) */
enum gx_key_kind { GX_KEY_RSA = 1, GX_KEY_P256, GX_KEY_P384, GX_KEY_P521, GX_KEY_ED25519 };
enum gx_jws_alg {
    GX_JWS_RS256 = 1, GX_JWS_RS384, GX_JWS_RS512, GX_JWS_PS256, GX_JWS_PS384, GX_JWS_PS512,
    GX_JWS_ES256, GX_JWS_ES384, GX_JWS_ES512, GX_JWS_EDDSA
};
int gx_check_pubkey(const unsigned char *spki, size_t spki_len, int *bits);
int gx_jws_verify(int alg, const unsigned char *spki, size_t spki_len,
                  const unsigned char *msg, size_t msg_len,
                  const unsigned char *sig, size_t sig_len);
/* sweepwalk.c: glexec-sweep's per-directory scan (lstat fields of every entry but "." and
 * "..") and the checked removal of the entries the Python planner chose.  Scan: number of
 * entries (0 = end of the directory), -1 with errno in *err; names NUL-terminated in
 * names[name_off..]. Unlink: per entry res = 0 removed, GX_SW_* (> 0) not the object
 * decided on any more, -errno; returns the number removed, their bytes in *bytes. */
typedef struct {
    uint64_t ino, dev;
    int64_t size;
    double atime, mtime, ctime;
    uint32_t mode, uid, gid, name_off, name_len;
    int32_t pad;
} gx_sweep_ent;
enum gx_sweep_recheck {
    GX_SW_OK = 0, GX_SW_OWNER_CHANGED, GX_SW_DEVICE_CHANGED, GX_SW_REPLACED, GX_SW_STICKY
};
int gx_sweep_scan(int dirfd, gx_sweep_ent *ents, int maxents, char *names, size_t names_len,
                  size_t *names_used, int *err);
int gx_sweep_recheck(const gx_sweep_ent *before, const gx_sweep_ent *now, uint64_t root_dev);
int gx_sweep_unlink(int dirfd, const gx_sweep_ent *ents, int nents, const char *names,
                    size_t names_len, const int32_t *idx, int n, uint64_t root_dev,
                    int32_t *res, int64_t *bytes);
/* pam.c: the target's PAM account check and session (returns are PAM codes; the
 * handle is opaque to Python). */
typedef struct gx_pam gx_pam;
int gx_pam_start(const char *service, const char *user, const char *ruser, const char *tty,
                 gx_pam **out);
int gx_pam_acct_mgmt(gx_pam *h);
int gx_pam_open_session(gx_pam *h);
int gx_pam_close_session(gx_pam *h);
int gx_pam_end(gx_pam *h, int last);
const char *gx_pam_strerror(gx_pam *h, int rc);
const char *gx_pam_code(int rc);
/* END CDEF */

/* sigverify.c, jws.c: d2i of exactly len bytes (at most MAX_DER, no trailing data), else NULL. */
#define MAX_DER (1 << 20)
#define D2I_EXACT(type, fn, p, len) ({                                        \
    const unsigned char *_q = (p);                                          \
    type *_o = (len) > 0 && (len) <= MAX_DER ? fn(NULL, &_q, (long)(len)) : NULL; \
    if (_o && _q != (p) + (len)) { type##_free(_o); _o = NULL; }            \
    _o; })

/* x509info.c: helpers of x509chain.c, not part of the module's API (hidden, not in the cdef). */
struct x509_st;
__attribute__((visibility("hidden"))) int gx_gt3_ext(struct x509_st *x, int *only);
__attribute__((visibility("hidden"))) int gx_legacy_proxy_of(struct x509_st *issuer,
                                                             struct x509_st *x);
__attribute__((visibility("hidden"))) int gx_cert_info(struct x509_st *x, gx_cert *c);

/* plan_decode.c: the decoded plan. Every pointer points into the same allocation (the
 * plan's bytes are copied into it before they are checked); argv/envp end with NULL. */
#define GX_PLAN_HEAD 56
#define GX_PLAN_MAX (32u << 20)
#define GX_PLAN_MAX_GROUPS 65536u
#define GX_PLAN_NLIMITS 16u
#define GX_PLAN_MAX_STRINGS 131072u
#define GX_PLAN_MAX_STRING (16u << 20)
#define GX_PLAN_MAX_PATH 4095u
enum { GX_PLAN_SWITCH = 1, GX_PLAN_NO_NEW_PRIVS = 2, GX_PLAN_TTY_GUARD = 4, GX_PLAN_LINGER = 8 };
struct gx_plan_rlimit { uint32_t resource; uint64_t soft, hard; };   /* UINT64_MAX = infinity */
struct gx_plan {
    uint32_t flags, uid, gid, umask, pdeathsig, caller_ruid;
    uint64_t forward;                /* bit n: forward signal n + 1 (linger only) */
    uint32_t ngroups, nrlimits, argc, envc;
    const uint32_t *groups;
    const struct gx_plan_rlimit *rlimits;
    const char *path, *cwd;
    char **argv, **envp;
};
/* plan_linger.c: the signals the lingering parent waits for (forwarded ones and SIGCHLD). */
#include <signal.h>
__attribute__((visibility("hidden"))) void gx_plan_linger_set(const gx_plan *plan, sigset_t *set);

#endif
