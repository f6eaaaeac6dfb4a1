"""Stub engine for the shim tests: dumps what the shim handed over as JSON on stdout.

Runs as `python3.11 -I -S -B stub ENGINE_CONFIG` exactly like the real engine. It records
first (before opening anything) which fds are open, then everything else.
"""
import os
import sys


def main():
    listed = [int(x) for x in os.listdir("/proc/self/fd")]
    fds = []
    for fd in sorted(listed):  # drop the fd listdir itself used
        try:
            os.fstat(fd)
            fds.append(fd)
        except OSError:
            pass
    import fcntl
    import json
    import resource

    out = {"fds": fds, "argv": sys.argv, "executable": sys.executable}
    out["flags"] = {"isolated": sys.flags.isolated, "no_site": sys.flags.no_site,
                    "dont_write_bytecode": sys.flags.dont_write_bytecode}
    with open("/proc/self/cmdline", "rb") as f:
        out["cmdline"] = [a.hex() for a in f.read().split(b"\0")[:-1]]
    out["environ"] = {k.hex(): v.hex() for k, v in os.environb.items()}
    out["resuid"] = list(os.getresuid())
    out["resgid"] = list(os.getresgid())
    out["groups"] = os.getgroups()
    out["ids"] = [os.getpid(), os.getppid(), os.getsid(0), os.getpgrp()]
    out["std"] = [[os.readlink("/proc/self/fd/%d" % fd), fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE]
                  for fd in (0, 1, 2)]
    mask = os.umask(0o077)
    out["umask"] = mask
    try:
        out["cwd"] = os.getcwd()
    except OSError:
        out["cwd"] = None
    out["rlimits"] = {str(r): list(resource.getrlimit(r)) for r in range(16)}  # RLIM_NLIMITS on Linux
    with open("/proc/self/status") as f:
        out["status"] = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
    if 3 in fds:
        out["fd3_seals"] = fcntl.fcntl(3, fcntl.F_GET_SEALS)
        out["fd3_accmode"] = fcntl.fcntl(3, fcntl.F_GETFL) & os.O_ACCMODE
        out["fd3_offset"] = os.lseek(3, 0, os.SEEK_CUR)
        out["fd3_link"] = os.readlink("/proc/self/fd/3")
        chunks = []
        while True:
            b = os.read(3, 1 << 20)
            if not b:
                break
            chunks.append(b)
        out["fd3"] = b"".join(chunks).hex()
    prefix = os.path.dirname(os.path.dirname(os.path.dirname(sys.argv[0])))
    with open(os.path.join(prefix, "var", "markers", "ran-%d" % os.getpid()), "w") as f:
        f.write("ran\n")
    sys.stdout.write(json.dumps(out))
    sys.stdout.flush()


main()
