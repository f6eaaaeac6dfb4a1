"""The adversarial archive corpus of the job side (issue 11): each case builds one or two
archives (bytes) aimed at a sentinel tree next to the job directory.

Layout every case runs in (built by the test, owned by the account that unpacks):

    BASE/sentinel/{file, dir/inner}     must be byte-identical afterwards
    BASE/w1/w2/job/                     the job directory ("../../../sentinel" is the sentinel)

``expect``: "refuse" (exit 1, nothing of that archive left) or "ok" (exit 0, ``check`` holds
on the job directory).  ``caps``: extra inner options for this case (bombs use the defaults
unless said).
"""
from __future__ import annotations

import bz2
import io
import lzma
import os
import stat
import subprocess
import tarfile
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field

REL = "../../../sentinel"          # the sentinel, relative to the job directory


@dataclass
class Ctx:
    sent_abs: str                  # absolute path of BASE/sentinel


@dataclass
class Case:
    name: str
    build: object                  # Ctx -> list[bytes]
    expect: str                    # "refuse" | "ok"
    check: object = None           # (job_path: bytes) -> None, asserts
    caps: list = field(default_factory=list)
    plant: object = None           # (job_path: str, ctx) -> None: payload's files before unpack


# --- builders ----------------------------------------------------------------------------

def F(name, data=b"x", mode=0o644, **kw):
    return ("file", name, data, mode, kw)


def D(name, mode=0o755, **kw):
    return ("dir", name, None, mode, kw)


def S(name, target, **kw):
    return ("sym", name, target, 0o777, kw)


def H(name, target, **kw):
    return ("hard", name, target, 0o644, kw)


def X(name, kind, mode=0o644, **kw):
    """A special member: kind is a tarfile type byte (CHRTYPE, FIFOTYPE, ...)."""
    return ("special", name, kind, mode, kw)


def tar(members, fmt=tarfile.PAX_FORMAT, comp=None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt, encoding="utf-8", errors="surrogateescape") as tf:
        for kind, name, arg, mode, kw in members:
            ti = tarfile.TarInfo(os.fsdecode(name) if isinstance(name, bytes) else name)
            ti.mode, ti.mtime = mode, 1700000000
            ti.uid, ti.gid = kw.get("uid", 0), kw.get("gid", 0)
            ti.uname, ti.gname = kw.get("uname", ""), kw.get("gname", "")
            ti.pax_headers = kw.get("pax", {})
            data = None
            if kind == "file":
                ti.size, data = len(arg), io.BytesIO(arg)
            elif kind == "dir":
                ti.type = tarfile.DIRTYPE
            elif kind == "sym":
                ti.type, ti.linkname = tarfile.SYMTYPE, arg
            elif kind == "hard":
                ti.type, ti.linkname = tarfile.LNKTYPE, arg
            else:
                ti.type = arg
                ti.devmajor, ti.devminor = 1, 3
            tf.addfile(ti, data)
    return compress(buf.getvalue(), comp)


def compress(raw: bytes, comp):
    if comp is None:
        return raw
    if comp == "gz":
        c = zlib.compressobj(6, zlib.DEFLATED, 31)
        return c.compress(raw) + c.flush()
    if comp == "bz2":
        return bz2.compress(raw)
    if comp == "xz":
        return lzma.compress(raw, format=lzma.FORMAT_XZ)
    if comp == "zstd":
        return subprocess.run(["zstd", "-q", "-c"], input=raw, capture_output=True, check=True).stdout
    raise ValueError(comp)


def _cksum(h: bytearray) -> None:
    h[148:156] = b" " * 8
    h[148:156] = b"%06o\0 " % sum(h)


def raw_header(name: bytes, typeflag: bytes = b"0", size: int = 0, mode: int = 0o644,
               link: bytes = b"") -> bytes:
    """One ustar header block, fields written by hand (no library checks)."""
    h = bytearray(512)
    h[0:len(name[:100])] = name[:100]
    h[100:108] = b"%07o\0" % mode
    h[108:116] = b"%07o\0" % 0
    h[116:124] = b"%07o\0" % 0
    h[124:136] = b"%011o\0" % size
    h[136:148] = b"%011o\0" % 1700000000
    h[156:157] = typeflag
    h[157:157 + len(link[:100])] = link[:100]
    h[257:265] = b"ustar\x0000"
    _cksum(h)
    return bytes(h)


def pad(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 512)


def pax_block(records: dict, typeflag=b"x") -> bytes:
    body = b""
    for k, v in records.items():
        rec = b" " + k + b"=" + v + b"\n"
        n = len(rec)
        while len(b"%d" % n) + len(rec) != n:
            n = len(b"%d" % n) + len(rec)
        body += b"%d" % n + rec
    return raw_header(b"./PaxHeaders/x", typeflag, len(body)) + pad(body)


def end() -> bytes:
    return b"\0" * 1024


def zipa(entries, comp=zipfile.ZIP_DEFLATED) -> bytes:
    """entries: (name str|bytes, data, unix mode incl. type bits, flag_utf8)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", comp) as zf:
        for name, data, mode in entries:
            if isinstance(name, bytes):
                name = name.decode("cp437")
            zi = zipfile.ZipInfo(name, (2023, 1, 1, 0, 0, 0))
            zi.external_attr = mode << 16
            zi.compress_type = comp
            zf.writestr(zi, data)
    return buf.getvalue()


def zip_bomb(mib: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zi = zipfile.ZipInfo("zeros", (2023, 1, 1, 0, 0, 0))
        zi.compress_type = zipfile.ZIP_DEFLATED
        with zf.open(zi, "w", force_zip64=True) as f:
            z = bytes(1 << 20)
            for _ in range(mib):
                f.write(z)
    return buf.getvalue()


def tar_bomb(comp, mib: int, level: int = 9) -> bytes:
    """One member of ``mib`` MiB of zeros, streamed through the compressor."""
    c = {"gz": lambda: zlib.compressobj(level, zlib.DEFLATED, 31), "bz2": lambda: bz2.BZ2Compressor(1),
         "xz": lambda: lzma.LZMACompressor(format=lzma.FORMAT_XZ, preset=0)}.get(comp)
    ti = tarfile.TarInfo("zeros")
    ti.size, ti.mode = mib << 20, 0o644
    if comp == "zstd":
        raw = ti.tobuf(format=tarfile.GNU_FORMAT) + bytes(mib << 20) + end()
        return compress(raw, "zstd")
    c = c()
    out = [c.compress(ti.tobuf(format=tarfile.GNU_FORMAT))]
    z = bytes(1 << 20)
    out += [c.compress(z) for _ in range(mib)]
    out += [c.compress(end()), c.flush()]
    return b"".join(out)


def gnu_tar_sparse(version: str, size: int, data_at=((0, b"head"), (1 << 20, b"tail"))) -> bytes:
    """A sparse member made by GNU tar itself (-S) from a real sparse file."""
    with tempfile.TemporaryDirectory(dir="/var/tmp") as d:
        p = os.path.join(d, "sparse")
        with open(p, "wb") as f:
            for off, b in data_at:
                f.seek(off)
                f.write(b)
            f.truncate(size)
        fmt = ["--format=gnu"] if version == "gnu" else ["--format=pax", f"--sparse-version={version}"]
        return subprocess.run(["tar", "-C", d, "-cS", *fmt, "-f", "-", "sparse"], capture_output=True,
                              check=True).stdout


# --- checks ----------------------------------------------------------------------------

def has(*names, data=None, mode=None):
    def check(job: bytes):
        for n in names:
            p = os.path.join(job, n)
            st = os.lstat(p)
            if data is not None:
                with open(p, "rb") as f:
                    assert f.read() == data, n
            if mode is not None:
                assert stat.S_IMODE(st.st_mode) == mode, (n, oct(st.st_mode))
    return check


def is_link(name, target):
    def check(job: bytes):
        assert os.readlink(os.path.join(job, name)) == target
    return check


def plant_symlink(name, target_rel_or_abs):
    def plant(job, ctx):
        t = target_rel_or_abs.replace("@S", ctx.sent_abs)
        os.symlink(t, os.path.join(job, name))
    return plant


# --- the cases ---------------------------------------------------------------------------

def cases() -> list[Case]:
    C = []
    add = lambda *a, **k: C.append(Case(*a, **k))   # noqa: E731
    one = lambda f: (lambda ctx: [f(ctx)])          # noqa: E731

    # names
    add("dotdot", one(lambda c: tar([F("../escape")])), "refuse")
    add("dotdot-inner", one(lambda c: tar([F("a/../../escape")])), "refuse")
    add("dotdot-deep", one(lambda c: tar([F("a/b/../../../../sentinel/new")])), "refuse")
    add("dotdot-to-sentinel-file", one(lambda c: tar([F(REL + "/file", b"PWNED")])), "refuse")
    add("absolute", one(lambda c: tar([F(c.sent_abs + "/abs", b"PWNED")])), "refuse")
    add("absolute-double-slash", one(lambda c: tar([F("/" + c.sent_abs + "/file", b"PWNED")])), "refuse")
    add("absolute-dir", one(lambda c: tar([D(c.sent_abs + "/newdir")])), "refuse")
    add("pax-path-dotdot", one(lambda c: tar([F("innocent", b"PWNED", pax={"path": REL + "/file"})])),
        "refuse")
    add("pax-path-absolute", one(lambda c: tar([F("innocent", b"PWNED", pax={"path": c.sent_abs + "/p"})])),
        "refuse")
    add("gnu-longname-dotdot", one(lambda c: tar([F("a/" * 60 + "../" * 61 + "w2/escape")],
                                                 fmt=tarfile.GNU_FORMAT)), "refuse")
    add("pax-path-nul", lambda c: [pax_block({b"path": b"ok\0/" + REL.encode() + b"/file"})
                                   + raw_header(b"ok", b"0", 5) + pad(b"PWNED") + end()], "refuse")
    add("raw-dotdot-header", lambda c: [raw_header(REL.encode() + b"/raw", b"0", 5) + pad(b"PWNED") + end()],
        "refuse")
    add("dot-components-ok", one(lambda c: tar([F("./a/./b", b"1"), F(".//c", b"2")])), "ok",
        has(b"a/b", b"c"))
    add("non-utf8-name", one(lambda c: tar([F(b"caf\xe9-\xff", b"bytes")], fmt=tarfile.GNU_FORMAT)), "ok",
        has(b"caf\xe9-\xff", data=b"bytes"))
    add("non-utf8-pax", one(lambda c: tar([F(b"\xc3\x28-\x80" * 40, b"p")])), "ok",
        has(b"\xc3\x28-\x80" * 40, data=b"p"))
    add("long-name-gnu", one(lambda c: tar([F("d/" * 50 + "f" * 150, b"L")], fmt=tarfile.GNU_FORMAT)), "ok",
        has(("d/" * 50 + "f" * 150).encode(), data=b"L"))
    add("long-name-pax", one(lambda c: tar([F("p" * 200 + "/" + "q" * 250, b"P")])), "ok",
        has(("p" * 200 + "/" + "q" * 250).encode(), data=b"P"))
    add("component-too-long", one(lambda c: tar([F("z" * 300)])), "refuse")
    add("too-deep", one(lambda c: tar([F("d/" * 70 + "f")])), "refuse")
    add("path-too-long", one(lambda c: tar([F(("n" * 200 + "/") * 22 + "f")])), "refuse")
    add("backslash-name", one(lambda c: tar([F("a\\..\\..\\escape", b"b")])), "ok",
        has(b"a\\..\\..\\escape", data=b"b"))
    add("empty-name", lambda c: [raw_header(b"", b"0", 5) + pad(b"PWNED") + end()], "refuse")

    # types and modes
    add("char-device", one(lambda c: tar([X("null", tarfile.CHRTYPE)])), "refuse")
    add("block-device", one(lambda c: tar([X("sda", tarfile.BLKTYPE)])), "refuse")
    add("fifo", one(lambda c: tar([X("fifo", tarfile.FIFOTYPE)])), "refuse")
    add("device-after-files", one(lambda c: tar([F("a"), F("b"), X("null", tarfile.CHRTYPE)])), "refuse")
    add("unknown-type", lambda c: [raw_header(b"weird", b"Q", 5) + pad(b"weird") + end()], "refuse")
    add("contiguous-file", lambda c: [raw_header(b"contig", b"7", 3) + pad(b"abc") + end()], "ok",
        has(b"contig", data=b"abc"))
    add("setuid-file", one(lambda c: tar([F("suid", b"#!", 0o4755)])), "ok", has(b"suid", mode=0o755))
    add("setgid-dir", one(lambda c: tar([D("sgid", 0o2775)])), "ok", has(b"sgid", mode=0o755))
    add("sticky-dir", one(lambda c: tar([D("tmp", 0o1777)])), "ok", has(b"tmp", mode=0o755))
    add("world-writable", one(lambda c: tar([F("ww", b"w", 0o666)])), "ok", has(b"ww", mode=0o644))
    add("mode-000", one(lambda c: tar([F("zero", b"0", 0o000), D("zd", 0o000), F("zd/f", b"f", 0)])), "ok",
        has(b"zero", b"zd/f", mode=0o600))
    add("foreign-owner", one(lambda c: tar([F("rootfile", b"r", uid=0, uname="root"),
                                            F("other", b"o", uid=12345, uname="nobody")])), "ok",
        has(b"rootfile", b"other"))

    # symlinks
    add("symlink-absolute-out", one(lambda c: tar([S("l", c.sent_abs)])), "refuse")
    add("symlink-relative-out", one(lambda c: tar([S("l", REL)])), "refuse")
    add("symlink-then-write", one(lambda c: tar([S("l", c.sent_abs), F("l/pwn", b"PWNED")])), "refuse")
    add("symlink-rel-then-write", one(lambda c: tar([S("l", REL), F("l/file", b"PWNED")])), "refuse")
    add("symlink-file-then-overwrite", one(lambda c: tar([S("l", c.sent_abs + "/file"), F("l", b"PWNED")])),
        "refuse")
    add("symlink-inside-ok", one(lambda c: tar([F("f", b"t"), D("d"), S("d/l", "../f"), S("top", "d/l")])),
        "ok", is_link(b"d/l", b"../f"))
    add("symlink-dotdot-after-name", one(lambda c: tar([S("s", "."), S("e", "s/.."), F("e/w2/pwn")])),
        "refuse")
    add("symlink-dotdot-after-name-only", one(lambda c: tar([S("s", "."), S("e", "s/../..")])), "refuse")
    add("symlink-chain-out", one(lambda c: tar([S("a", "b"), S("b", "c"), S("c", REL), F("a/pwn")])),
        "refuse")
    add("symlink-inside-then-write", one(lambda c: tar([D("d"), S("l", "d"), F("l/x", b"via link")])),
        "refuse")
    add("symlink-replaces-dir", one(lambda c: tar([D("d"), S("d", REL)])), "refuse")
    add("symlink-self-loop", one(lambda c: tar([S("loop", "loop")])), "ok", is_link(b"loop", b"loop"))
    add("symlink-empty-target", lambda c: [raw_header(b"l", b"2") + end()], "refuse")
    add("pax-linkpath-out", one(lambda c: tar([S("l", "harmless", pax={"linkpath": REL}), F("l/file", b"P")])),
        "refuse")
    add("symlink-deep-dotdot-out", one(lambda c: tar([S("a/b/l", "../../../x")])), "refuse")
    add("symlink-deep-dotdot-ok", one(lambda c: tar([F("x"), S("a/b/l", "../../x")])), "ok",
        is_link(b"a/b/l", b"../../x"))

    # two archives / what the payload planted before
    add("two-archives-link-then-write",
        lambda c: [tar([D("d"), S("l", "d")]), tar([F("l/x", b"second")])], "refuse")
    add("two-archives-overwrite-file", lambda c: [tar([F("f", b"one")]), tar([F("f", b"two")])], "refuse")
    add("two-archives-abs-link-then-write",
        lambda c: [tar([S("l", c.sent_abs)]), tar([F("l/file", b"PWNED")])], "refuse")
    add("planted-symlink-dir", one(lambda c: tar([F("l/planted-escape", b"PWNED")])), "refuse",
        plant=plant_symlink("l", "@S"))
    add("planted-symlink-file", one(lambda c: tar([F("f", b"PWNED")])), "refuse",
        plant=plant_symlink("f", "@S/file"))
    add("planted-symlink-parent-deep", one(lambda c: tar([D("a"), F("a/l/dir/new", b"PWNED")])), "refuse",
        plant=lambda job, ctx: (os.mkdir(os.path.join(job, "a")),
                                os.symlink(ctx.sent_abs, os.path.join(job, "a", "l"))))
    add("second-archive-into-existing-dir", lambda c: [tar([D("d"), F("d/a", b"1")]), tar([F("d/b", b"2")])],
        "ok", has(b"d/a", b"d/b"))

    # hardlinks
    add("hardlink-absolute-out", one(lambda c: tar([H("h", c.sent_abs + "/file")])), "refuse")
    add("hardlink-relative-out", one(lambda c: tar([H("h", REL + "/file")])), "refuse")
    add("hardlink-then-write", one(lambda c: tar([H("h", c.sent_abs + "/file"), F("h", b"PWNED")])),
        "refuse")
    add("hardlink-inside-ok", one(lambda c: tar([F("f", b"same"), H("h", "f")])), "ok",
        has(b"f", b"h", data=b"same"))
    add("hardlink-to-dir", one(lambda c: tar([D("d"), H("h", "d")])), "refuse")
    add("hardlink-to-symlink", one(lambda c: tar([F("f"), S("l", "f"), H("h", "l")])), "refuse")
    add("hardlink-before-target", one(lambda c: tar([H("h", "f"), F("f")])), "refuse")
    add("hardlink-to-planted", one(lambda c: tar([H("h", "planted")])), "refuse",
        plant=lambda job, ctx: open(os.path.join(job, "planted"), "wb").close())

    # duplicates and case
    add("duplicate-file", one(lambda c: tar([F("f", b"1"), F("f", b"2")])), "refuse")
    add("duplicate-dir-ok", one(lambda c: tar([D("d"), D("d"), F("d/f")])), "ok", has(b"d/f"))
    add("file-then-dir", one(lambda c: tar([F("f"), D("f")])), "refuse")
    add("file-then-child", one(lambda c: tar([F("f"), F("f/x")])), "refuse")
    add("dotslash-duplicate", one(lambda c: tar([F("./f", b"1"), F("f", b"2")])), "refuse")
    add("case-colliding", one(lambda c: tar([F("README", b"upper"), F("readme", b"lower")])), "ok",
        lambda job: (has(b"README", data=b"upper")(job), has(b"readme", data=b"lower")(job)))

    # sparse, PAX size
    add("sparse-gnu", lambda c: [gnu_tar_sparse("gnu", 2 << 20)], "ok", _sparse_ok(2 << 20))
    add("sparse-pax-1.0", lambda c: [gnu_tar_sparse("1.0", 2 << 20)], "ok", _sparse_ok(2 << 20))
    add("sparse-huge", lambda c: [gnu_tar_sparse("1.0", 100 << 30)], "refuse")
    add("sparse-over-member-cap", lambda c: [gnu_tar_sparse("gnu", 64 << 20)], "refuse",
        caps=["--max-member-bytes", str(32 << 20)])
    add("pax-size-override", lambda c: [pax_block({b"size": b"5"}) + raw_header(b"f", b"0", 0) + pad(b"hello")
                                        + end()], "ok", has(b"f", data=b"hello"))
    add("pax-size-huge", lambda c: [pax_block({b"size": b"99999999999999"}) + raw_header(b"f", b"0", 0)
                                    + end()], "refuse")
    add("pax-size-smuggle", lambda c: [pax_block({b"size": b"0"}) + raw_header(b"f", b"0", 1024)
                                       + raw_header(REL.encode() + b"/smuggled", b"0", 5) + pad(b"PWNED")
                                       + end()], "refuse")

    # caps and bombs
    for comp in ("gz", "bz2", "xz", "zstd"):
        add(f"bomb-{comp}", one(lambda c, comp=comp: tar_bomb(comp, 256)), "refuse")
    add("bomb-gz-fast", one(lambda c: tar_bomb("gz", 256, level=1)), "refuse")
    add("bomb-zip", one(lambda c: zip_bomb(256)), "refuse")
    add("many-members", one(lambda c: tar([F(f"m{i}") for i in range(300)], comp="gz")), "refuse",
        caps=["--max-members", "100"])
    add("total-cap", one(lambda c: tar([F(f"t{i}", os.urandom(1 << 20)) for i in range(3)])), "refuse",
        caps=["--max-total-bytes", str(2 << 20)])
    add("member-cap", one(lambda c: tar([F("big", os.urandom(2 << 20))])), "refuse",
        caps=["--max-member-bytes", str(1 << 20)])
    add("pax-header-bomb", lambda c: [pax_block({b"comment": b"c" * (4 << 20)}) + raw_header(b"f", b"0")
                                      + end()], "refuse")
    add("gnu-longname-bomb", lambda c: [raw_header(b"././@LongLink", b"L", 4 << 20) + pad(b"n" * (4 << 20))
                                        + raw_header(b"f", b"0") + end()], "refuse")

    # zip
    add("zip-dotdot", one(lambda c: zipa([(REL + "/file", b"PWNED", 0o100644)])), "refuse")
    add("zip-absolute", one(lambda c: zipa([(c.sent_abs + "/zabs", b"PWNED", 0o100644)])), "refuse")
    add("zip-symlink-out", one(lambda c: zipa([("l", REL.encode(), 0o120777), ("l/file", b"PWNED", 0o100644)])),
        "refuse")
    add("zip-symlink-inside", one(lambda c: zipa([("f", b"z", 0o100644), ("l", b"f", 0o120777)])), "ok",
        is_link(b"l", b"f"))
    add("zip-fifo", one(lambda c: zipa([("p", b"", 0o010644)])), "refuse")
    add("zip-fifo-dirname", one(lambda c: zipa([("p/", b"", 0o010644)])), "refuse")   # type beats the "/"
    add("zip-chardev", one(lambda c: zipa([("c", b"", 0o020644)])), "refuse")
    add("zip-setuid", one(lambda c: zipa([("s", b"#!", 0o104755)])), "ok", has(b"s", mode=0o755))
    add("zip-duplicate", one(lambda c: zipa([("f", b"1", 0o100644), ("f", b"2", 0o100644)])), "refuse")
    add("zip-cp437-name", one(lambda c: zipa([("@@", b"c", 0o100644)]).replace(b"@@", b"\x80\xe9")), "ok",
        has(b"\x80\xe9", data=b"c"))
    add("zip-backslash", one(lambda c: zipa([("a\\..\\..\\x", b"b", 0o100644)])), "ok",
        has(b"a\\..\\..\\x"))

    # formats and garbage
    for comp in ("gz", "bz2", "xz", "zstd"):
        add(f"ok-{comp}", one(lambda c, comp=comp: tar([D("d"), F("d/f", b"compressed")], comp=comp)), "ok",
            has(b"d/f", data=b"compressed"))
    add("truncated-tar", one(lambda c: tar([F("f", os.urandom(5000))])[:2048]), "refuse")
    add("truncated-gz", one(lambda c: tar([F("f", os.urandom(5000))], comp="gz")[:1500]), "refuse")
    add("not-an-archive", one(lambda c: b"this is not an archive at all" * 40), "refuse")
    return C


def _sparse_ok(size):
    def check(job: bytes):
        with open(os.path.join(job, b"sparse"), "rb") as f:
            data = f.read()
        assert len(data) == size and data[:4] == b"head" and data[1 << 20:(1 << 20) + 4] == b"tail"
        assert data[4:1 << 20] == bytes((1 << 20) - 4)
    return check
