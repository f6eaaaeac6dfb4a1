/* plan_run.c - become the payload a decoded plan describes: in place, or in a child started
 * like posix_spawn.
 *
 * Forking the Python engine costs ~4 ms of copy-on-write faults before the child can exec;
 * clone(CLONE_VM|CLONE_VFORK) on a private stack costs ~0.2 ms. The child touches only its
 * own stack and the (read-only) plan, calls async-signal-safe functions, and reports a
 * failure through the shared memory before _exit: the parent is suspended until the child
 * execs or exits.
 *
 * Order in the child: default dispositions for every signal, empty signal mask, the plan's
 * rlimits and umask, the TIOCSTI guard (seccomp, needs root: guards.c), identity switch
 * (verified by gx_switch_identity, which also clears the caller's inheritable and ambient
 * capabilities), the parent-death signal (spawn only: after the switch, because the kernel
 * clears it on every credential change), optional no_new_privs, chdir to the plan's cwd AS
 * THE TARGET, execve. No setsid/setpgid: the payload stays in the caller's session and
 * process group for the batch system.
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
#define FAIL(s, e) (res->step = (s), res->err = (e), -1)

static void set_default_signals(void) {
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
}

/* UINT64_MAX on the wire is RLIM_INFINITY (~0 as rlim_t). */
static int restore_rlimits(const struct gx_plan_rlimit *rl, uint32_t n) {
    uint32_t i;
    for (i = 0; i < n; i++) {
        struct rlimit r, cur;
        r.rlim_cur = rl[i].soft == UINT64_MAX ? RLIM_INFINITY : (rlim_t)rl[i].soft;
        r.rlim_max = rl[i].hard == UINT64_MAX ? RLIM_INFINITY : (rlim_t)rl[i].hard;
        if (setrlimit((int)rl[i].resource, &r) == 0)
            continue;
        /* Without CAP_SYS_RESOURCE a hard limit the shim lowered (core) cannot be raised
         * back: keep the lower one. The payload must never get MORE than the plan says. */
        if (errno != EPERM || getrlimit((int)rl[i].resource, &cur) != 0 || cur.rlim_max > r.rlim_max)
            return -1;
        r.rlim_max = cur.rlim_max;
        if (r.rlim_cur > r.rlim_max)
            r.rlim_cur = r.rlim_max;
        if (setrlimit((int)rl[i].resource, &r) != 0)
            return -1;
    }
    return 0;
}

/* Runs as root (or the caller in log-only mode); returns only on failure, with res set.
 * parent: the lingering parent's pid (spawn), 0 when in place. */
static int become(const gx_plan *plan, pid_t parent, gx_exec_result *res) {
    sigset_t none;
    int e = 0, step;

    set_default_signals();
    sigemptyset(&none);
    if (sigprocmask(SIG_SETMASK, &none, NULL) != 0)
        return FAIL(GX_SP_SIGNALS, errno);
    if (restore_rlimits(plan->rlimits, plan->nrlimits) != 0)
        return FAIL(GX_SP_RLIMITS, errno);
    umask((mode_t)plan->umask);
    if ((plan->flags & GX_PLAN_TTY_GUARD) && gx_tty_guard(&e) != GX_OK)
        return FAIL(GX_SP_TTY_GUARD, e);
    if (plan->flags & GX_PLAN_SWITCH) {
        step = gx_switch_identity(plan->uid, plan->gid, plan->groups, plan->ngroups, &e);
        if (step != GX_OK)
            return FAIL(GX_SP_IDENTITY + step, e);
    }
    if (parent && plan->pdeathsig) {
        if (prctl(PR_SET_PDEATHSIG, plan->pdeathsig, 0, 0, 0) != 0)
            return FAIL(GX_SP_PDEATHSIG, errno);
        /* The parent may have died before the prctl: then nobody would signal us. */
        if (getppid() != parent)
            return FAIL(GX_SP_PDEATHSIG, ESRCH);
    }
    if ((plan->flags & GX_PLAN_NO_NEW_PRIVS) && gx_set_no_new_privs(&e) != GX_OK)
        return FAIL(GX_SP_NO_NEW_PRIVS, e);
    if (plan->cwd[0] && chdir(plan->cwd) != 0)
        return FAIL(GX_SP_CHDIR, errno);
    execve(plan->path, plan->argv, plan->envp);
    return FAIL(GX_SP_EXEC, errno);
}

/* Returns only on failure (the process may be partly switched and must exit). */
int gx_plan_exec(const gx_plan *plan, gx_exec_result *res) {
    return become(plan, 0, res);
}

struct child_arg {
    const gx_plan *plan;
    pid_t parent;
    gx_exec_result *res;
};

static int child_main(void *arg) {
    struct child_arg *a = arg;
    become(a->plan, a->parent, a->res);
    _exit(127);
}

/* Runs as root. Returns the child's pid once it has exec'd, or -1 with res set (the failed
 * child is reaped here). A lingering plan's signals are blocked from before the clone on
 * (none may be lost before gx_plan_linger waits for them); the mask is otherwise kept. */
int gx_plan_spawn(const gx_plan *plan, gx_exec_result *res) {
    sigset_t all, old, linger;
    char *stack;
    int pid, status;
    struct child_arg arg = { plan, getpid(), res };   /* on our stack: CLONE_VFORK keeps it alive */

    res->step = GX_SP_OK;
    res->err = 0;
    if (plan->flags & GX_PLAN_LINGER) {
        gx_plan_linger_set(plan, &linger);
        if (sigprocmask(SIG_BLOCK, &linger, NULL) != 0)
            return FAIL(GX_SP_SIGNALS, errno);
    }
    stack = mmap(NULL, STACK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack == MAP_FAILED)
        return FAIL(GX_SP_CLONE, errno);
    /* No handler of the engine may run in the child before it resets the dispositions. */
    sigfillset(&all);
    sigprocmask(SIG_SETMASK, &all, &old);
    pid = clone(child_main, stack + STACK_SIZE, CLONE_VM | CLONE_VFORK | SIGCHLD, &arg);
    if (pid < 0) {
        res->step = GX_SP_CLONE;
        res->err = errno;
    }
    sigprocmask(SIG_SETMASK, &old, NULL);
    munmap(stack, STACK_SIZE);
    if (pid > 0 && res->step != GX_SP_OK) {
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
        return -1;
    }
    return pid;
}
