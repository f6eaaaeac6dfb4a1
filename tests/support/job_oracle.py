"""Oracle for the job side's unpacker, shared by the hypothesis tests (tests/job/) and the
atheris target (fuzz/fuzz_job_unpack.py): unpack one archive in-process into a fresh job
directory next to a sentinel tree and check what must hold for ANY input:

* the only exceptions are ``Refused`` (a rule) -- never a crash, never an OSError for
  archive content;
* nothing outside the job directory changed (the sentinel tree and the directory around the
  job directory are identical, nothing new appeared there);
* inside: no device, FIFO or socket, no set-id/sticky bit, every symlink resolves inside;
* caps: bytes written <= max_total_bytes, entries <= max_members (+ implicit parents);
* a refusal leaves the job directory empty;
* a zip that Python's zipfile lists with a member the rules forbid by what it declares (a
  FIFO, device, socket or unknown Unix type, whatever its name; an absolute name; a '..'
  component) is refused: an independent reading of the listing, not the unpacker's."""
import hashlib
import io
import os
import shutil
import stat
import sys

_TOOLS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "tools")
if _TOOLS not in sys.path:
    sys.path.insert(0, _TOOLS)

from glexec_tools.job import apply, plan  # noqa: E402

SMALL_CAPS = plan.Caps(max_total_bytes=4 << 20, max_members=200, max_member_bytes=2 << 20,
                       ratio_grace=1 << 20, max_meta_bytes=64 << 10)


def snapshot(root, skip=None):
    """Everything under ``root`` except the ``skip`` subtree: type, mode, owner, size and
    content digest or link target."""
    out = {}
    for d, dirs, files in os.walk(root):
        if d == skip:
            dirs[:] = []
            continue
        for n in dirs + files:
            p = os.path.join(d, n)
            if p == skip:
                continue
            st = os.lstat(p)
            rec = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_size)
            if stat.S_ISLNK(st.st_mode):
                rec += (os.readlink(p),)
            elif stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    rec += (hashlib.sha256(f.read()).hexdigest(),)
            out[os.path.relpath(p, root)] = rec
    return out


def layout(base):
    """BASE/sentinel/{file,dir/inner}, BASE/w1/w2/job (fresh).  Returns the job dir."""
    if os.path.lexists(base):
        shutil.rmtree(base)
    os.makedirs(os.path.join(base, "sentinel", "dir"))
    for p, data in (("sentinel/file", b"SENTINEL"), ("sentinel/dir/inner", b"INNER")):
        with open(os.path.join(base, p), "wb") as f:
            f.write(data)
    job = os.path.join(base, "w1", "w2", "job")
    os.makedirs(job, mode=0o700)
    return job


def inspect(job):
    real = os.path.realpath(job)
    entries, written = 0, 0
    for d, dirs, files in os.walk(job):
        for n in dirs + files:
            p = os.path.join(d, n)
            st = os.lstat(p)
            entries += 1
            m = st.st_mode
            assert stat.S_ISREG(m) or stat.S_ISDIR(m) or stat.S_ISLNK(m), f"special file {p}"
            assert stat.S_ISLNK(m) or not m & 0o7000, f"set-id/sticky {p} {oct(m)}"
            assert st.st_uid == os.geteuid(), f"foreign owner {p}"
            if stat.S_ISLNK(m):
                r = os.path.realpath(p)
                assert r == real or r.startswith(real + "/"), f"symlink {p} leaves the job dir: {r}"
            if stat.S_ISREG(m):
                written += st.st_size
    return entries, written


def check_unpack(base, data: bytes, caps=SMALL_CAPS):
    """Unpack ``data`` under ``base`` and check the oracle; returns the result dict or the
    Refused reason (str)."""
    job = layout(base)
    before = snapshot(base, job)
    fd = os.memfd_create("archive")
    root = apply.open_job_dir(job)
    try:
        os.write(fd, data)
        os.lseek(fd, 0, os.SEEK_SET)
        try:
            result = apply.unpack(root, fd, caps)
        except plan.Refused as e:
            result = str(e)
            assert "\n" not in result
    finally:
        os.close(fd)
        os.close(root)
    assert snapshot(base, job) == before, "something outside the job directory changed"
    entries, written = inspect(job)
    assert written <= caps.max_total_bytes
    if isinstance(result, str):
        assert entries == 0, f"refused ({result}) but {entries} entries left"
    else:
        assert result["bytes"] <= caps.max_total_bytes
        forbidden = zip_forbidden_member(data)
        assert forbidden is None, f"accepted a zip declaring {forbidden!r}"
    return result


_ZIP_TYPES_ALLOWED = (0, stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK)


def zip_forbidden_member(data: bytes):
    """The first member of a zip (as the unpacker recognises one) that its declared type or
    name forbids, or None (also when zipfile cannot list it: then only a refusal is right,
    which the other checks allow)."""
    import zipfile
    if not data.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return None
    try:
        infos = zipfile.ZipFile(io.BytesIO(data)).infolist()
    except Exception:       # noqa: BLE001 -- any reason zipfile cannot list it
        return None
    for info in infos:
        name = info.orig_filename.encode("utf-8" if info.flag_bits & 0x800 else "cp437", "surrogateescape")
        if stat.S_IFMT(info.external_attr >> 16) not in _ZIP_TYPES_ALLOWED \
                or name.startswith(b"/") or b".." in name.split(b"/"):
            return (name, oct(info.external_attr >> 16))
    return None
