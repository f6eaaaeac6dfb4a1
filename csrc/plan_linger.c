/* plan_linger.c - the lingering parent: wait for the payload, forward signals, report.
 *
 * gx_plan_spawn blocked the plan's forwarded signals and SIGCHLD before the clone, so none
 * sent since is lost: they are taken here with sigwaitinfo. A forwarded signal goes to the
 * payload unless the kernel sent it (a terminal's SIGINT/SIGQUIT/SIGHUP already reached the
 * payload's process group). The parent first takes the plan's caller_ruid as its real uid,
 * so the caller (the batch system) may signal it to reach its payload; it stays euid 0.
 * It returns the payload's wait status and CPU times for the end record.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include "native.h"

void gx_plan_linger_set(const gx_plan *plan, sigset_t *set) {
    int sig;
    sigemptyset(set);
    sigaddset(set, SIGCHLD);
    for (sig = 1; sig <= 64; sig++)
        if (plan->forward >> (sig - 1) & 1)
            sigaddset(set, sig);
}

static int fail(gx_exec_result *res, int err) {
    res->step = GX_SP_LINGER;
    res->err = err;
    return -1;
}

/* Runs as root (the caller in log-only mode) with the signals of gx_plan_linger_set blocked.
 * 0 with *out set once the payload `pid` has ended; -1 with res set if waiting failed. */
int gx_plan_linger(const gx_plan *plan, int pid, gx_linger_result *out, gx_exec_result *res) {
    sigset_t set;
    siginfo_t si;
    struct rusage ru;
    uid_t r, e, s;
    int sig, status;
    pid_t done;

    res->step = GX_SP_OK;
    res->err = 0;
    if (!(plan->flags & GX_PLAN_LINGER) || pid <= 0)
        return fail(res, EINVAL);
    if (setresuid(plan->caller_ruid, (uid_t)-1, (uid_t)-1) != 0)
        return fail(res, errno);
    if (getresuid(&r, &e, &s) != 0 || r != plan->caller_ruid)
        return fail(res, EPERM);
    gx_plan_linger_set(plan, &set);
    for (;;) {
        sig = sigwaitinfo(&set, &si);
        if (sig < 0) {
            if (errno == EINTR)
                continue;
            return fail(res, errno);
        }
        if (sig == SIGCHLD) {
            done = wait4(pid, &status, WNOHANG, &ru);
            if (done == pid)
                break;
            if (done < 0 && errno != EINTR)
                return fail(res, errno);
        } else if (si.si_code != SI_KERNEL) {
            (void)kill(pid, sig);
        }
    }
    out->status = status;
    out->utime_sec = ru.ru_utime.tv_sec;
    out->utime_usec = ru.ru_utime.tv_usec;
    out->stime_sec = ru.ru_stime.tv_sec;
    out->stime_usec = ru.ru_stime.tv_usec;
    return 0;
}
