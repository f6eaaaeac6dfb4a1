/* Test harness, never installed: csrc/plan_decode.c's gx_plan_decode() on the bytes of
 * stdin (read into an allocation of exactly their size, so ASan sees any read past them).
 * Exit 0 and the decoded plan on stdout, one field a line (strings in hex):
 *   flags|uid|gid|umask|pdeathsig|caller_ruid|forward N, groups N..., rlimit RES SOFT HARD,
 *   path|cwd|argv|env HEX
 * exit 3: refused (EINVAL), 4: ENOMEM, 90-99: a harness (setup) failure. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "native.h"

static void hex(const char *key, const char *s) {
    printf("%s ", key);
    for (; *s; s++)
        printf("%02x", (unsigned char)*s);
    printf("\n");
}

int main(void) {
    size_t cap = 1 << 16, len = 0;
    unsigned char *in = malloc(cap), *exact;
    gx_plan *p;
    uint32_t i;
    int rc;

    for (ssize_t r = 1; r; len += (size_t)r) {
        if (!in || (len == cap && !(in = realloc(in, cap *= 2))))
            return 90;
        if ((r = read(0, in + len, cap - len)) < 0)
            return 90;
    }
    if (!(exact = malloc(len ? len : 1)))
        return 90;
    memcpy(exact, in, len);
    free(in);
    rc = gx_plan_decode(len ? exact : NULL, len, &p);
    free(exact);                     /* the plan must not point into the caller's bytes */
    if (rc)
        return rc == EINVAL ? 3 : rc == ENOMEM ? 4 : 91;
    printf("flags %" PRIu32 "\nuid %" PRIu32 "\ngid %" PRIu32 "\numask %" PRIu32 "\n", p->flags, p->uid,
           p->gid, p->umask);
    printf("pdeathsig %" PRIu32 "\ncaller_ruid %" PRIu32 "\nforward %" PRIu64 "\ngroups", p->pdeathsig,
           p->caller_ruid, p->forward);
    for (i = 0; i < p->ngroups; i++)
        printf(" %" PRIu32, p->groups[i]);
    printf("\n");
    for (i = 0; i < p->nrlimits; i++)
        printf("rlimit %" PRIu32 " %" PRIu64 " %" PRIu64 "\n", p->rlimits[i].resource, p->rlimits[i].soft,
               p->rlimits[i].hard);
    hex("path", p->path);
    hex("cwd", p->cwd);
    for (i = 0; i < p->argc; i++)
        hex("argv", p->argv[i]);
    if (p->argv[p->argc] != NULL)
        return 92;
    for (i = 0; i < p->envc; i++)
        hex("env", p->envp[i]);
    if (p->envp[p->envc] != NULL)
        return 92;
    gx_plan_free(p);
    return fflush(stdout) ? 93 : 0;
}
