/* Drive the real LCMAPS (DN string + optional FQANs, no certificate) for side-by-side tests
 * and the lease benchmark.  Recipe: shared/reference/lcmaps-semantics.md section 10.
 *
 * Build:  gcc -O2 -o harness lcmaps_harness.c -llcmaps
 * Env:    LCMAPS_DIR, LCMAPS_DB_FILE, LCMAPS_LOG_FILE, LCMAPS_DEBUG_LEVEL (as LCMAPS reads them)
 * Usage:  harness fqan "<DN>" [-f FQAN]... [-p policy]... [-m mapcounter] [-n N] [-r]
 *         harness stdin [-p policy]... [-r]
 *           stdin mode: one request per line, "<mapcounter>\t<DN>" (raw bytes, no newline
 *           inside); init+run+term per line unless -r (init once).
 * Output: one line per mapping:
 *         OK uid=<n> user=<name> pgid=<a,b> sgid=<c,d> poolindex=<lease> us=<microseconds>
 *         FAIL rc=<n> us=<microseconds>
 * Exit:   0 if every mapping succeeded, 1 if one failed, 2 on usage/init errors.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <pwd.h>
#include <lcmaps/lcmaps.h>

#define MAXP 16
#define MAXF 64

static char *pols[MAXP]; static int npols = 0;
static char *fqans[MAXF]; static int nfqan = 0;
static int reuse_init = 0;

static long long now_us(void) {
    struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000LL + ts.tv_nsec / 1000;
}

static int init_lcmaps(void) {
    if (lcmaps_init_and_logfile(getenv("LCMAPS_LOG_FILE"), NULL, 1)) {
        printf("FAIL init\n"); fflush(stdout); return -1;
    }
    return 0;
}

static int map_one(char *dn, int mapcounter) {
    uid_t uid = (uid_t)-1; gid_t *pg = NULL, *sg = NULL; int npg = 0, nsg = 0;
    char *pidx = NULL; int rc, i;
    long long t0 = now_us();
    if (!reuse_init && init_lcmaps()) return 2;
    rc = lcmaps_run_with_fqans_mapcounter_and_return_account(dn, nfqan ? fqans : NULL, nfqan,
            mapcounter, NULL, npols, npols ? pols : NULL, &uid, &pg, &npg, &sg, &nsg, &pidx);
    if (rc == 0) {
        struct passwd *pw = getpwuid(uid);
        printf("OK uid=%ld user=%s pgid=", (long)uid, pw ? pw->pw_name : "?");
        for (i = 0; i < npg; i++) printf("%s%ld", i ? "," : "", (long)pg[i]);
        printf(" sgid=");
        for (i = 0; i < nsg; i++) printf("%s%ld", i ? "," : "", (long)sg[i]);
        printf(" poolindex=%s", pidx ? pidx : "");
    }
    /* pidx of the fqan variant points into LCMAPS' own data: never free it. */
    if (!reuse_init) lcmaps_term();
    if (rc == 0) printf(" us=%lld\n", now_us() - t0);
    else printf("FAIL rc=%d us=%lld\n", rc, now_us() - t0);
    fflush(stdout);
    return rc == 0 ? 0 : 1;
}

int main(int argc, char **argv) {
    int i, mapcounter = 0, n = 1, status = 0, stdin_mode;
    char *dn = NULL;
    if (argc < 2) goto usage;
    stdin_mode = strcmp(argv[1], "stdin") == 0;
    if (!stdin_mode) {
        if (strcmp(argv[1], "fqan") != 0 || argc < 3) goto usage;
        dn = argv[2];
    }
    for (i = stdin_mode ? 2 : 3; i < argc; i++) {
        if (!strcmp(argv[i], "-p") && i + 1 < argc && npols < MAXP) pols[npols++] = argv[++i];
        else if (!strcmp(argv[i], "-f") && i + 1 < argc && nfqan < MAXF) fqans[nfqan++] = argv[++i];
        else if (!strcmp(argv[i], "-m") && i + 1 < argc) mapcounter = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-n") && i + 1 < argc) n = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-r")) reuse_init = 1;
        else goto usage;
    }
    if (reuse_init && init_lcmaps()) return 2;
    if (stdin_mode) {
        char *line = NULL; size_t cap = 0; ssize_t len;
        while ((len = getline(&line, &cap, stdin)) > 0) {
            char *tab;
            if (line[len - 1] == '\n') line[--len] = '\0';
            tab = strchr(line, '\t');
            if (!tab) { printf("FAIL badline\n"); fflush(stdout); status = 1; continue; }
            *tab = '\0';
            if (map_one(tab + 1, atoi(line))) status = 1;
        }
        free(line);
    } else {
        for (i = 0; i < n; i++) if (map_one(dn, mapcounter)) status = 1;
    }
    if (reuse_init) lcmaps_term();
    return status;
usage:
    fprintf(stderr, "usage: harness fqan DN [-f FQAN]... [-p policy]... [-m N] [-n N] [-r]\n"
                    "       harness stdin [-p policy]... [-r]\n");
    return 2;
}
