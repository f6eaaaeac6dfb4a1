/* glexec shim: the setuid-root entry point. No parsing, no policy: refuse unsafe
 * situations, hand the caller's facts to the engine as data on fd 3, become full root,
 * and either run the plan the engine service sends (shim_service.c) or exec the fixed
 * interpreter with a constant environment (docs/internals.md). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shim.h"

#if !defined(GLEXEC_INTERP) || !defined(GLEXEC_ENGINE) || !defined(GLEXEC_CONFIG)
#error "GLEXEC_INTERP, GLEXEC_ENGINE and GLEXEC_CONFIG must be set at compile time"
#endif

_Noreturn void die(int code, const char *what, const char *detail)
{
    char msg[PATH_MAX + 256];
    int n = snprintf(msg, sizeof msg, "glexec: %s%s%s\n", what, detail ? ": " : "",
                     detail ? detail : "");
    ssize_t w = n > 0 ? write(2, msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1) : 0;
    (void)w; /* a failed report changes nothing: the exit code carries the verdict */
    _exit(code);
}

/* glibc refills 0-2 only in AT_SECURE mode; log-only mode needs it too, and the engine
 * must never open a log or lease file that lands on 0-2. */
static void fix_std_fds(void)
{
    for (int fd = 0; fd <= 2; fd++)
        if (fcntl(fd, F_GETFD) < 0 && errno == EBADF && open("/dev/null", O_RDWR) != fd)
            die(EXIT_SYSTEM, "cannot open /dev/null", NULL);
}

/* Inside a non-initial user namespace "uid 0" means nothing; only the full identity
 * map of the initial namespace is accepted. */
static void refuse_userns(void)
{
    char buf[UID_MAP_MAX];
    int fd = open("/proc/self/uid_map", O_RDONLY | O_CLOEXEC);
    ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof buf);
    if (fd >= 0)
        close(fd);
    if (n <= 0 || !uid_map_is_initial(buf, (size_t)n))
        die(EXIT_SYSTEM, "refusing to run inside a user namespace", NULL);
}

/* A root-owned setuid binary running without euid 0 means the kernel dropped the bit. */
static int privilege(void)
{
    struct stat st;
    if (geteuid() == 0)
        return 1;
    if (stat("/proc/self/exe", &st))
        die(EXIT_SYSTEM, "cannot stat own binary", NULL);
    if (st.st_uid == 0 && (st.st_mode & S_ISUID))
        die(EXIT_SYSTEM, "setuid bit ignored (ptrace, no_new_privs or nosuid); "
                         "not running with privilege", NULL);
    return 0; /* installed without the setuid bit: log-only mode */
}

static void check_node(int fd, const char *path, int want_dir)
{
    struct stat st;
    if (fd < 0 || fstat(fd, &st) || st.st_uid != 0 || (st.st_mode & 022) ||
        (want_dir ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode)))
        die(EXIT_SYSTEM, "untrusted installation", path);
}

/* Root-down walk with O_PATH|O_NOFOLLOW: each component is checked as the inode we hold
 * (fstat, not a second path lookup), symlinks are refused, descent is relative to it. */
static void trust_walk(const char *target)
{
    char shown[PATH_MAX];
    size_t len = strlen(target);
    if (len >= sizeof shown || target[0] != '/')
        die(EXIT_SYSTEM, "untrusted installation", target);
    int dir = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    check_node(dir, "/", 1);
    for (size_t i = 1, end; i < len; i = end + 1) {
        for (end = i; end < len && target[end] != '/'; end++)
            ;
        if (end == i)
            continue; /* "//" */
        memcpy(shown, target, end);
        shown[end] = '\0';
        const char *comp = shown + i;
        int last = strspn(target + end, "/") == len - end;
        if (!strcmp(comp, ".") || !strcmp(comp, ".."))
            die(EXIT_SYSTEM, "untrusted installation", shown);
        int fd = openat(dir, comp, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        check_node(fd, shown, !last); /* a symlink is neither a dir nor a regular file */
        close(dir);
        dir = fd;
    }
    close(dir);
}

/* Full root (ruid too) so the caller can no longer signal or ptrace the engine. */
static void become_root(void)
{
    uid_t r, e, s;
    gid_t rg, eg, sg;
    if (setgroups(0, NULL) || setresgid(0, 0, 0) || setresuid(0, 0, 0))
        die(EXIT_SYSTEM, "cannot switch to root", NULL);
    if (getresuid(&r, &e, &s) || getresgid(&rg, &eg, &sg) || r || e || s || rg || eg || sg ||
        getgroups(0, NULL) != 0)
        die(EXIT_SYSTEM, "identity switch did not take effect", NULL);
}

/* Raise a limit the engine needs; the caller's originals are in the blob for the payload. */
static void raise_limit(int res, rlim_t want, int privileged)
{
    struct rlimit rl;
    if (getrlimit(res, &rl))
        die(EXIT_SYSTEM, "cannot read rlimit", NULL);
    if (privileged && rl.rlim_max < want) /* RLIM_INFINITY is the largest rlim_t */
        rl.rlim_max = want;
    if (rl.rlim_cur < want)
        rl.rlim_cur = want < rl.rlim_max ? want : rl.rlim_max;
    if (!setrlimit(res, &rl))
        return;
    if (!privileged || errno != EPERM)
        die(EXIT_SYSTEM, "cannot set rlimit", NULL);
    /* Root without CAP_SYS_RESOURCE (some containers) cannot raise hard limits: raise the
     * soft limit within the hard one; the engine fails closed if that is not enough. */
    raise_limit(res, want, 0);
}

/* Ignored/blocked signals, pending alarms and rlimits are inherited across exec and
 * therefore chosen by the caller: reset them for the engine. */
static void sane_process(int privileged)
{
    sigset_t none;
    struct rlimit rl;
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            signal(sig, SIG_DFL); /* EINVAL for glibc-internal RT signals is expected */
    if (sigemptyset(&none) || sigprocmask(SIG_SETMASK, &none, NULL))
        die(EXIT_SYSTEM, "cannot unblock signals", NULL);
    alarm(0);

    if (getrlimit(RLIMIT_CORE, &rl))
        die(EXIT_SYSTEM, "cannot read rlimit", NULL);
    rl.rlim_cur = 0;
    if (privileged) /* log-only mode keeps the hard limit so the payload gets it back */
        rl.rlim_max = 0;
    if (setrlimit(RLIMIT_CORE, &rl))
        die(EXIT_SYSTEM, "cannot set rlimit", NULL);
    raise_limit(RLIMIT_FSIZE, RLIM_INFINITY, privileged);
    raise_limit(RLIMIT_CPU, RLIM_INFINITY, privileged);
    raise_limit(RLIMIT_AS, RLIM_INFINITY, privileged);
    raise_limit(RLIMIT_DATA, RLIM_INFINITY, privileged);
    raise_limit(RLIMIT_NOFILE, 1024, privileged);
    raise_limit(RLIMIT_STACK, 8u << 20, privileged);
}

int main(int argc, char **argv, char **envp)
{
    /* CVE-2021-4034: argv[1] of an empty vector is envp[0]. Kernels >= 5.18 turn {NULL}
     * into {""}, so an empty argv[0] is refused the same way. */
    if (argc < 1 || !argv || !argv[0] || !argv[0][0])
        die(EXIT_CALLER, "empty argument vector", NULL);
    fix_std_fds();
    refuse_userns();
    int privileged = privilege();
    handoff_to_fd3(argc, argv, envp, privileged);
    trust_walk(GLEXEC_INTERP);
    trust_walk(GLEXEC_ENGINE); /* covers the engine directory and all its ancestors */
    if (close_range(4, ~0U, 0))
        die(EXIT_SYSTEM, "cannot close inherited descriptors", NULL);
    sane_process(privileged);
    int served = privileged && service_offer(); /* before the switch: the service checks us */
    if (privileged)
        become_root();
    if (served)
        service_run();

    static char *const args[] = { GLEXEC_INTERP, "-I", "-S", "-B", GLEXEC_ENGINE,
                                  GLEXEC_CONFIG, NULL };
    static char *const env[] = { "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C", NULL };
    execve(GLEXEC_INTERP, args, env);
    die(EXIT_SYSTEM, "cannot execute the engine interpreter", GLEXEC_INTERP);
}
