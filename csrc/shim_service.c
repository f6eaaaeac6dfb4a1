/* glexec shim: service mode (docs/internals.md, "The engine service"). The shim offers the
 * call to the root engine service on the compiled-in socket; if nobody (root) answers in
 * time it falls back to exec'ing the engine. Once it has said "go" it never falls back:
 * the service decides, the shim runs the plan it gets with the shared executor (plan_*.c)
 * and reports back for the end record. No policy here: the plan is applied as decoded. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "native.h"
#include "shim.h"

#ifndef GLEXEC_SOCKET
#error "GLEXEC_SOCKET must be set at compile time"
#endif

#define ANSWER_MS 1000 /* connect, send and each of the service's answers */
static const char HELLO[] = "GLEXEC-SERVICE-1\n";
static int sock = -1;
/* Read through a volatile pointer: the path stays one string in the binary (checked by
 * tests/packaging), not immediate stores the compiler folded the copy into. */
static const char *volatile socket_path = GLEXEC_SOCKET;

static int read_full(void *buf, size_t n)
{
    for (size_t got = 0; got < n;) {
        ssize_t r = read(sock, (char *)buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return 0;
}

/* A lost report only loses the end record's details: the service fails closed on EOF. */
static void report(char tag, const int64_t *v, int n)
{
    unsigned char m[5 + 5 * 8];
    m[0] = (unsigned char)tag;
    for (int i = 0; i < 4; i++)
        m[1 + i] = (unsigned char)((uint32_t)(n * 8) >> (8 * i));
    for (int k = 0; k < n; k++)
        for (int i = 0; i < 8; i++)
            m[5 + 8 * k + i] = (unsigned char)((uint64_t)v[k] >> (8 * i));
    for (size_t off = 0, len = 5 + (size_t)n * 8; off < len;) {
        ssize_t w = send(sock, m + off, len - off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        off += (size_t)w;
    }
}

static void failed(const gx_exec_result *res)
{
    int64_t v[2] = { res->step, res->err };
    report('F', v, 2);
}

/* The service's next byte within ANSWER_MS, or 0. */
static char answered(void)
{
    struct pollfd p = { sock, POLLIN, 0 };
    char answer = 0;
    int r;
    do
        r = poll(&p, 1, ANSWER_MS);
    while (r < 0 && errno == EINTR);
    return r == 1 && read(sock, &answer, 1) == 1 ? answer : 0;
}

/* 1: the service took the call (this process runs its plan); 0: fall back to the engine.
 * Runs with the caller's real ids still in place: the service compares them, and this
 * pid, with what the kernel says (SO_PEERCRED, /proc/<pid>/status under a pidfd). */
int service_offer(void)
{
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    struct timeval tv = { ANSWER_MS / 1000, (ANSWER_MS % 1000) * 1000 };
    struct ucred peer;
    socklen_t plen = sizeof peer;
    size_t len = strlen(socket_path);
    if (len >= sizeof addr.sun_path)
        return 0;
    memcpy(addr.sun_path, socket_path, len + 1);
    int cwd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC); /* relative paths in the env */
    if (cwd < 0)
        return 0;
    sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (sock < 0 || setsockopt(sock, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) ||
        connect(sock, (struct sockaddr *)&addr, sizeof addr) ||
        getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &peer, &plen) || peer.uid != 0)
        goto fallback; /* only a root listener is the service */
    /* The caller's fds travel only to a request child that has taken the connection: fds
     * left in an unaccepted one would hold the caller's pipes open after a fall-back. */
    if (answered() != 'R')
        goto fallback;

    int fds[5] = { 0, 1, 2, 3, cwd }; /* stdio, the hand-off memfd, the cwd */
    union { char buf[CMSG_SPACE(sizeof fds)]; struct cmsghdr align; } ctl;
    struct iovec iov = { (void *)HELLO, sizeof HELLO - 1 };
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
                          .msg_controllen = sizeof ctl.buf };
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof fds);
    memcpy(CMSG_DATA(c), fds, sizeof fds);
    if (sendmsg(sock, &msg, MSG_NOSIGNAL) != (ssize_t)(sizeof HELLO - 1))
        goto fallback;

    /* Until the service has our "G" it does nothing: falling back now never doubles a call. */
    if (answered() != 'A' || send(sock, "G", 1, MSG_NOSIGNAL) != 1)
        goto fallback;
    close(cwd);
    close(3); /* the hand-off is the service's now; the payload must not inherit it */
    return 1;
fallback:
    if (sock >= 0)
        close(sock);
    close(cwd);
    sock = -1;
    return 0;
}

/* Linger: spawn, report the pid, wait (forwarding signals), report status and CPU times.
 * In place: exec; the socket is close-on-exec, so the service sees EOF on success. */
static void run_plan(const gx_plan *plan)
{
    gx_exec_result res;
    gx_linger_result out;
    if (!(plan->flags & GX_PLAN_LINGER)) {
        gx_plan_exec(plan, &res);
        failed(&res); /* possibly partly switched: only reads the verdict and exits */
        return;
    }
    int pid = gx_plan_spawn(plan, &res);
    if (pid < 0) {
        failed(&res);
        return;
    }
    int64_t started[1] = { pid };
    report('S', started, 1);
    if (gx_plan_linger(plan, pid, &out, &res)) {
        failed(&res);
        return;
    }
    int64_t ended[5] = { out.status, out.utime_sec, out.utime_usec, out.stime_sec, out.stime_usec };
    report('W', ended, 5);
}

/* Runs as full root after service_offer: the service's messages until its verdict. */
_Noreturn void service_run(void)
{
    for (;;) {
        unsigned char h[5];
        if (read_full(h, sizeof h))
            die(EXIT_SYSTEM, "the engine service failed during the call", NULL);
        uint32_t len = (uint32_t)h[1] | (uint32_t)h[2] << 8 | (uint32_t)h[3] << 16 | (uint32_t)h[4] << 24;
        if (h[0] == 'X' && len == 4) {
            unsigned char v[4];
            if (read_full(v, 4) || v[1] || v[2] || v[3])
                die(EXIT_SYSTEM, "malformed answer from the engine service", NULL);
            _exit(v[0]);
        }
        if (h[0] != 'P' || len > GX_PLAN_MAX)
            die(EXIT_SYSTEM, "malformed answer from the engine service", NULL);
        unsigned char *buf = malloc(len ? len : 1);
        gx_plan *plan = NULL;
        if (!buf || read_full(buf, len))
            die(EXIT_SYSTEM, "the engine service failed during the call", NULL);
        if (gx_plan_decode(buf, len, &plan))
            die(EXIT_SYSTEM, "malformed plan from the engine service", NULL);
        free(buf);
        run_plan(plan);
        gx_plan_free(plan);
    }
}
