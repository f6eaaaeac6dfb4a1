"""Payloads that try to type into their controlling terminal (TIOCSTI / TIOCLINUX), shared
by the end-to-end test (tests/privileged/test_e2e_payload_guards.py) and the in-process one
of the executor's tty guard (tests/native/test_spawn.py)."""

INJECT = b"id > /tmp/pwned\n"

# Tries to push INJECT into its controlling terminal (TIOCSTI) and a TIOCLINUX paste;
# writes {"tiocsti": errno or 0, "tioclinux": errno or 0} to argv[1].
TTY_ATTACK = r'''#!/usr/bin/python3
import fcntl, json, os, sys, termios
TIOCLINUX = 0x541C
res = {}
fd = os.open("/dev/tty", os.O_RDWR)
try:
    for c in %r:
        fcntl.ioctl(fd, termios.TIOCSTI, bytes([c]))
    res["tiocsti"] = 0
except OSError as e:
    res["tiocsti"] = e.errno
try:
    fcntl.ioctl(fd, TIOCLINUX, bytes([3]))  # 3 = paste the selection
    res["tioclinux"] = 0
except OSError as e:
    res["tioclinux"] = e.errno
# The command word is 32 bits for the kernel: high bits set must not get past the filter.
try:
    fcntl.ioctl(fd, (1 << 32) | termios.TIOCSTI, b"x")
    res["tiocsti_high"] = 0
except (OSError, OverflowError) as e:
    res["tiocsti_high"] = getattr(e, "errno", None) or "overflow"
with open(sys.argv[1], "w") as f:
    json.dump(res, f)
''' % (INJECT,)


# The same attack through the other system-call ABIs of x86-64: i386 (int 0x80, ioctl = 54)
# and x32 (nr | 0x40000000, ioctl = 514). Writes {"i386": r, "x32": r, "x32_tcgets": r}
# (raw kernel returns: 0 ok, -1 EPERM, -38 ENOSYS) to argv[1].
ABI_ATTACK = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
int main(int argc, char **argv) {
    int fd = open("/dev/tty", O_RDWR);
    /* int 0x80 passes 32-bit pointers: the buffer must live below 4 GiB */
    char *c = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
    const char *s = "i386\n";
    long r = 0, x, y;
    for (; *s && r == 0; s++) {
        *c = *s;
        __asm__ volatile("int $0x80" : "=a"(r) : "a"(54L), "b"((long)fd), "c"((long)TIOCSTI), "d"((long)c)
                         : "r8", "r9", "r10", "r11", "memory");
    }
    *c = 'X';
    register long a1 __asm__("rdi") = fd, a2 __asm__("rsi") = TIOCSTI, a3 __asm__("rdx") = (long)c;
    __asm__ volatile("syscall" : "=a"(x) : "a"(0x40000000L | 514L), "r"(a1), "r"(a2), "r"(a3)
                     : "rcx", "r11", "memory");
    a2 = TCGETS;
    __asm__ volatile("syscall" : "=a"(y) : "a"(0x40000000L | 514L), "r"(a1), "r"(a2), "r"(a3)
                     : "rcx", "r11", "memory");
    FILE *f = fopen(argv[1], "w");
    fprintf(f, "{\"i386\": %ld, \"x32\": %ld, \"x32_tcgets\": %ld}", r, x, y);
    return fclose(f) != 0;
}
"""
