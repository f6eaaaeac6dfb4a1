/* plan_decode.c - the payload plan from its wire form (docs/internals.md, "The payload plan").
 *
 * The header is read once into a local value and the rest is copied before it is checked:
 * a plan sent by the engine service cannot change under the checks. Everything is bounded before anything is allocated;
 * any deviation from the format refuses the whole plan (EINVAL) and nothing is executed.
 * The rules are the format's, not policy: glexec_py/core/plan.py decides what a plan holds
 * and checks the same rules (its `decode` is this file's oracle in the tests and fuzzing).
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include "native.h"

#define RLIM_WIRE 20                   /* u32 resource, u64 soft, u64 hard */
#define MAX_ID 0xFFFFFFFEu             /* (uid_t)-1 means "unchanged": never an id */
#define UNFORWARDABLE ((1ull << (SIGKILL - 1)) | (1ull << (SIGCHLD - 1)) | (1ull << (SIGSTOP - 1)))

static uint32_t u32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t u64(const unsigned char *p) {
    return (uint64_t)u32(p) | (uint64_t)u32(p + 4) << 32;
}

struct reader {
    unsigned char *p;
    size_t left;
};

/* u32 length n (<= max), n bytes without NUL, one NUL: the string in place, or NULL. */
static char *take_string(struct reader *r, uint32_t max) {
    char *s;
    uint32_t n;

    if (r->left < 5)
        return NULL;
    n = u32(r->p);
    if (n > max || r->left - 5 < n)
        return NULL;
    s = (char *)r->p + 4;
    if (s[n] != '\0' || memchr(s, '\0', n) != NULL)
        return NULL;
    r->p += 5 + (size_t)n;
    r->left -= 5 + (size_t)n;
    return s;
}

static int header_ok(const struct gx_plan *h, const unsigned char *buf, size_t len) {
    int linger = (h->flags & GX_PLAN_LINGER) != 0;

    if (memcmp(buf, "GXPL", 4) != 0 || (buf[4] | buf[5] << 8) != 1 || u32(buf + 8) != len)
        return 0;
    if (h->flags & ~(uint32_t)(GX_PLAN_SWITCH | GX_PLAN_NO_NEW_PRIVS | GX_PLAN_TTY_GUARD | GX_PLAN_LINGER))
        return 0;
    if (h->uid > MAX_ID || h->gid > MAX_ID || h->caller_ruid > MAX_ID || h->umask > 0777)
        return 0;
    if (h->pdeathsig > 64 || (h->pdeathsig && !linger))
        return 0;
    if ((h->forward & UNFORWARDABLE) || (h->forward && !linger))
        return 0;
    if (h->ngroups > GX_PLAN_MAX_GROUPS || h->nrlimits > GX_PLAN_NLIMITS)
        return 0;
    if (h->argc < 1 || h->argc > GX_PLAN_MAX_STRINGS || h->envc > GX_PLAN_MAX_STRINGS)
        return 0;
    /* Every group, limit and string takes bytes: counts the plan cannot hold are refused
     * before they size an allocation. */
    len -= GX_PLAN_HEAD;
    return (uint64_t)h->ngroups * 4 + (uint64_t)h->nrlimits * RLIM_WIRE
        + ((uint64_t)h->argc + h->envc + 2) * 5 <= len;
}

/* Groups strictly increasing and valid; limits by increasing resource, soft <= hard. */
static int ids_and_limits(struct gx_plan *p, struct reader *r, uint32_t *groups, struct gx_plan_rlimit *rl) {
    uint32_t i;

    for (i = 0; i < p->ngroups; i++, r->p += 4, r->left -= 4) {
        groups[i] = u32(r->p);
        if (groups[i] > MAX_ID || (i > 0 && groups[i] <= groups[i - 1]))
            return 0;
    }
    for (i = 0; i < p->nrlimits; i++, r->p += RLIM_WIRE, r->left -= RLIM_WIRE) {
        rl[i].resource = u32(r->p);
        rl[i].soft = u64(r->p + 4);
        rl[i].hard = u64(r->p + 12);
        if (rl[i].resource >= GX_PLAN_NLIMITS || rl[i].soft > rl[i].hard)
            return 0;
        if (i > 0 && rl[i].resource <= rl[i - 1].resource)
            return 0;
    }
    p->groups = groups;
    p->rlimits = rl;
    return 1;
}

static int strings(struct gx_plan *p, struct reader *r) {
    uint32_t i;

    p->path = take_string(r, GX_PLAN_MAX_PATH);
    p->cwd = take_string(r, GX_PLAN_MAX_STRING);
    if (!p->path || p->path[0] != '/' || !p->cwd || (p->cwd[0] && p->cwd[0] != '/'))
        return 0;
    for (i = 0; i < p->argc; i++)
        if (!(p->argv[i] = take_string(r, GX_PLAN_MAX_STRING)))
            return 0;
    for (i = 0; i < p->envc; i++)
        if (!(p->envp[i] = take_string(r, GX_PLAN_MAX_STRING)))
            return 0;
    p->argv[p->argc] = p->envp[p->envc] = NULL;
    return r->left == 0;
}

/* 0 and *out = the plan (gx_plan_free), or EINVAL (malformed) / ENOMEM and *out = NULL. */
int gx_plan_decode(const unsigned char *buf, size_t len, gx_plan **out) {
    struct gx_plan h, *p;
    struct gx_plan_rlimit *rl;
    struct reader r;
    uint32_t *groups;
    size_t size;

    *out = NULL;
    if (buf == NULL || len < GX_PLAN_HEAD || len > GX_PLAN_MAX)
        return EINVAL;
    memset(&h, 0, sizeof h);
    h.flags = (uint32_t)(buf[6] | buf[7] << 8);
    h.uid = u32(buf + 12), h.gid = u32(buf + 16), h.umask = u32(buf + 20);
    h.pdeathsig = u32(buf + 24), h.caller_ruid = u32(buf + 28), h.forward = u64(buf + 32);
    h.ngroups = u32(buf + 40), h.nrlimits = u32(buf + 44), h.argc = u32(buf + 48), h.envc = u32(buf + 52);
    if (!header_ok(&h, buf, len))
        return EINVAL;
    /* One block: the plan, argv[argc+1], envp[envc+1], the limits, the groups, the bytes. */
    size = sizeof h + ((size_t)h.argc + h.envc + 2) * sizeof(char *)
        + h.nrlimits * sizeof *rl + h.ngroups * sizeof *groups + len;
    if (!(p = malloc(size)))
        return ENOMEM;
    *p = h;
    p->argv = (char **)(p + 1);
    p->envp = p->argv + h.argc + 1;
    rl = (struct gx_plan_rlimit *)(p->envp + h.envc + 1);
    groups = (uint32_t *)(rl + h.nrlimits);
    r.p = (unsigned char *)(groups + h.ngroups);
    memcpy(r.p, buf, len);
    r.p += GX_PLAN_HEAD;
    r.left = len - GX_PLAN_HEAD;
    if (!ids_and_limits(p, &r, groups, rl) || !strings(p, &r)) {
        free(p);
        return EINVAL;
    }
    *out = p;
    return 0;
}

void gx_plan_free(gx_plan *plan) {
    free(plan);
}
