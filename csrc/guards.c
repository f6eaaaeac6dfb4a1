/* guards.c - what a payload must not inherit from the caller or keep from the pilot.
 *
 * gx_clear_inherited_caps: the caller's inheritable and ambient capability sets survive
 * the setuid exec of the shim and the uid switch; a payload must start with none.
 *
 * gx_tty_guard: the payload keeps the pilot's session and process group (the batch
 * system needs them), and so its controlling terminal. A seccomp filter makes
 * ioctl(fd, TIOCSTI|TIOCLINUX, ...) fail with EPERM, so it cannot push keystrokes into
 * the pilot's shell (CVE-2016-2779 class) or paste on a virtual console. Installed while
 * the child is still root (CAP_SYS_ADMIN: no no_new_privs needed, so setuid programs keep
 * working in the payload); inherited by everything the payload starts, never removable.
 * The kernel compares the ioctl command as a 32-bit unsigned int, so only the low word of
 * the argument is compared. Every ABI this kernel accepts from the task is covered: on
 * x86-64 the native one, x32 (nr with __X32_SYSCALL_BIT) and i386 (int 0x80).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "native.h"

int gx_clear_inherited_caps(int *err) {
    /* Called after setresuid: the kernel has emptied permitted/effective, and lowering
     * every set to nothing needs no privilege and no capget (so nothing read back is
     * trusted here; the check after the switch reads the sets). */
    struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct d[2];

    memset(d, 0, sizeof d);
    *err = 0;
    /* Ambient first: an ambient capability must also be inheritable, never the reverse. */
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) {
        *err = errno;
        return GX_AMBIENT;
    }
    if (syscall(SYS_capset, &hdr, d) != 0) {
        *err = errno;
        return GX_CAPSET;
    }
    return GX_OK;
}

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define ARG1_LO (offsetof(struct seccomp_data, args[1]))
#else
#define ARG1_LO (offsetof(struct seccomp_data, args[1]) + 4)
#endif
#define LD(off) BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (off))
#define JEQ(k, t, f) BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (k), (t), (f))
#define RET(v) BPF_STMT(BPF_RET | BPF_K, (v))
#define DENY (SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA))

/* ALLOW and DENY are the last two instructions; jump offsets count from the next one. */
#if defined(__x86_64__)
#define X32_BIT 0x40000000u
#define X32_IOCTL 514u                /* compat_sys_ioctl in the x32 table */
static const struct sock_filter filter[] = {
    /*  0 */ LD(offsetof(struct seccomp_data, arch)),
    /*  1 */ JEQ(AUDIT_ARCH_X86_64, 0, 4),          /* else -> 6 */
    /*  2 */ LD(offsetof(struct seccomp_data, nr)),
    /*  3 */ JEQ(__NR_ioctl, 5, 0),                 /* -> 9 */
    /*  4 */ JEQ(X32_BIT | X32_IOCTL, 4, 0),        /* -> 9 */
    /*  5 */ JEQ(X32_BIT | __NR_ioctl, 3, 6),       /* -> 9, else ALLOW */
    /*  6 */ JEQ(AUDIT_ARCH_I386, 0, 6),            /* else DENY: no other ABI exists here */
    /*  7 */ LD(offsetof(struct seccomp_data, nr)),
    /*  8 */ JEQ(54, 0, 3),                         /* i386 __NR_ioctl, else ALLOW */
    /*  9 */ LD(ARG1_LO),
    /* 10 */ JEQ(TIOCSTI, 2, 0),
    /* 11 */ JEQ(TIOCLINUX, 1, 0),
    /* 12 */ RET(SECCOMP_RET_ALLOW),
    /* 13 */ RET(DENY),
};
#elif defined(__aarch64__)
static const struct sock_filter filter[] = {
    /*  0 */ LD(offsetof(struct seccomp_data, arch)),
    /*  1 */ JEQ(AUDIT_ARCH_AARCH64, 0, 2),         /* else -> 4 */
    /*  2 */ LD(offsetof(struct seccomp_data, nr)),
    /*  3 */ JEQ(__NR_ioctl, 3, 6),                 /* -> 7, else ALLOW */
    /*  4 */ JEQ(AUDIT_ARCH_ARM, 0, 6),             /* else DENY */
    /*  5 */ LD(offsetof(struct seccomp_data, nr)),
    /*  6 */ JEQ(54, 0, 3),                         /* 32-bit ARM __NR_ioctl, else ALLOW */
    /*  7 */ LD(ARG1_LO),
    /*  8 */ JEQ(TIOCSTI, 2, 0),
    /*  9 */ JEQ(TIOCLINUX, 1, 0),
    /* 10 */ RET(SECCOMP_RET_ALLOW),
    /* 11 */ RET(DENY),
};
#else
#error "gx_tty_guard: no seccomp filter for this architecture"
#endif

/* Runs as root in the payload's child, before the uid switch. SPEC_ALLOW: this filter is no
 * sandbox, so it must not switch on the Speculative Store Bypass mitigation that kernels
 * before 5.16 force on every seccomp task by default (a slower payload for nothing);
 * kernels before 4.17 do not know the flag (EINVAL) and get the plain filter. */
int gx_tty_guard(int *err) {
    struct sock_fprog prog = { sizeof filter / sizeof filter[0], (struct sock_filter *)filter };

    *err = 0;
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_SPEC_ALLOW, &prog) == 0)
        return GX_OK;
    if (errno == EINVAL && syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) == 0)
        return GX_OK;
    *err = errno;
    return GX_SECCOMP;
}
