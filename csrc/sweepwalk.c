/* sweepwalk.c - glexec-sweep's per-directory scan and checked removal.
 *
 * No decisions are made here.  gx_sweep_scan reports the lstat fields of the entries of one
 * directory (getdents64 + fstatat(AT_SYMLINK_NOFOLLOW), relative to the directory fd, never
 * a path); the planner (glexec_py/core/sweep.py, Python) decides what goes and why.
 * gx_sweep_unlink then removes the entries the planner chose, each one only after a fresh
 * fstatat shows it is still the very object that was decided on (gx_sweep_recheck: same
 * owner, device, type and inode, no sticky bit), immediately followed by unlinkat.  It
 * runs with whatever fs identity the caller set (the owning account: the kernel enforces
 * ownership).  Directories are never removed here.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "native.h"

/* What getdents64 writes (the libc struct dirent has another layout). */
struct gx_dirent64 {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

#define DENTS_MAX 32768          /* one getdents64 call */
#define MIN_RECLEN 24            /* 19 header bytes + 1 name byte + NUL, 8-aligned */
#define MAX_RECLEN 280           /* 19 + 255 + NUL, 8-aligned */

_Static_assert(sizeof(gx_sweep_ent) == 72, "gx_sweep_ent layout is unpacked in Python");

static double ts(const struct timespec *t) {
    /* the same float as Python's os.stat_result.st_?time */
    return (double)t->tv_sec + (double)t->tv_nsec * 1e-9;
}

static void fill(gx_sweep_ent *e, const struct stat *st) {
    e->ino = st->st_ino;
    e->dev = st->st_dev;
    e->size = st->st_size;
    e->atime = ts(&st->st_atim);
    e->mtime = ts(&st->st_mtim);
    e->ctime = ts(&st->st_ctim);
    e->mode = st->st_mode;
    e->uid = st->st_uid;
    e->gid = st->st_gid;
}

static int is_dot(const char *n) {
    return n[0] == '.' && (n[1] == 0 || (n[1] == '.' && n[2] == 0));
}

int gx_sweep_scan(int dirfd, gx_sweep_ent *ents, int maxents, char *names, size_t names_len,
                  size_t *names_used, int *err)
{
    char buf[DENTS_MAX] __attribute__((aligned(8)));
    size_t cap = sizeof buf, used = 0;
    int n = 0;

    *names_used = 0;
    *err = 0;
    if (dirfd < 0 || !ents || !names || maxents < 64 || names_len < 4096) {
        *err = EINVAL;
        return -1;
    }
    /* Never read more than fits: a record needs >= MIN_RECLEN bytes of the buffer and its
     * name (with NUL) fewer bytes than its record. */
    if (cap > (size_t)maxents * MIN_RECLEN)
        cap = (size_t)maxents * MIN_RECLEN;
    if (cap > names_len)
        cap = names_len;
    cap &= ~(size_t)7;
    if (cap < MAX_RECLEN) {
        *err = EINVAL;
        return -1;
    }
    while (n == 0) {           /* a chunk of only "." and ".." is not the end */
        long got = syscall(SYS_getdents64, dirfd, buf, cap);
        long pos = 0;
        if (got < 0) {
            *err = errno;
            return -1;
        }
        if (got == 0)
            break;
        while (pos < got) {
            struct gx_dirent64 *d = (struct gx_dirent64 *)(buf + pos);
            struct stat st;
            size_t len;
            pos += d->d_reclen;
            if (is_dot(d->d_name))
                continue;
            if (fstatat(dirfd, d->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
                continue;      /* vanished since getdents */
            len = strnlen(d->d_name, 255);
            if (n >= maxents || used + len + 1 > names_len) {
                *err = EOVERFLOW;   /* cannot happen with the caps above */
                return -1;
            }
            fill(&ents[n], &st);
            ents[n].name_off = (uint32_t)used;
            ents[n].name_len = (uint32_t)len;
            ents[n].pad = 0;
            memcpy(names + used, d->d_name, len);
            names[used + len] = 0;
            used += len + 1;
            n++;
        }
    }
    *names_used = used;
    return n;
}

int gx_sweep_recheck(const gx_sweep_ent *before, const gx_sweep_ent *now, uint64_t root_dev)
{
    if (now->uid != before->uid)
        return GX_SW_OWNER_CHANGED;
    if (now->dev != root_dev)
        return GX_SW_DEVICE_CHANGED;
    if ((now->mode & S_IFMT) != (before->mode & S_IFMT) || now->ino != before->ino)
        return GX_SW_REPLACED;
    if ((now->mode & S_ISVTX) && !S_ISDIR(now->mode))
        return GX_SW_STICKY;
    return GX_SW_OK;
}

int gx_sweep_unlink(int dirfd, const gx_sweep_ent *ents, int nents, const char *names,
                    size_t names_len, const int32_t *idx, int n, uint64_t root_dev,
                    int32_t *res, int64_t *bytes)
{
    int i, removed = 0;
    int64_t total = 0;

    *bytes = 0;
    if (dirfd < 0 || n < 0 || nents < 0)
        return -1;
    for (i = 0; i < n; i++) {
        const gx_sweep_ent *e;
        const char *name;
        gx_sweep_ent now;
        struct stat st;
        int why;

        if (idx[i] < 0 || idx[i] >= nents) {
            res[i] = -EINVAL;
            continue;
        }
        e = &ents[idx[i]];
        if (e->name_len == 0 || e->name_len > 255 || (size_t)e->name_off + e->name_len >= names_len
            || names[e->name_off + e->name_len] != 0) {
            res[i] = -EINVAL;
            continue;
        }
        name = names + e->name_off;
        if (S_ISDIR(e->mode)) {
            res[i] = -EISDIR;  /* directories are removed (rmdir) by the caller only */
            continue;
        }
        if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            res[i] = -errno;
            continue;
        }
        fill(&now, &st);
        why = gx_sweep_recheck(e, &now, root_dev);
        if (why != GX_SW_OK) {
            res[i] = why;
            continue;
        }
        if (unlinkat(dirfd, name, 0) != 0) {
            res[i] = -errno;
            continue;
        }
        res[i] = 0;
        removed++;
        total += st.st_size;
    }
    *bytes = total;
    return removed;
}
