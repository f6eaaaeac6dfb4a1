/* Test harness, never installed: csrc/shim_blob.c's handoff_to_fd3() on argv/env read
 * from stdin, the resulting fd 3 copied to stdout (tests/support/shim_harness.py).
 * stdin:  u8 privileged | u32 argc | u32 envc | (u32 len, bytes) * (argc + envc)
 *         | u32 nrl | (u32 resource, u64 soft, u64 hard) * nrl     (all little-endian)
 * stdout: u32 seals of fd 3 | u32 access mode of fd 3 | the blob
 * Exit 0, the shim's own die() code, or 90-99 for a harness (setup) failure. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "shim.h"

_Noreturn void die(int code, const char *what, const char *detail)
{
    dprintf(2, "glexec: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    _exit(code);
}

static unsigned char *in;
static size_t in_len, pos;

static uint64_t get(int bytes)
{
    uint64_t v = 0;
    if (in_len - pos < (size_t)bytes)
        _exit(91);
    for (int i = 0; i < bytes; i++)
        v |= (uint64_t)in[pos++] << (8 * i);
    return v;
}

static char **strings(size_t n)
{
    char **v = calloc(n + 1, sizeof *v);
    for (size_t i = 0; v && i < n; i++) {
        size_t len = get(4);
        if (in_len - pos < len || !(v[i] = malloc(len + 1)))
            _exit(92);
        memcpy(v[i], in + pos, len);
        v[i][len] = '\0';
        if (strlen(v[i]) != len) /* C strings cannot carry NUL: refuse the test input */
            _exit(93);
        pos += len;
    }
    if (!v)
        _exit(92);
    return v;
}

static void copy_out(int fd)
{
    static char chunk[1 << 16];
    uint32_t head[2] = { (uint32_t)fcntl(fd, F_GET_SEALS), (uint32_t)(fcntl(fd, F_GETFL) & O_ACCMODE) };
    if (write(1, head, sizeof head) != sizeof head || lseek(fd, 0, SEEK_SET) != 0)
        _exit(95);
    for (ssize_t r; (r = read(fd, chunk, sizeof chunk)) != 0;)
        for (ssize_t off = 0, w; off < r; off += w)
            if (r < 0 || (w = write(1, chunk + off, (size_t)(r - off))) <= 0)
                _exit(96);
}

int main(void)
{
    size_t cap = 0;
    for (ssize_t r = 1; r; in_len += (size_t)r) {
        if (in_len == cap && !(in = realloc(in, cap = cap ? 2 * cap : 1 << 16)))
            _exit(90);
        if ((r = read(0, in + in_len, cap - in_len)) < 0)
            _exit(90);
    }
    int privileged = (int)get(1);
    size_t argc = get(4), envc = get(4);
    char **argv = strings(argc), **envp = strings(envc);
    for (uint64_t nrl = get(4); nrl; nrl--) {
        int res = (int)get(4);
        struct rlimit rl;
        rl.rlim_cur = get(8); /* two statements: initializer order is unspecified */
        rl.rlim_max = get(8);
        if (setrlimit(res, &rl))
            _exit(97);
    }
    if (pos != in_len)
        _exit(94);
    handoff_to_fd3((int)argc, argv, envp, privileged);
    copy_out(3);
    return 0;
}
