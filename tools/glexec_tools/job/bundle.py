"""``glexec-job pack``: one self-extracting file that carries a job's files to a worker node
without a shared file system (what JIM's bootstrap did), needing there only ``sh``, ``tar``
and a checksum tool.

    glexec-job pack --entry NAME [--output FILE|-] [-C DIR] PATH...

The bundle is a POSIX sh header (``header_text``) followed by a tar payload.  On the worker
the header copies the payload into a fresh private directory (``mktemp -d`` under umask
077), checks its size and checksum there (``sha256sum``; POSIX ``cksum`` where that is
missing), and only then extracts it (``--no-same-owner --no-same-permissions``, never over
an existing file) and runs the declared entry point in it.  A corrupt bundle extracts and
runs nothing.  See docs/job-bundle.md.

Runs as: whoever packs (the pilot); reads only the named files, writes only ``--output``.

Deterministic: names sorted as bytes, mtime 0, owner 0/0 without names, modes 0755 for
directories and executable files (and the entry), 0644 for the rest; the same files give
the same bytes.  Carried: regular files and directories; a symlink, device, FIFO or socket
among the inputs refuses the pack (a bundle carries no links to resolve on the worker).

Exit: 0 written; 1 refused (an input breaks a rule; no output is left); 2 usage; 4 system
failure.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import stat
import sys
import tarfile
import tempfile
import zlib

from .apply import openat2
from .plan import Caps, Refused, split_name

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_FAIL = 0, 1, 2, 4
PROG = "glexec-job pack"
FORMAT_VERSION = 1
CHUNK = 1 << 20


# --- the payload -------------------------------------------------------------------------

def _bit_reversed_bytes():
    return bytes(int(f"{b:08b}"[::-1], 2) for b in range(256))


_REVERSE = _bit_reversed_bytes()


class Checksums:
    """sha256 and the POSIX ``cksum`` CRC of a byte stream, updated piece by piece.

    cksum's CRC-32 is the non-reflected one (polynomial 0x04C11DB7, register starting at 0,
    the length appended least significant byte first, complemented at the end); zlib's
    crc32 is the reflected one.  Fed bit-reversed bytes, zlib's register is the bit-reversed
    cksum register, so the C loop does the work (a Python loop would take minutes a GiB)."""

    def __init__(self):
        self.sha256 = hashlib.sha256()
        self.size = 0
        self._crc = 0xFFFFFFFF              # zlib's value whose register is 0

    def update(self, b: bytes) -> None:
        self.sha256.update(b)
        self._crc = zlib.crc32(b.translate(_REVERSE), self._crc)
        self.size += len(b)

    def cksum(self) -> int:
        n, tail = self.size, bytearray()
        while n:
            tail.append(n & 0xFF)
            n >>= 8
        v = zlib.crc32(bytes(tail).translate(_REVERSE), self._crc)
        return int(f"{v:032b}"[::-1], 2)


class _HashingWriter:
    """A file object for tarfile that hashes what it writes."""

    def __init__(self, f, sums: Checksums):
        self.f, self.sums = f, sums

    def write(self, b):
        b = bytes(b)
        self.sums.update(b)
        return self.f.write(b)

    def tell(self):
        return self.sums.size


class _ExactReader:
    """Exactly ``size`` bytes of an open input file; a file that shrinks is refused."""

    def __init__(self, fd, size, name):
        self.fd, self.left, self.name = fd, size, name

    def read(self, n=-1):
        n = self.left if n is None or n < 0 else min(n, self.left)
        b = os.read(self.fd, n) if n else b""
        if n and not b:
            raise Refused(f"{_show(self.name)} changed while it was packed")
        self.left -= len(b)
        return b


def _show(name: bytes) -> str:
    return repr(name[:200])[2:-1]


def _tarinfo(name: bytes, kind, mode, size=0):
    ti = tarfile.TarInfo(os.fsdecode(name))
    ti.type, ti.mode, ti.size = kind, mode, size
    ti.mtime, ti.uid, ti.gid, ti.uname, ti.gname = 0, 0, 0, "", ""
    return ti


def collect_inputs(base_fd: int, paths: list) -> list:
    """Runs as: the packer.  The entries to carry: (name, is_dir) for every path (relative
    to ``base_fd``) and, for a directory, everything under it, sorted by name; opened by fd
    without following a symlink (a symlink, device, FIFO or socket refuses)."""
    found = {}
    for p in paths:
        parts = split_name(p, _CAPS)
        if not parts:
            raise Refused(f"input {_show(p)} names the base directory itself: name what is in it")
        _walk(base_fd, parts, found)
    return sorted(found.items())


def _walk(base_fd, parts, found):
    name = b"/".join(parts)
    if name in found:
        return
    # every parent exists and is a real directory: walk them without following links
    try:
        st = os.stat(name, dir_fd=base_fd, follow_symlinks=False)
    except FileNotFoundError:
        raise Refused(f"input {_show(name)} does not exist") from None
    for i in range(1, len(parts)):
        pst = os.stat(b"/".join(parts[:i]), dir_fd=base_fd, follow_symlinks=False)
        if not stat.S_ISDIR(pst.st_mode):
            raise Refused(f"input {_show(name)} lies under a symlink or non-directory")
        found.setdefault(b"/".join(parts[:i]), True)
    if stat.S_ISDIR(st.st_mode):
        found[name] = True
        fd = openat2(base_fd, name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            with os.scandir(fd) as it:
                children = sorted(os.fsencode(e.name) for e in it)
        finally:
            os.close(fd)
        for c in children:
            _walk(base_fd, parts + (c,), found)
    elif stat.S_ISREG(st.st_mode):
        found[name] = False
    else:
        what = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a regular file or directory"
        raise Refused(f"input {_show(name)} is {what}: a bundle carries files and directories only")


_CAPS = Caps()           # input names follow the unpacker's name limits


def write_payload(base_fd: int, entries: list, entry: bytes, out) -> Checksums:
    """Runs as: the packer.  The tar of ``entries`` (GNU format: raw byte names of any
    length) written to ``out``; returns its checksums."""
    sums = Checksums()
    with tarfile.open(fileobj=_HashingWriter(out, sums), mode="w", format=tarfile.GNU_FORMAT,
                      encoding="utf-8", errors="surrogateescape") as tar:
        for name, is_dir in entries:
            if is_dir:
                tar.addfile(_tarinfo(name, tarfile.DIRTYPE, 0o755))
                continue
            # no symlink anywhere on the path, even one swapped in since the walk
            fd = openat2(base_fd, name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NOCTTY | os.O_NONBLOCK)
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    raise Refused(f"input {_show(name)} changed type while it was packed")
                mode = 0o755 if st.st_mode & stat.S_IXUSR or name == entry else 0o644
                tar.addfile(_tarinfo(name, tarfile.REGTYPE, mode, st.st_size),
                            _ExactReader(fd, st.st_size, name))
                after = os.fstat(fd)
                if (after.st_size, after.st_mtime_ns) != (st.st_size, st.st_mtime_ns):
                    raise Refused(f"input {_show(name)} changed while it was packed")
            finally:
                os.close(fd)
    return sums


# --- the header --------------------------------------------------------------------------

def sh_quote(b: bytes) -> bytes:
    """``b`` as one sh word: single quotes, a quote as '\\''; any byte but NUL is safe."""
    return b"'" + b.replace(b"'", b"'\\''") + b"'"


# The header is plain POSIX sh (checked with dash, bash --posix and busybox sh).  @NAME@ are
# filled in by header_text(); SKIP is fixed-width so the header's length is known first.
HEADER = rb"""#!/bin/sh
# glexec-job bundle, format @VERSION@ (made by glexec-job pack; see glexec-job(8)).
# Needs: sh, tar, tail, wc, rm, and sha256sum (else POSIX cksum). Run: sh BUNDLE [ARG]...
# Checks the payload in a fresh private directory BEFORE anything else: a corrupt bundle
# extracts nothing and runs nothing (exit 125).
umask 077
skip=@SKIP@
size=@SIZE@
sha256=@SHA256@
cksum_crc=@CRC@
entry=@ENTRY@
me=$0
fail() { printf 'glexec-job bundle: %s\n' "$*" >&2; exit 125; }
case $me in /*) ;; *) me=$(pwd)/$me ;; esac
[ -f "$me" ] && [ -r "$me" ] || fail "cannot read the bundle itself ($0)"
origin=$(pwd) || fail "no current directory"
base=${TMPDIR:-/tmp}
dir=$(mktemp -d "$base/glexec-bundle.XXXXXX" 2>/dev/null) || {
    n=0                         # no mktemp: mkdir fails on an existing name, so retry
    while :; do
        n=$((n + 1)); [ "$n" -le 100 ] || fail "cannot make a directory in $base"
        dir=$base/glexec-bundle.$$.$n
        mkdir "$dir" 2>/dev/null && break
    done
}
trap 'rm -rf "$dir"' EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM
tail -c "+$((skip + 1))" "$me" > "$dir/payload" || fail "cannot copy the payload"
got=$(wc -c < "$dir/payload") || fail "cannot measure the payload"
[ "$((got + 0))" -eq "$size" ] || fail "payload is $((got + 0)) bytes, not $size: corrupt or cut bundle"
if command -v sha256sum >/dev/null 2>&1; then
    sum=$(sha256sum < "$dir/payload") || fail "sha256sum failed"
    [ "${sum%% *}" = "$sha256" ] || fail "payload sha256 mismatch: corrupt bundle"
    checked=sha256
else                            # cksum is POSIX (always there); its CRC-32 finds corruption, not forgery
    command -v cksum >/dev/null 2>&1 || fail "neither sha256sum nor cksum: cannot check the payload"
    sum=$(cksum < "$dir/payload") || fail "cksum failed"
    [ "${sum%% *}" = "$cksum_crc" ] || fail "payload cksum mismatch: corrupt bundle"
    checked=cksum
fi
mkdir "$dir/job" || fail "cannot make the job directory"
( cd "$dir/job" && exec tar -x -m -k --no-same-owner --no-same-permissions -f ../payload ) ||
    fail "tar could not extract the payload"
rm -f "$dir/payload"
GLEXEC_BUNDLE_DIR=$dir/job GLEXEC_BUNDLE_ORIGIN=$origin GLEXEC_BUNDLE_CHECKSUM=$checked
export GLEXEC_BUNDLE_DIR GLEXEC_BUNDLE_ORIGIN GLEXEC_BUNDLE_CHECKSUM
cd "$dir/job" || fail "cannot enter the job directory"
"./$entry" "$@"
exit $?
"""


def header_text(size: int, sums: Checksums, entry: bytes) -> bytes:
    """The sh header for a payload of ``size`` bytes with these checksums."""
    fill = {b"@VERSION@": b"%d" % FORMAT_VERSION, b"@SIZE@": b"%d" % size,
            b"@SHA256@": sums.sha256.hexdigest().encode(), b"@CRC@": b"%d" % sums.cksum(),
            b"@ENTRY@": sh_quote(entry)}
    text = HEADER
    for k, v in fill.items():
        text = text.replace(k, v)
    text = text.replace(b"@SKIP@", b" " * 12)        # a decimal padded with spaces (no
    return text.replace(b"skip=" + b" " * 12, b"skip=%-12d" % len(text), 1)   # leading 0: octal)


# --- pack --------------------------------------------------------------------------------

def pack(base_fd: int, paths: list, entry: bytes, out_fd: int) -> dict:
    """Runs as: the packer.  Write the bundle of ``paths`` (relative to ``base_fd``) with
    the entry point ``entry`` to ``out_fd``; returns a summary."""
    entry_parts = split_name(entry, _CAPS)
    if not entry_parts:
        raise Refused("the entry point must name a file")
    entry = b"/".join(entry_parts)
    entries = collect_inputs(base_fd, paths)
    if (entry, False) not in entries:
        raise Refused(f"the entry point {_show(entry)} is not one of the packed files")
    with tempfile.TemporaryFile() as spool:       # the header needs the payload's checksums
        sums = write_payload(base_fd, entries, entry, spool)
        head = header_text(sums.size, sums, entry)
        whole = hashlib.sha256(head)
        spool.seek(0)
        _write_all(out_fd, head)
        while True:
            b = spool.read(CHUNK)
            if not b:
                break
            whole.update(b)
            _write_all(out_fd, b)
    return {"entries": len(entries), "payload_bytes": sums.size, "bytes": len(head) + sums.size,
            "payload_sha256": sums.sha256.hexdigest(), "payload_cksum": sums.cksum(),
            "sha256": whole.hexdigest()}


def _write_all(fd, b):
    mv = memoryview(b)
    while mv:
        mv = mv[os.write(fd, mv):]


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        _say(f"usage: {message}")
        sys.exit(EXIT_USAGE)


def build_parser():
    p = _Parser(prog=PROG, description="Make one self-extracting bundle (sh + tar) of a job's files.")
    p.add_argument("--entry", "-e", required=True,
                   help="the packed file to run on the worker (relative name; made executable)")
    p.add_argument("--output", "-o", default="-", help="the bundle to create (a new file; '-': stdout)")
    p.add_argument("-C", dest="base", default=".", help="the directory PATHs are relative to")
    p.add_argument("--json", action="store_true",
                   help="print a JSON summary (entries, sizes, sha256 of the payload and of the whole bundle)")
    p.add_argument("paths", nargs="+", metavar="PATH", help="files and directories to carry")
    return p


def main_pack(argv) -> int:
    """``glexec-job pack ARGV``: the exit code (one line on stderr when not 0)."""
    a = build_parser().parse_args(argv)
    out_fd, created = None, None
    try:
        base_fd = os.open(a.base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            if a.output == "-":
                out_fd = os.dup(1)
            else:
                try:
                    out_fd = os.open(a.output, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                                     | os.O_CLOEXEC, 0o700)
                except FileExistsError:
                    raise Refused(f"{a.output} already exists (a bundle is never written over a file)") from None
                created = a.output
            summary = pack(base_fd, [os.fsencode(p) for p in a.paths], os.fsencode(a.entry), out_fd)
            created = None
            if a.json:
                import json
                (sys.stderr if a.output == "-" else sys.stdout).write(json.dumps(summary, sort_keys=True) + "\n")
            return EXIT_OK
        finally:
            os.close(base_fd)
    except Refused as e:
        _say(f"refused: {e}")
        return EXIT_REFUSED
    except OSError as e:
        _say(f"failed: {e}")
        return EXIT_FAIL
    except Exception as e:          # a bug: still one line, and no partial bundle
        _say(f"failed: internal error {type(e).__name__}: {e}")
        return EXIT_FAIL
    finally:
        if out_fd is not None:
            os.close(out_fd)
        if created is not None:          # nothing half-written is left
            try:
                os.unlink(created)
            except OSError:
                pass


def _say(msg):
    sys.stderr.write(f"{PROG}: " + msg.replace("\n", " ")[:500] + "\n")


if __name__ == "__main__":
    sys.exit(main_pack(sys.argv[1:]))
