/* identity.c - uid/gid switch, fs ids and no_new_privs as checked sequences.
 *
 * Each function returns the failing step (enum gx_step, 0 = success) and the errno in *err,
 * so the caller knows exactly where it stopped.  The switch is verified afterwards instead
 * of trusting return codes alone ("Setuid Demystified"): ids, groups, no way back to root,
 * and no capability left in any set.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/capability.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "native.h"

#define FAIL(step, e) do { *err = (e); return (step); } while (0)
#define BAD_ID(x) ((x) == (uint32_t)-1)   /* -1 means "unchanged" to the set*id calls */
_Static_assert(sizeof(gid_t) == sizeof(uint32_t), "groups are passed as uint32_t[]");

static int bad_ids(uint32_t uid, uint32_t gid, const uint32_t *groups, size_t n) {
    size_t i;
    for (i = 0; i < n; i++)
        if (BAD_ID(groups[i]))
            return 1;
    return BAD_ID(uid) || BAD_ID(gid);
}

static int cmp_gid(const void *a, const void *b) {
    gid_t x = *(const gid_t *)a, y = *(const gid_t *)b;
    return (x > y) - (x < y);
}

/* Sort and drop duplicates in place; returns the new length. */
static size_t sort_uniq(gid_t *v, size_t n) {
    size_t i, k = 0;
    qsort(v, n, sizeof *v, cmp_gid);
    for (i = 0; i < n; i++)
        if (k == 0 || v[k - 1] != v[i])
            v[k++] = v[i];
    return k;
}

/* The kernel's supplementary list must equal the requested one as a set. */
static int groups_match(const uint32_t *groups, size_t n, int *err) {
    gid_t *want = NULL, *have = NULL;
    int got, ok = 0;
    size_t nw;

    want = malloc((n + 1) * sizeof *want);
    have = malloc((n + 1) * sizeof *have);
    if (!want || !have) {
        free(want), free(have);
        FAIL(GX_GETGROUPS, ENOMEM);
    }
    if (n)
        memcpy(want, groups, n * sizeof *want);
    nw = sort_uniq(want, n);
    got = getgroups((int)(n + 1), have);    /* room for one extra: detects a longer list */
    if (got >= 0 && (size_t)got <= n)
        ok = sort_uniq(have, (size_t)got) == nw && memcmp(want, have, nw * sizeof *want) == 0;
    *err = got < 0 ? errno : EPERM;
    free(want), free(have);
    return ok ? GX_OK : GX_GETGROUPS;
}

static int read_cap_last_cap(int *last) {
    char buf[16] = {0};
    char *end;
    long v;
    ssize_t r;
    int fd = open("/proc/sys/kernel/cap_last_cap", O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return -1;
    r = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (r <= 0)
        return -1;
    errno = 0;
    v = strtol(buf, &end, 10);
    if (errno || end == buf || (*end != '\n' && *end != '\0') || v < 0 || v > 63)
        return -1;
    *last = (int)v;
    return 0;
}

/* All of permitted/effective/inheritable (capget v3) and ambient must be empty. */
static int caps_empty(int last, int *err) {
    struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct d[2];
    int cap, r;

    memset(d, 0xff, sizeof d);              /* a no-op syscall must not look like success */
    if (syscall(SYS_capget, &hdr, d) != 0)
        FAIL(GX_CAPGET, errno);
    if (d[0].permitted | d[0].effective | d[0].inheritable
        | d[1].permitted | d[1].effective | d[1].inheritable)
        FAIL(GX_CAPGET, EPERM);
    for (cap = 0; cap <= last; cap++) {
        r = prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, cap, 0, 0);
        if (r != 0)
            FAIL(GX_AMBIENT, r < 0 ? errno : EPERM);
    }
    return GX_OK;
}

int gx_switch_identity(uint32_t uid, uint32_t gid, const uint32_t *groups, size_t n, int *err) {
    uid_t r, e, s;
    gid_t rg, eg, sg;
    int last, step;

    *err = 0;
    if (bad_ids(uid, gid, groups, n))
        FAIL(GX_ARGS, EINVAL);
    /* Read before anything changes, so a missing /proc aborts with the ids untouched. */
    errno = 0;
    if (read_cap_last_cap(&last) != 0)
        FAIL(GX_CAP_LAST_CAP, errno ? errno : EINVAL);
    /* Groups first: afterwards we no longer have CAP_SETGID to change them. */
    if (setgroups(n, (const gid_t *)groups) != 0)
        FAIL(GX_SETGROUPS, errno);
    if (setresgid(gid, gid, gid) != 0)
        FAIL(GX_SETRESGID, errno);
    if (setresuid(uid, uid, uid) != 0)
        FAIL(GX_SETRESUID, errno);
    /* The caller's inheritable/ambient sets survive setresuid; none may reach the target.
     * Not for uid 0: an exec as root regains every capability, so the check below must
     * still find them and refuse. */
    if (uid != 0 && (step = gx_clear_inherited_caps(err)) != GX_OK)
        return step;

    if (getresuid(&r, &e, &s) != 0)
        FAIL(GX_GETRESUID, errno);
    if (r != uid || e != uid || s != uid)
        FAIL(GX_GETRESUID, EPERM);
    if (getresgid(&rg, &eg, &sg) != 0)
        FAIL(GX_GETRESGID, errno);
    if (rg != gid || eg != gid || sg != gid)
        FAIL(GX_GETRESGID, EPERM);
    if ((step = groups_match(groups, n, err)) != GX_OK)
        return step;
    if (uid != 0) {
        /* Regaining root must be impossible; anything but EPERM is a failure too. */
        errno = 0;
        if (setuid(0) == 0 || errno != EPERM)
            FAIL(GX_SETUID0, errno ? errno : EPERM);
        errno = 0;
        if (setgid(0) == 0 || errno != EPERM)
            FAIL(GX_SETGID0, errno ? errno : EPERM);
    }
    return caps_empty(last, err);
}

/* File-system ids only: euid stays 0, file access is checked as uid/gid/groups.  On failure
 * the ids may be partly changed: the caller restores (uid 0, gid 0, no groups) or exits. */
int gx_set_fs_identity(uint32_t uid, uint32_t gid, const uint32_t *groups, size_t n, int *err) {
    *err = 0;
    if (bad_ids(uid, gid, groups, n))
        FAIL(GX_ARGS, EINVAL);
    if (setgroups(n, (const gid_t *)groups) != 0)
        FAIL(GX_SETGROUPS, errno);
    /* setfs*id report no errors; the only check is reading the value back (-1 = query). */
    setfsgid(gid);
    if ((uint32_t)setfsgid((gid_t)-1) != gid)
        FAIL(GX_SETFSGID, EPERM);
    setfsuid(uid);
    if ((uint32_t)setfsuid((uid_t)-1) != uid)
        FAIL(GX_SETFSUID, EPERM);
    return groups_match(groups, n, err);
}

int gx_set_no_new_privs(int *err) {
    *err = 0;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        FAIL(GX_NO_NEW_PRIVS, errno);
    if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1)
        FAIL(GX_NO_NEW_PRIVS, EPERM);
    return GX_OK;
}
