/* glexec shim: build the hand-off blob (docs/internals.md) into a sealed memfd on fd 3.
 * The caller's argv/env travel as opaque data only: nothing here interprets them. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shim.h"

static const char MAGIC[] = "GLEXEC-HANDOFF-1\n";

struct buf {
    unsigned char *p;
    size_t len, cap;
};

static void too_large(void)
{
    die(EXIT_CALLER, "argument list or environment too large", NULL);
}

static void put(struct buf *b, const void *d, size_t n)
{
    if (n > MAX_BLOB || b->len + n > MAX_BLOB)
        too_large();
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 65536;
        while (cap < b->len + n)
            cap *= 2;
        if (cap > MAX_BLOB)
            cap = MAX_BLOB;
        unsigned char *p = realloc(b->p, cap);
        if (!p)
            die(EXIT_SYSTEM, "out of memory", NULL);
        b->p = p;
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->len, d, n);
    b->len += n;
}

/* Explicit little-endian encoding: the format must not depend on the host. */
static void le(unsigned char *out, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        out[i] = (unsigned char)(v >> (8 * i));
}

static void head(struct buf *b, char tag, size_t n)
{
    unsigned char h[5];
    if (n > MAX_BLOB)
        too_large();
    h[0] = (unsigned char)tag;
    le(h + 1, n, 4);
    put(b, h, sizeof h);
}

static void rec(struct buf *b, char tag, const void *d, size_t n)
{
    head(b, tag, n);
    put(b, d, n);
}

static void put64(struct buf *b, int64_t v)
{
    unsigned char x[8];
    le(x, (uint64_t)v, 8);
    put(b, x, sizeof x);
}

/* The field is signed: a finite limit above INT64_MAX (a caller may set one) is recorded
 * as INT64_MAX, never as a negative number the engine would reject as malformed. */
static int64_t lim64(rlim_t v)
{
    return v == RLIM_INFINITY ? -1 : v > INT64_MAX ? INT64_MAX : (int64_t)v;
}

static void caller_ids(struct buf *b, int privileged)
{
    uid_t r, e, s;
    gid_t rg, eg, sg;
    if (getresuid(&r, &e, &s) || getresgid(&rg, &eg, &sg))
        die(EXIT_SYSTEM, "cannot read caller ids", NULL);
    mode_t mask = umask(077); /* reading the umask also sets the engine's */
    int64_t v[12] = { r, e, s, rg, eg, sg, getpid(), getppid(), getsid(0), getpgrp(),
                      mask, privileged };
    head(b, 'I', sizeof v);
    for (int i = 0; i < 12; i++)
        put64(b, v[i]);

    int n = getgroups(0, NULL);
    gid_t *g = n >= 0 ? calloc((size_t)n + 1, sizeof *g) : NULL;
    if (!g || getgroups(n, g) != n)
        die(EXIT_SYSTEM, "cannot read caller groups", NULL);
    head(b, 'G', (size_t)n * 8);
    for (int i = 0; i < n; i++)
        put64(b, g[i]);
    free(g);

    for (int res = 0; res < RLIM_NLIMITS; res++) {
        struct rlimit rl;
        if (getrlimit(res, &rl))
            die(EXIT_SYSTEM, "cannot read caller rlimits", NULL);
        head(b, 'R', 24);
        put64(b, res);
        put64(b, lim64(rl.rlim_cur));
        put64(b, lim64(rl.rlim_max));
    }

    char *cwd = getcwd(NULL, 0); /* a vanished or unreadable cwd is recorded as empty */
    rec(b, 'C', cwd ? cwd : "", cwd ? strlen(cwd) : 0);
    free(cwd);
}

/* Write the blob to a memfd, seal it, and put a read-only description of it on fd 3. */
static void to_fd3(const struct buf *b)
{
    int fd = memfd_create("glexec-handoff", MFD_ALLOW_SEALING);
    if (fd < 0)
        die(EXIT_SYSTEM, "memfd_create failed", NULL);
    /* The caller's RLIMIT_FSIZE applies to the memfd: fail with EFBIG, not SIGXFSZ (the
     * shim resets every signal to default before the exec). */
    signal(SIGXFSZ, SIG_IGN);
    for (size_t off = 0; off < b->len;) {
        ssize_t w = write(fd, b->p + off, b->len - off);
        if (w < 0 && errno == EFBIG)
            die(EXIT_CALLER, "file size limit too small for the hand-off", NULL);
        if (w <= 0)
            die(EXIT_SYSTEM, "cannot write hand-off", NULL);
        off += (size_t)w;
    }
    if (fcntl(fd, F_ADD_SEALS, F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE))
        die(EXIT_SYSTEM, "cannot seal hand-off", NULL);
    /* Reopen read-only so the engine's fd cannot write even where seals would allow it. */
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    int ro = open(path, O_RDONLY);
    if (ro < 0 || lseek(ro, 0, SEEK_SET) != 0)
        die(EXIT_SYSTEM, "cannot reopen hand-off", NULL);
    if (ro != 3 && (dup2(ro, 3) != 3 || close(ro)))
        die(EXIT_SYSTEM, "cannot place hand-off on fd 3", NULL);
    if (fd != 3 && close(fd))
        die(EXIT_SYSTEM, "cannot close memfd", NULL);
}

void handoff_to_fd3(int argc, char **argv, char **envp, int privileged)
{
    struct buf b = { 0 };
    size_t nenv = 0;

    if (argc > MAX_ARGV)
        too_large();
    while (envp && envp[nenv])
        if (++nenv > MAX_ENV)
            too_large();

    put(&b, MAGIC, sizeof MAGIC - 1);
    for (int i = 0; i < argc; i++) /* never past argc: argv[argc] borders envp */
        rec(&b, 'A', argv[i], strlen(argv[i]));
    for (size_t i = 0; i < nenv; i++)
        rec(&b, 'E', envp[i], strlen(envp[i]));
    caller_ids(&b, privileged);
    rec(&b, 'Z', "", 0);
    to_fd3(&b);
    free(b.p);
}
