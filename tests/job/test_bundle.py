"""``glexec-job pack`` bundles (tools/glexec_tools/job/bundle.py): packed in-process, run by
real shells (dash, bash, busybox sh) with real tools (GNU coreutils + GNU tar, or busybox's
applets only, or without sha256sum so that the POSIX cksum fallback is used, or without
mktemp).  Needs no account: whoever runs pytest runs the bundles, each in its own sandbox
(cwd, TMPDIR) whose every other change is checked."""
import os
import shutil
import subprocess
import tarfile

import pytest
from hypothesis import given, settings, strategies as st, HealthCheck

from glexec_tools.job import bundle
from tests.support import job_oracle
from tests.support.skips import strict

SHELLS = {"dash": ["/usr/bin/dash"], "bash": ["/usr/bin/bash"], "busybox": ["/usr/bin/busybox", "sh"]}
GNU_TOOLS = ["tar", "tail", "wc", "rm", "mkdir", "mktemp", "sha256sum", "cksum", "cat", "cp", "printf", "pwd",
             "ls", "sh", "env"]
# toolset -> what the checksum step uses
TOOLSETS = {"gnu": "sha256", "busybox": "sha256", "cksum-only": "cksum", "no-mktemp": "sha256"}

ENTRY = (b"#!/bin/sh\n"
         b"cp -R . \"$GLEXEC_BUNDLE_ORIGIN/copy\" || exit 9\n"
         b"printf '%s\\n' \"$@\" > \"$GLEXEC_BUNDLE_ORIGIN/args\"\n"
         b"printf '%s\\n' \"$GLEXEC_BUNDLE_DIR\" > \"$GLEXEC_BUNDLE_ORIGIN/where\"\n"
         b"printf '%s\\n' \"$GLEXEC_BUNDLE_CHECKSUM\" > \"$GLEXEC_BUNDLE_ORIGIN/checked\"\n"
         b"exit 3\n")


def _need(path):
    if not os.path.exists(path):
        msg = f"{path} is missing (make deps installs it)"
        if strict():
            pytest.fail(msg)
        pytest.skip(msg)


@pytest.fixture(scope="module")
def toolsets(tmp_path_factory):
    """PATH directories of symlinks: exactly the tools a worker node may have."""
    _need("/usr/bin/busybox")
    base = tmp_path_factory.mktemp("tools")
    out = {}
    for name in TOOLSETS:
        d = base / name
        d.mkdir()
        for tool in GNU_TOOLS:
            if name == "cksum-only" and tool == "sha256sum" or name == "no-mktemp" and tool == "mktemp":
                continue
            if name == "busybox":
                if tool in ("cksum", "env"):           # Debian's busybox has no cksum applet
                    continue
                os.symlink("/usr/bin/busybox", d / tool)
            else:
                os.symlink(shutil.which(tool), d / tool)
        out[name] = str(d)
    return out


def _tree(files, root):
    """Write ``files`` ({bytes name: bytes content, or None for a directory}) under root."""
    os.makedirs(root, exist_ok=True)
    for name, data in files.items():
        p = os.path.join(os.fsencode(root), name)
        if data is None:
            os.makedirs(p, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(p), exist_ok=True)
            with open(p, "wb") as f:
                f.write(data)


def pack(tmp_path, files, entry=b"run.sh", paths=None, name="b.sh"):
    src = tmp_path / "src"
    _tree({entry: ENTRY, **files}, src)
    out = tmp_path / name
    argv = ["-C", str(src), "--entry", os.fsdecode(entry), "-o", str(out), "--"] + \
        [os.fsdecode(p) for p in (paths or sorted({entry, *files}))]
    assert bundle.main_pack(argv) == 0
    return out


class Sandbox:
    """A cwd (the origin) and a TMPDIR for one run, inside one directory we watch."""

    def __init__(self, root):
        self.root, self.origin, self.tmp = root, root / "origin", root / "tmp"
        self.origin.mkdir(parents=True)
        self.tmp.mkdir()

    def run(self, shell, bundle_path, toolset_path, *args):
        env = {"PATH": toolset_path, "TMPDIR": str(self.tmp)}
        return subprocess.run(SHELLS[shell] + [str(bundle_path), *args], cwd=self.origin, env=env,
                              capture_output=True, timeout=60)


NAMES = {b"plain": b"p", b"with space/a b": b"spaces", b"new\nline": b"nl", b"\xff\xfe-latin1": b"bytes",
         b"-rf": b"dash", b"'quote\"": b"quotes", b"d/e/f/deep": b"deep", b"empty-dir": None,
         b"x" * 150: b"long name", b"y" * 120 + b"/" + b"z" * 120: b"long path"}


@pytest.mark.parametrize("shell", sorted(SHELLS))
@pytest.mark.parametrize("toolset", sorted(TOOLSETS))
def test_round_trip(tmp_path, toolsets, shell, toolset):
    """Every file comes out with its exact name and bytes, the entry gets the arguments
    and its exit status comes back, and the private directory is gone afterwards."""
    _need(SHELLS[shell][0])
    b = pack(tmp_path, NAMES)
    box = Sandbox(tmp_path / "box")
    r = box.run(shell, b, toolsets[toolset], "a 1", "", "-x")
    assert r.returncode == 3, r.stderr
    assert r.stderr == b""
    copy = box.origin / "copy"
    for name, data in NAMES.items():
        p = os.path.join(os.fsencode(copy), name)
        if data is None:
            assert os.path.isdir(p), name
        else:
            with open(p, "rb") as f:
                assert f.read() == data, name
    with open(os.path.join(copy, "run.sh"), "rb") as f:
        assert f.read() == ENTRY
    assert (box.origin / "args").read_bytes() == b"a 1\n\n-x\n"
    where = (box.origin / "where").read_bytes().strip()
    assert where.startswith(os.fsencode(box.tmp) + b"/glexec-bundle.") and where.endswith(b"/job")
    assert os.listdir(box.tmp) == [], "the private directory must be removed after the run"
    assert (box.origin / "checked").read_text() == TOOLSETS[toolset] + "\n"


def test_extracted_files_are_private(tmp_path):
    """umask 077 and --no-same-permissions: the private directory and everything in it are
    the runner's only, whatever modes the packed files had."""
    spy = (b"#!/bin/sh\nfind . -exec stat -c '%a %n' {} + > \"$GLEXEC_BUNDLE_ORIGIN/modes\"\n"
           b"stat -c '%a' \"$GLEXEC_BUNDLE_DIR/..\" >> \"$GLEXEC_BUNDLE_ORIGIN/modes\"\n")
    src = tmp_path / "src"
    _tree({b"spy.sh": spy, b"shared": b"s", b"dir/f": b"f"}, src)
    os.chmod(src / "shared", 0o666)
    os.chmod(src / "dir", 0o777)
    out = tmp_path / "spy.bundle"
    assert bundle.main_pack(["-C", str(src), "-e", "spy.sh", "-o", str(out), "spy.sh", "shared", "dir"]) == 0
    box = Sandbox(tmp_path / "box")
    r = box.run("dash", out, "/usr/bin:/bin")
    assert r.returncode == 0, r.stderr
    modes = (box.origin / "modes").read_text().splitlines()
    assert modes[-1] == "700"                                  # the private directory
    assert len(modes) == 6                                      # ., shared, dir, dir/f, spy.sh
    for line in modes[:-1]:
        assert int(line.split(" ", 1)[0], 8) & 0o077 == 0, line


def _payload_range(path):
    data = path.read_bytes()
    skip = int(data.split(b"\nskip=", 1)[1].split(b"\n", 1)[0])
    return data, skip


@pytest.mark.parametrize("toolset", ["gnu", "cksum-only", "busybox"])
def test_corrupt_byte_anywhere_in_the_payload_runs_nothing(tmp_path, toolsets, toolset):
    """One changed byte (in a header, in file data, in the padding, first and last) or a
    cut: exit 125 before anything is extracted or run; nothing is left behind."""
    b = pack(tmp_path, {b"data.bin": os.urandom(3000), b"d/x": b"x"})
    data, skip = _payload_range(b)
    n = len(data) - skip
    positions = sorted({0, 1, 100, 148, 156, 511, 512, 700, n // 2, n - 1025, n - 1} |
                       {skip and (i * 7919) % n for i in range(1, 12)})
    for i, pos in enumerate(positions):
        bad = bytearray(data)
        bad[skip + pos] ^= 0x20
        for variant, blob in (("flip", bytes(bad)), ("cut", data[:skip + pos])):
            p = tmp_path / f"bad-{i}-{variant}.sh"
            p.write_bytes(blob)
            box = Sandbox(tmp_path / f"box-{i}-{variant}")
            r = box.run("dash", p, toolsets[toolset])
            assert r.returncode == 125, (pos, variant, r.returncode, r.stderr)
            assert b"corrupt" in r.stderr, r.stderr
            assert os.listdir(box.origin) == [], "the entry must not have run"
            assert os.listdir(box.tmp) == [], "nothing may stay extracted"


def test_which_checksum_is_used(tmp_path, toolsets):
    """sha256sum where there is one; POSIX cksum otherwise: a payload whose CRC is right
    but sha256 wrong passes only the cksum check (shown with a bundle whose sha256 line
    was changed)."""
    b = pack(tmp_path, {b"f": b"x"})
    data = b.read_bytes()
    line = data.split(b"\nsha256=", 1)[1].split(b"\n", 1)[0]
    wrong = data.replace(b"\nsha256=" + line, b"\nsha256=" + b"0" * 64, 1)
    p = tmp_path / "wrong-sha.sh"
    p.write_bytes(wrong)
    box = Sandbox(tmp_path / "gnu")
    assert box.run("dash", p, toolsets["gnu"]).returncode == 125
    box = Sandbox(tmp_path / "ck")
    assert box.run("dash", p, toolsets["cksum-only"]).returncode == 3


def test_never_writes_outside_its_directory(tmp_path, toolsets):
    """The whole sandbox (origin, TMPDIR, a sibling) changes only by what the entry writes
    into the origin; the extraction stays in the private directory."""
    b = pack(tmp_path, NAMES)
    box = Sandbox(tmp_path / "box")
    (tmp_path / "box" / "sibling").mkdir()
    (tmp_path / "box" / "sibling" / "keep").write_bytes(b"k")
    for shell in SHELLS:
        for toolset in TOOLSETS:
            before = job_oracle.snapshot(tmp_path / "box")
            r = box.run(shell, b, toolsets[toolset])
            assert r.returncode == 3, r.stderr
            after = job_oracle.snapshot(tmp_path / "box")
            changed = {p for p in set(before) | set(after) if before.get(p) != after.get(p)}
            origin = os.path.relpath(box.origin, tmp_path / "box")
            assert all(p.startswith(origin + "/") for p in changed), changed
            shutil.rmtree(box.origin)
            box.origin.mkdir()


def _hostile_bundle(tmp_path, members, name):
    """A bundle whose payload (right checksums) was not made by pack: what the tar options
    still stop if someone writes one by hand."""
    import io
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        ti = tarfile.TarInfo("run.sh")
        ti.size, ti.mode = len(ENTRY), 0o755
        tf.addfile(ti, io.BytesIO(ENTRY))
        for mname, kind, data in members:
            ti = tarfile.TarInfo(mname)
            ti.type = kind
            if kind == tarfile.SYMTYPE:
                ti.linkname = data
                tf.addfile(ti)
            else:
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
    payload = buf.getvalue()
    sums = bundle.Checksums()
    sums.update(payload)
    p = tmp_path / name
    p.write_bytes(bundle.header_text(len(payload), sums, b"run.sh") + payload)
    return p


@pytest.mark.parametrize("toolset", ["gnu", "busybox"])
def test_hand_made_payload_with_absolute_and_dotdot_names_stays_inside(tmp_path, toolsets, toolset):
    outside = tmp_path / "outside"
    outside.mkdir()
    b = _hostile_bundle(tmp_path, [(str(outside / "abs"), tarfile.REGTYPE, b"A"),
                                   ("../../../outside/dotdot", tarfile.REGTYPE, b"D"),
                                   ("a/../../../../outside/mid", tarfile.REGTYPE, b"M")], "hostile.sh")
    box = Sandbox(tmp_path / "box")
    box.run("dash", b, toolsets[toolset])
    assert os.listdir(outside) == []


def test_determinism(tmp_path):
    """Same files, other mtimes, owners' modes and argument order: the same bytes."""
    files = {b"b": b"2", b"a/c": b"3", b"a/d": b"4"}
    one = pack(tmp_path / "1", files, paths=[b"run.sh", b"b", b"a"])
    for dirpath, dirs, fs in os.walk(tmp_path / "1" / "src"):
        for n in fs:
            os.utime(os.path.join(dirpath, n), (1, 1))
    shutil.copytree(tmp_path / "1" / "src", tmp_path / "2" / "src")
    two_out = tmp_path / "2" / "b.sh"
    assert bundle.main_pack(["-C", str(tmp_path / "2" / "src"), "-e", "run.sh", "-o", str(two_out),
                             "a", "b", "run.sh", "a/c"]) == 0
    assert one.read_bytes() == two_out.read_bytes()
    data, skip = _payload_range(one)
    import io
    with tarfile.open(fileobj=io.BytesIO(data[skip:])) as tf:
        members = tf.getmembers()
    assert [m.name for m in members] == ["a", "a/c", "a/d", "b", "run.sh"]
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, 0, "", "")}
    assert {m.name: m.mode for m in members} == {"a": 0o755, "a/c": 0o644, "a/d": 0o644, "b": 0o644,
                                                 "run.sh": 0o755}


def test_refusals_leave_no_output(tmp_path, capsys):
    src = tmp_path / "src"
    _tree({b"run.sh": ENTRY, b"d/f": b"f"}, src)
    os.symlink("/etc/passwd", src / "d" / "link")
    os.mkfifo(src / "fifo")
    out = tmp_path / "b.sh"
    cases = [(["d"], "symlink"), (["run.sh", "fifo"], "not a regular file"), (["../src"], ".."),
             (["/etc/passwd"], "absolute"), (["missing"], "does not exist")]
    for paths, why in cases:
        rc = bundle.main_pack(["-C", str(src), "-e", "run.sh", "-o", str(out), "run.sh", *paths])
        err = capsys.readouterr().err
        assert rc == 1 and why in err and err.count("\n") == 1, (paths, err)
        assert not out.exists()
    assert bundle.main_pack(["-C", str(src), "-e", "nope.sh", "-o", str(out), "run.sh"]) == 1
    assert not out.exists()
    out.write_bytes(b"keep")
    assert bundle.main_pack(["-C", str(src), "-e", "run.sh", "-o", str(out), "run.sh"]) == 1
    assert out.read_bytes() == b"keep"
    assert "already exists" in capsys.readouterr().err
    assert bundle.main_pack(["-C", str(src), "-e", "run.sh", "-o", str(tmp_path / "no" / "b"), "run.sh"]) == 4
    with pytest.raises(SystemExit) as e:
        bundle.main_pack(["-C", str(src), "run.sh"])                 # no --entry
    assert e.value.code == 2


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=5000), split=st.integers(min_value=0, max_value=5000))
def test_cksum_matches_the_posix_tool(data, split):
    sums = bundle.Checksums()
    sums.update(data[:split])
    sums.update(data[split:])
    want = subprocess.run(["cksum"], input=data, capture_output=True, check=True).stdout.split()
    assert [str(sums.cksum()).encode(), str(len(data)).encode()] == want


def test_json_summary(tmp_path, capsys):
    src = tmp_path / "src"
    _tree({b"run.sh": ENTRY}, src)
    out = tmp_path / "b.sh"
    assert bundle.main_pack(["--json", "-C", str(src), "-e", "run.sh", "-o", str(out), "run.sh"]) == 0
    import hashlib
    import json
    summary = json.loads(capsys.readouterr().out)
    data, skip = _payload_range(out)
    assert summary["sha256"] == hashlib.sha256(data).hexdigest()
    assert summary["payload_sha256"] == hashlib.sha256(data[skip:]).hexdigest()
    assert (summary["bytes"], summary["payload_bytes"], summary["entries"]) == (len(data), len(data) - skip, 1)


def test_no_checksum_tool_runs_nothing(tmp_path, toolsets):
    """Without sha256sum and cksum the payload cannot be checked: refused, nothing run."""
    tools = tmp_path / "bare"
    tools.mkdir()
    for t in os.listdir(toolsets["cksum-only"]):
        if t != "cksum":
            os.symlink(os.readlink(os.path.join(toolsets["cksum-only"], t)), tools / t)
    b = pack(tmp_path, {b"f": b"x"})
    box = Sandbox(tmp_path / "box")
    r = box.run("dash", b, str(tools))
    assert r.returncode == 125 and b"cannot check the payload" in r.stderr, r.stderr
    assert os.listdir(box.origin) == [] and os.listdir(box.tmp) == []


def test_the_glexec_job_command_packs(tmp_path):
    """`glexec-job pack` (the tool's own launcher, a fresh process) reaches the bundle writer:
    the bundle it writes runs its entry with the arguments; `pack` without arguments is a
    usage error (2), not a run of the job CLI."""
    launcher = os.path.join(os.path.dirname(__file__), "..", "..", "tools", "bin", "glexec-job")
    (tmp_path / "run.sh").write_text('#!/bin/sh\necho "ran $1"\n')
    r = subprocess.run([launcher, "pack", "--entry", "run.sh", "-o", "b.sh", "run.sh"], cwd=tmp_path,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = subprocess.run(["sh", str(tmp_path / "b.sh"), "x"], capture_output=True, text=True, cwd=tmp_path)
    assert (out.returncode, out.stdout) == (0, "ran x\n"), out.stderr
    bad = subprocess.run([launcher, "pack"], capture_output=True, text=True, cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.startswith("glexec-job pack: usage:"), bad.stderr
