/* Drive the real LCMAPS with a proxy file (pem mode: verify-proxy + VOMS parsing in the
 * LCMAPS core) for the VOMS side-by-side test and bench/voms.py.  Recipe:
 * shared/reference/lcmaps-semantics.md section 10.
 *
 * Build:  gcc -O2 -o harness lcmaps_pem_harness.c -llcmaps
 * Env:    LCMAPS_DIR, LCMAPS_DB_FILE, LCMAPS_LOG_FILE, LCMAPS_DEBUG_LEVEL, X509_CERT_DIR,
 *         X509_VOMS_DIR (as LCMAPS reads them)
 * Usage:  harness pem <proxyfile> [-p policy]... [-n N]
 * Output: one line per run (init+run+term each time):
 *         OK uid=<n> pgid=<a,b> sgid=<c,d> poolindex=<lease> us=<microseconds>
 *         FAIL rc=<n> us=<microseconds>
 * Exit:   0 if every run succeeded, 1 if one failed, 2 on usage/init errors.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <lcmaps/lcmaps.h>

#define MAXP 16

static long long now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000LL + ts.tv_nsec / 1000;
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    rewind(f);
    buf = malloc(n + 1);
    if (buf && fread(buf, 1, n, f) != (size_t)n) { free(buf); buf = NULL; }
    if (buf) buf[n] = '\0';
    fclose(f);
    return buf;
}

int main(int argc, char **argv) {
    char *pols[MAXP], *pem;
    int npols = 0, n = 1, i, k, status = 0;
    if (argc < 3 || strcmp(argv[1], "pem") != 0) goto usage;
    for (i = 3; i < argc; i++) {
        if (!strcmp(argv[i], "-p") && i + 1 < argc && npols < MAXP) pols[npols++] = argv[++i];
        else if (!strcmp(argv[i], "-n") && i + 1 < argc) n = atoi(argv[++i]);
        else goto usage;
    }
    if (!(pem = slurp(argv[2]))) { fprintf(stderr, "cannot read %s\n", argv[2]); return 2; }
    for (k = 0; k < n; k++) {
        uid_t uid = (uid_t)-1; gid_t *pg = NULL, *sg = NULL; int npg = 0, nsg = 0, rc;
        char *pidx = NULL;
        long long t0 = now_us();
        if (lcmaps_init_and_logfile(getenv("LCMAPS_LOG_FILE"), NULL, 1)) {
            printf("FAIL init\n");
            return 2;
        }
        rc = lcmaps_run_with_pem_and_return_account(NULL, pem, 0, NULL, npols,
                npols ? pols : NULL, &uid, &pg, &npg, &sg, &nsg, &pidx);
        if (rc == 0) {
            printf("OK uid=%ld pgid=", (long)uid);
            for (i = 0; i < npg; i++) printf("%s%ld", i ? "," : "", (long)pg[i]);
            printf(" sgid=");
            for (i = 0; i < nsg; i++) printf("%s%ld", i ? "," : "", (long)sg[i]);
            printf(" poolindex=%s", pidx ? pidx : "");
        }
        free(pidx);             /* the pem variant returns a copy */
        lcmaps_term();
        if (rc == 0) printf(" us=%lld\n", now_us() - t0);
        else { printf("FAIL rc=%d us=%lld\n", rc, now_us() - t0); status = 1; }
        fflush(stdout);
    }
    free(pem);
    return status;
usage:
    fprintf(stderr, "usage: harness pem PROXYFILE [-p policy]... [-n N]\n");
    return 2;
}
