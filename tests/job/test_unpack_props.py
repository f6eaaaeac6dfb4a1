"""Property tests of the unpacker (in-process, as whoever runs pytest): random member lists
with hostile names, types and link targets, as tar (plain/gz) and zip; the oracle is
tests/support/job_oracle.py (nothing outside changes, nothing special inside, caps, a
refusal leaves nothing), plus: a member named with '..', an absolute name, a device or a
FIFO always refuses, and a success has every file member's bytes at its normalised name."""
import io
import warnings
import os
import stat
import tarfile
import zipfile

from hypothesis import HealthCheck, given, settings, strategies as st

from tests.job import corpus
from tests.support import job_oracle

COMPONENTS = [b"a", b"b", b"A", b"..", b".", b"", b"\xff\xfe", b"c" * 40, b"sentinel", b"w2", b"job"]
KINDS = ["file", "dir", "sym", "hard", "fifo", "chr"]

component = st.sampled_from(COMPONENTS)
path = st.tuples(st.booleans(), st.lists(component, min_size=1, max_size=5)).map(
    lambda t: (b"/" if t[0] else b"") + b"/".join(t[1]))
member = st.tuples(st.sampled_from(KINDS), path, path, st.binary(max_size=64),
                   st.sampled_from([0o644, 0o4755, 0o2775, 0o1777, 0o000, 0o777]))


def _tar(members, comp):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT, encoding="utf-8",
                      errors="surrogateescape") as tf:
        for kind, name, target, data, mode in members:
            if not name:
                continue
            ti = tarfile.TarInfo(os.fsdecode(name))
            ti.mode = mode
            body = None
            if kind == "file":
                ti.size, body = len(data), io.BytesIO(data)
            elif kind == "dir":
                ti.type = tarfile.DIRTYPE
            elif kind in ("sym", "hard"):
                ti.type = tarfile.SYMTYPE if kind == "sym" else tarfile.LNKTYPE
                ti.linkname = os.fsdecode(target)
            else:
                ti.type = tarfile.FIFOTYPE if kind == "fifo" else tarfile.CHRTYPE
            tf.addfile(ti, body)
    return corpus.compress(buf.getvalue(), comp)


def _zip(members):
    buf = io.BytesIO()
    warnings.simplefilter("ignore", UserWarning)      # duplicate names are the point
    with zipfile.ZipFile(buf, "w") as zf:
        for kind, name, target, data, mode in members:
            if not name:
                continue
            fmt = {"file": stat.S_IFREG, "dir": stat.S_IFDIR, "sym": stat.S_IFLNK, "hard": stat.S_IFREG,
                   "fifo": stat.S_IFIFO, "chr": stat.S_IFCHR}[kind]
            zi = zipfile.ZipInfo(name.decode("cp437") + ("/" if kind == "dir" else ""), (2023, 1, 1, 0, 0, 0))
            zi.external_attr = (fmt | mode) << 16
            zf.writestr(zi, target if kind == "sym" else data)
    return buf.getvalue()


def _must_refuse(members):
    for kind, name, target, data, mode in members:
        if not name:
            continue
        parts = name.split(b"/")
        if name.startswith(b"/") or b".." in parts or kind in ("fifo", "chr"):
            return True
    return False


def _norm(name):
    return b"/".join(p for p in name.split(b"/") if p not in (b"", b"."))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(members=st.lists(member, min_size=1, max_size=12), fmt=st.sampled_from(["tar", "gz", "zip"]))
def test_random_hostile_members(tmp_path, members, fmt):
    data = _zip(members) if fmt == "zip" else _tar(members, None if fmt == "tar" else "gz")
    base = str(tmp_path / "b")
    result = job_oracle.check_unpack(base, data)
    if _must_refuse([m for m in members if m[1]]):
        assert isinstance(result, str), (members, result)
    if not isinstance(result, str):
        job = os.path.join(base, "w1", "w2", "job").encode()
        for kind, name, target, body, mode in members:
            if kind == "file" and name:
                if fmt == "zip" and name.endswith(b"/"):
                    continue            # in a zip a name ending in "/" is a directory entry
                if fmt == "zip":        # zipfile stores a non-ASCII name as UTF-8 (flag bit 11)
                    name = name.decode("cp437").encode("utf-8")
                p = os.path.join(job, _norm(name))
                with open(p, "rb") as f:
                    assert f.read() == body
                assert stat.S_IMODE(os.lstat(p).st_mode) == (mode & 0o755) | 0o600


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=3000), head=st.sampled_from([b"", b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00",
                                                            b"PK\x03\x04", b"\x28\xb5\x2f\xfd"]))
def test_random_bytes(tmp_path, data, head):
    job_oracle.check_unpack(str(tmp_path / "b"), head + data)


def test_corpus_in_process(tmp_path):
    """Every corpus case once more in-process under the small caps (no account needed)."""
    for case in corpus.cases():
        if case.name.startswith(("bomb-", "sparse-huge")) or case.plant:
            continue
        base = str(tmp_path / case.name)
        ctx = corpus.Ctx(os.path.join(base, "sentinel"))
        for data in case.build(ctx):
            job_oracle.check_unpack(base, data)


_SEEDS = None


def _seeds():
    global _SEEDS
    if _SEEDS is None:
        warnings.simplefilter("ignore", UserWarning)
        ctx = corpus.Ctx("/nonexistent/sentinel")
        _SEEDS = [a for c in corpus.cases() if not c.name.startswith(("bomb-", "sparse-"))
                  for a in c.build(ctx) if len(a) < 64 << 10]
    return _SEEDS


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pick=st.integers(min_value=0), flips=st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)),
                                                     max_size=6), cut=st.none() | st.integers(min_value=0))
def test_mutated_corpus_archives(tmp_path, pick, flips, cut):
    """The twin of fuzz/fuzz_job_unpack.py: corpus archives with bytes changed or cut off
    (a corrupt zip offset once came out as a system failure instead of a refusal)."""
    seeds = _seeds()
    data = bytearray(seeds[pick % len(seeds)])
    for pos, val in flips:
        if data:
            data[pos % len(data)] = val
    if cut is not None and data:
        data = data[:cut % len(data)]
    job_oracle.check_unpack(str(tmp_path / "b"), bytes(data))


def test_zip_central_directory_offset_lies(tmp_path):
    """A central-directory offset larger than the truth makes zipfile seek to a negative
    member offset (OSError EINVAL): that is the archive's fault, a refusal (exit 1), not a
    system failure."""
    data = bytearray(corpus.zipa([("f", b"data", 0o100644)]))
    eocd = data.rfind(b"PK\x05\x06")
    off = int.from_bytes(data[eocd + 16:eocd + 20], "little")
    data[eocd + 16:eocd + 20] = (off + 100000).to_bytes(4, "little")
    result = job_oracle.check_unpack(str(tmp_path / "b"), bytes(data))
    assert isinstance(result, str) and "corrupt zip" in result, result


def test_large_plain_member_is_not_a_bomb(tmp_path):
    """A big member of an uncompressed tar has ratio 1 all the way through (the bytes
    written once were counted as declared, before they were read: a 1 GiB file was refused
    as a bomb)."""
    from glexec_tools.job import plan
    body = os.urandom(24 << 20)
    data = corpus.tar([corpus.F("big", body)])
    caps = plan.Caps(ratio_grace=1 << 20, max_ratio=4)        # plain tar: ratio 1 throughout
    result = job_oracle.check_unpack(str(tmp_path / "b"), data, caps)
    assert result == {"format": "tar", "members": 1, "bytes": len(body)}, result
    with open(tmp_path / "b" / "w1" / "w2" / "job" / "big", "rb") as f:
        assert f.read() == body


def _with_field(data, at, width, value):
    """``data`` (a one-member tar) with the header field at ``at`` replaced and the header
    checksum recomputed, so only the field itself is wrong."""
    blk = bytearray(data[:512])
    blk[at:at + width] = value.ljust(width, b"\0")
    blk[148:156] = b" " * 8
    blk[148:156] = b"%06o\0 " % sum(blk)
    return bytes(blk) + data[512:]


def test_signed_or_underscored_numbers_refuse(tmp_path):
    """A number field is octal digits only: int() alone took "-1", "+7" and "1_0", so a
    mtime of -1 or a size with an underscore got through as a number no tar writes."""
    data = corpus.tar([corpus.F("f", b"x" * 8)])
    for at, width, value in [(136, 12, b"-0000000001"), (124, 12, b"0000000001_0"),
                             (100, 8, b"+000644"), (100, 8, b"00 0644")]:
        result = job_oracle.check_unpack(str(tmp_path / f"b{at}{value[:2].decode()}"),
                                         _with_field(data, at, width, value))
        assert isinstance(result, str) and "bad" in result, (value, result)


def test_number_fields_writers_use_are_read():
    from glexec_tools.job import tarformat
    assert tarformat.number(b"0000644\0", "mode") == 0o644
    assert tarformat.number(b"   644 \0", "mode") == 0o644        # old tar: leading spaces
    assert tarformat.number(b"\0" * 8, "mode") == 0
    assert tarformat.number(b"\x80" + (5).to_bytes(11, "big"), "size") == 5     # GNU base-256
