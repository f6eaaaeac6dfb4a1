"""Harnesses and oracles for the shim's C code outside the setuid binary: shared by
tests/shim/test_shim_units.py, fuzz/fuzz_uidmap.py and fuzz/fuzz_shimblob.py.

* ``UidMap``: csrc/shim_userns.c compiled into a throwaway shared library; ``is_initial``
  calls ``uid_map_is_initial`` on bytes that end exactly at a PROT_NONE page, so any read
  past the end faults.  ``uidmap_oracle`` is the rule written independently in Python.
* ``BlobHarness``: csrc/shim_blob.c linked with tests/shim/blob_harness.c (ASan+UBSan),
  run once per case; ``expected_facts`` says what ``handoff.parse`` must give back for that
  run, and whether the shim must refuse instead (exit 201, no blob).
Nothing here is installed or shipped.
"""
import ctypes
import hashlib
import mmap
import os
import re
import resource
import struct
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CSRC = REPO / "csrc"
HARNESS_C = REPO / "tests" / "shim" / "blob_harness.c"

# --- uid_map -------------------------------------------------------------------------

UID_MAP_MAX = 255          # csrc/shim.h: a read of this many bytes may be cut short


def uidmap_oracle(data):
    """The rule of docs/internals.md: exactly one newline-terminated line holding exactly
    the three fields 0, 0, 4294967295, separated/padded by spaces or tabs."""
    if len(data) >= UID_MAP_MAX or not data.endswith(b"\n"):
        return False
    line = data[:-1]
    if re.search(rb"[^ \t0-9]", line):      # NUL, another newline, signs, letters...
        return False
    return re.split(rb"[ \t]+", line.strip(b" \t")) == [b"0", b"0", b"4294967295"]


def _build(out_dir, name, sources, flags):
    """Compile into out_dir once per content of the sources (name carries their hash)."""
    h = hashlib.sha256(" ".join(flags).encode())
    for s in sources + [CSRC / "shim.h"]:
        h.update(Path(s).read_bytes())
    out = Path(out_dir) / f"{name}-{h.hexdigest()[:16]}"
    if not out.exists():
        tmp = out.with_suffix(".tmp%d" % os.getpid())
        subprocess.run(["gcc", "-O1", "-g", "-Wall", "-Wextra", "-Werror", "-I", str(CSRC),
                        *flags, "-o", str(tmp), *map(str, sources)], check=True)
        os.replace(tmp, out)
    return out


class UidMap:
    def __init__(self, out_dir):
        lib = ctypes.CDLL(str(_build(out_dir, "libuidmap.so", [CSRC / "shim_userns.c"],
                                     ["-shared", "-fPIC"])))
        self._fn = lib.uid_map_is_initial
        self._fn.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
        self._fn.restype = ctypes.c_int
        # two pages: the input is copied to the end of the first, the second is PROT_NONE
        self._page = mmap.PAGESIZE
        self._map = mmap.mmap(-1, 2 * self._page)
        self._base = ctypes.addressof(ctypes.c_char.from_buffer(self._map))
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mprotect.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
        if libc.mprotect(self._base + self._page, self._page, 0):
            raise OSError(ctypes.get_errno(), "mprotect")

    def is_initial(self, data):
        n = len(data)
        assert n <= self._page
        start = self._page - n
        self._map[start:self._page] = data
        return bool(self._fn(self._base + start, n))


# --- hand-off blob -------------------------------------------------------------------

MAX_ARGV = 65536
MAX_ENV = 65536
MAX_BLOB = 16 * 1024 * 1024
RLIM_INFINITY = 2**64 - 1
TOO_LARGE = b"glexec: argument list or environment too large\n"
# What the harness may set without breaking itself (ASan needs address space, stack, fds):
# everything but CPU, DATA, STACK, NOFILE, AS.
SAFE_RLIMITS = (1, 4, 5, 6, 8, 10, 11, 12, 13, 14, 15)
F_SEAL_SEAL, F_SEAL_SHRINK, F_SEAL_GROW, F_SEAL_WRITE = 1, 2, 4, 8


def lim64(v):
    """How the blob must carry an rlimit value: RLIM_INFINITY as -1; a finite value too
    large for the signed 64-bit field as the largest one (a limit never above the real)."""
    return -1 if v == RLIM_INFINITY else min(v, 2**63 - 1)


class BlobHarness:
    def __init__(self, out_dir, asan=True):
        """asan=False: UBSan and _FORTIFY_SOURCE only, ~3 ms a run instead of ~20 ms."""
        san = "address,undefined" if asan else "undefined"
        self.path = _build(out_dir, "blob_harness", [HARNESS_C, CSRC / "shim_blob.c"],
                           ["-fsanitize=" + san, "-fno-sanitize-recover=all",
                            "-D_FORTIFY_SOURCE=2"])

    @staticmethod
    def encode(argv, env, privileged, rlimits):
        out = [struct.pack("<BII", privileged, len(argv), len(env))]
        for s in list(argv) + list(env):
            out += [struct.pack("<I", len(s)), s]
        out.append(struct.pack("<I", len(rlimits)))
        out += [struct.pack("<IQQ", r, s, h) for r, (s, h) in rlimits.items()]
        return b"".join(out)

    def run(self, argv, env, privileged=False, rlimits=None, umask=0o022, cwd="/",
            new_session=False):
        """Run the harness; returns (process, seals, access mode, blob or None)."""
        rlimits = rlimits or {}
        p = subprocess.Popen([str(self.path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, cwd=cwd, umask=umask,
                             start_new_session=new_session,
                             env={"ASAN_OPTIONS": "detect_leaks=0:abort_on_error=0"})
        out, err = p.communicate(self.encode(argv, env, privileged, rlimits))
        p.stdout_bytes, p.stderr_bytes = out, err
        if p.returncode != 0 or len(out) < 8:
            return p, None, None, None
        seals, mode = struct.unpack_from("<II", out)
        return p, seals, mode, out[8:]


def expected_facts(p, argv, env, privileged, rlimits, umask, cwd, new_session):
    """The CallerFacts the blob of run ``p`` must parse to (facts of this process, which the
    harness inherited, with the run's own settings on top)."""
    from glexec_py.core import handoff
    ruid, euid, suid = os.getresuid()
    rgid, egid, sgid = os.getresgid()
    rl = {}
    for r in range(handoff.RLIM_NLIMITS):
        s, h = rlimits.get(r) or tuple(v % 2**64 for v in resource.getrlimit(r))
        rl[r] = (lim64(s), lim64(h))
    sid, pgid = (p.pid, p.pid) if new_session else (os.getsid(0), os.getpgrp())
    return handoff.CallerFacts(
        argv=list(argv), env=list(env), ruid=ruid, euid=euid, suid=suid, rgid=rgid,
        egid=egid, sgid=sgid, pid=p.pid, ppid=os.getpid(), sid=sid, pgid=pgid, umask=umask,
        privileged=bool(privileged), groups=tuple(os.getgroups()), rlimits=rl,
        cwd=os.fsencode(os.path.realpath(cwd)))


def check_run(harness, argv, env, privileged=False, rlimits=None, umask=0o022, cwd="/",
              new_session=False):
    """Run one case and return a list of oracle violations (empty: all good)."""
    from glexec_py.core import handoff
    rlimits = rlimits or {}
    p, seals, mode, blob = harness.run(argv, env, privileged, rlimits, umask, cwd, new_session)
    want = expected_facts(p, argv, env, privileged, rlimits, umask, cwd, new_session)
    size = len(handoff.build(want))
    fsize = rlimits.get(1, (RLIM_INFINITY,))[0]
    if 2**63 <= fsize < RLIM_INFINITY:
        fsize = 0      # the kernel compares the limit as a signed loff_t: every write fails
    bad = []
    if len(argv) > MAX_ARGV or len(env) > MAX_ENV or size > MAX_BLOB:
        if (p.returncode, p.stdout_bytes, p.stderr_bytes) != (201, b"", TOO_LARGE):
            bad.append(f"over-limit input (argc {len(argv)}, envc {len(env)}, {size} bytes) "
                       f"not refused: exit {p.returncode}, {p.stderr_bytes[-300:]!r}")
        return bad
    if size > fsize:     # the caller's own file size limit cannot hold the blob
        line = b"glexec: file size limit too small for the hand-off\n"
        if (p.returncode, p.stdout_bytes, p.stderr_bytes) != (201, b"", line):
            bad.append(f"blob of {size} bytes over RLIMIT_FSIZE {fsize}: exit "
                       f"{p.returncode}, {p.stderr_bytes[-300:]!r}")
        return bad
    if p.returncode != 0 or blob is None:
        return [f"harness exit {p.returncode}: {p.stderr_bytes[-2000:]!r}"]
    want_seals = F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE
    if seals & want_seals != want_seals or mode != os.O_RDONLY:
        bad.append(f"fd 3 seals {seals:#x} access mode {mode}")
    if len(blob) != size:
        bad.append(f"blob has {len(blob)} bytes, expected {size}")
    try:
        got = handoff.parse(blob)
    except Exception as e:  # noqa: BLE001 - any failure to parse is the finding
        return bad + [f"engine parser refused the blob: {e!r}"]
    for f in handoff._FIELDS:
        if getattr(got, f) != getattr(want, f):
            g, w = repr(getattr(got, f)), repr(getattr(want, f))
            bad.append(f"{f}: got {g[:200]} want {w[:200]}")
    return bad
