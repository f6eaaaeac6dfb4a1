/* spawn.c - become the payload: in place, or in a child started like posix_spawn.
 *
 * Forking the Python engine costs ~4 ms of copy-on-write faults before the child can exec;
 * clone(CLONE_VM|CLONE_VFORK) on a private stack costs ~0.2 ms. The child touches only its
 * own stack and the plan, calls async-signal-safe functions, and reports a failure through
 * the shared memory before _exit: the parent is suspended until the child execs or exits.
 *
 * Order in the child: default dispositions for every signal, empty signal mask, the
 * caller's rlimits and umask, the TIOCSTI guard (seccomp, needs root: guards.c), identity
 * switch (verified by gx_switch_identity, which also clears the caller's inheritable and
 * ambient capabilities), the parent-death signal (spawn only: after the switch, because
 * the kernel clears it on every credential change), optional no_new_privs, chdir to the
 * caller's cwd AS THE TARGET, execve. No setsid/setpgid: the payload stays in the caller's
 * session and process group for the batch system.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "native.h"

#define STACK_SIZE (256 * 1024)

static int set_default_signals(void) {
    struct sigaction dfl;
    int sig;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (sig = 1; sig < NSIG; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP)
            continue;
        /* Signals reserved by glibc (32, 33) refuse; that is fine. */
        (void)sigaction(sig, &dfl, NULL);
    }
    return 0;
}

static int restore_rlimits(const int64_t *rl, size_t n) {
    size_t i;
    for (i = 0; i + 2 < n * 3; i += 3) {
        struct rlimit r;
        r.rlim_cur = rl[i + 1] < 0 ? RLIM_INFINITY : (rlim_t)rl[i + 1];
        r.rlim_max = rl[i + 2] < 0 ? RLIM_INFINITY : (rlim_t)rl[i + 2];
        if (setrlimit((int)rl[i], &r) == 0)
            continue;
        /* Without CAP_SYS_RESOURCE a hard limit the shim lowered (core) cannot be raised
         * back: keep the lower one. The payload must never get MORE than the caller had. */
        struct rlimit cur;
        if (errno != EPERM || getrlimit((int)rl[i], &cur) != 0 || cur.rlim_max > r.rlim_max)
            return -1;
        r.rlim_max = cur.rlim_max;
        if (r.rlim_cur > r.rlim_max)
            r.rlim_cur = r.rlim_max;
        if (setrlimit((int)rl[i], &r) != 0)
            return -1;
    }
    return 0;
}

/* Runs as root (or the caller in log-only mode); returns only on failure, with plan->step
 * and plan->err set. parent: the lingering parent's pid (spawn), 0 when in place. */
static int become(gx_plan *plan, pid_t parent) {
    sigset_t none;
    if (set_default_signals() != 0)
        return plan->step = GX_SP_SIGNALS, plan->err = errno, -1;
    sigemptyset(&none);
    if (sigprocmask(SIG_SETMASK, &none, NULL) != 0)
        return plan->step = GX_SP_SIGNALS, plan->err = errno, -1;
    if (restore_rlimits(plan->rlimits, plan->nrlimits) != 0)
        return plan->step = GX_SP_RLIMITS, plan->err = errno, -1;
    umask((mode_t)plan->umask);
    if (plan->tty_guard) {
        int e = 0;
        if (gx_tty_guard(&e) != GX_OK)
            return plan->step = GX_SP_TTY_GUARD, plan->err = e, -1;
    }
    if (plan->switch_identity) {
        int e = 0, step = gx_switch_identity(plan->uid, plan->gid, plan->groups, plan->ngroups, &e);
        if (step != GX_OK)
            return plan->step = GX_SP_IDENTITY + step, plan->err = e, -1;
    }
    if (parent && plan->pdeathsig) {
        if (prctl(PR_SET_PDEATHSIG, plan->pdeathsig, 0, 0, 0) != 0)
            return plan->step = GX_SP_PDEATHSIG, plan->err = errno, -1;
        /* The parent may have died before the prctl: then nobody would signal us. */
        if (getppid() != parent)
            return plan->step = GX_SP_PDEATHSIG, plan->err = ESRCH, -1;
    }
    if (plan->no_new_privs) {
        int e = 0;
        if (gx_set_no_new_privs(&e) != GX_OK)
            return plan->step = GX_SP_NO_NEW_PRIVS, plan->err = e, -1;
    }
    if (plan->cwd && plan->cwd[0] && chdir(plan->cwd) != 0)
        return plan->step = GX_SP_CHDIR, plan->err = errno, -1;
    execve(plan->path, plan->argv, plan->envp);
    return plan->step = GX_SP_EXEC, plan->err = errno, -1;
}

int gx_become_payload(gx_plan *plan) {
    return become(plan, 0);
}

struct child_arg {
    gx_plan *plan;
    pid_t parent;
};

static int child_main(void *arg) {
    struct child_arg *a = arg;
    become(a->plan, a->parent);
    _exit(127);
}

/* Runs as root. Returns the child's pid once it has exec'd, or -1 with plan->step/err
 * set (the failed child is reaped here). The caller's signal mask is kept. */
int gx_spawn_payload(gx_plan *plan) {
    sigset_t all, old;
    char *stack;
    int pid, status;
    struct child_arg arg = { plan, getpid() };   /* on our stack: CLONE_VFORK keeps it alive */

    plan->step = GX_SP_OK;
    plan->err = 0;
    stack = mmap(NULL, STACK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack == MAP_FAILED)
        return plan->step = GX_SP_CLONE, plan->err = errno, -1;
    /* No handler of the engine may run in the child before it resets the dispositions. */
    sigfillset(&all);
    sigprocmask(SIG_SETMASK, &all, &old);
    pid = clone(child_main, stack + STACK_SIZE, CLONE_VM | CLONE_VFORK | SIGCHLD, &arg);
    if (pid < 0) {
        plan->step = GX_SP_CLONE;
        plan->err = errno;
    }
    sigprocmask(SIG_SETMASK, &old, NULL);
    munmap(stack, STACK_SIZE);
    if (pid > 0 && plan->step != GX_SP_OK) {
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
        return -1;
    }
    return pid;
}
