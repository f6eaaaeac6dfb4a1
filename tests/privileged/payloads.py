"""Payload scripts used by the end-to-end tests (written into the test's box by the tests)."""
import json
import os

# Dumps what the payload process is: identity, caps, session, env, cwd, fds, argv (as python sees
# it and as the kernel has it), its executable, rlimits and parent-death signal.
# Writes JSON to the file named by argv[1] if given (and not "-"), else to stdout.
# The fd scan comes first, before Python opens anything of its own.
DUMP = r'''#!/usr/bin/python3
import os, sys, resource
fds = []
_soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
for _fd in range(0, min(_soft if _soft > 0 else 65536, 65536)):
    try:
        os.fstat(_fd)
        fds.append(_fd)
    except OSError:
        pass
fd_targets = {}
for _fd in fds:
    try:
        fd_targets[str(_fd)] = os.readlink("/proc/self/fd/%d" % _fd)
    except OSError as e:
        fd_targets[str(_fd)] = "?" + str(e)
import json
status = {}
with open("/proc/self/status") as f:
    for line in f:
        k, _, v = line.partition(":")
        status[k] = v.strip()
with open("/proc/self/stat", "rb") as f:
    stat = f.read()
stat_fields = stat[stat.rindex(b")") + 2:].split()
with open("/proc/self/environ", "rb") as f:
    environ = [e.decode("latin-1") for e in f.read().split(b"\0") if e]
with open("/proc/self/cmdline", "rb") as f:
    cmdline = [a.decode("latin-1") for a in f.read().split(b"\0")[:-1]]
with open("/proc/self/limits") as f:    # one line per resource, in RLIMIT_* order
    limits = [[-1 if v == "unlimited" else int(v) for v in line[26:].split()[:2]] for line in list(f)[1:]]
import ctypes
_sig = ctypes.c_int(-1)
ctypes.CDLL(None, use_errno=True).prctl(2, ctypes.byref(_sig), 0, 0, 0)   # PR_GET_PDEATHSIG
d = {
    "pid": os.getpid(), "ppid": os.getppid(), "sid": os.getsid(0), "pgid": os.getpgid(0),
    "stat_ppid": int(stat_fields[1]), "stat_pgid": int(stat_fields[2]),
    "stat_sid": int(stat_fields[3]),
    "resuid": list(os.getresuid()), "resgid": list(os.getresgid()),
    "groups": sorted(os.getgroups()), "status": status,
    "environ": environ, "cwd": os.getcwdb().decode("latin-1"),
    "fds": fds, "fd_targets": fd_targets,
    "argv": [os.fsencode(a).decode("latin-1") for a in sys.argv],
    "cmdline": cmdline, "exe": os.readlink("/proc/self/exe"), "limits": limits, "pdeathsig": _sig.value,
}
out = json.dumps(d)
if len(sys.argv) > 1 and sys.argv[1] != "-":
    with open(sys.argv[1], "w") as f:
        f.write(out)
else:
    sys.stdout.write(out)
'''

# Prints argv[1:] NUL-separated, byte-exact.
ARGV = r'''#!/usr/bin/python3
import os, sys
sys.stdout.buffer.write(b"\0".join(os.fsencode(a) for a in sys.argv[1:]))
'''

# Traps a signal, says it is ready, then waits; on the signal writes a marker and exits 0.
# usage: trap.sh <outdir> <SIGNAME>
TRAP = r'''#!/bin/sh
out="$1"; sig="$2"
trap 'echo "$sig" > "$out/got-$sig"; exit 0' "$sig"
echo $$ > "$out/ready.tmp" && mv "$out/ready.tmp" "$out/ready"
i=0
while [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
exit 3
'''

# Touches a marker (proves the payload ran): usage: marker.sh <file>
MARKER = '''#!/bin/sh
echo ran > "$1"
'''


def load_dump(text_or_bytes):
    return json.loads(text_or_bytes)


def env_dict(dump):
    out = {}
    for e in dump["environ"]:
        k, sep, v = e.partition("=")
        out[k] = v if sep else None
    return out


def caps(dump):
    return {k: int(dump["status"][k], 16) for k in ("CapInh", "CapPrm", "CapEff", "CapAmb")}


__all__ = ["DUMP", "ARGV", "TRAP", "MARKER", "load_dump", "env_dict", "caps"]
