"""The output collector run AS THE REAL ACCOUNT gxtjob1 on a job directory where the payload
pointed outputs elsewhere: symlinks to a root-only file (/etc/shadow-like), to a sibling
job's file, to the other account's file; hardlinks (nlink > 1); a bind mount (made by root:
the "bind-like trick"); FIFOs; a root-owned file inside; a file over the size cap; missing
outputs.  Oracles: the tar holds exactly the honest outputs, byte for byte, the manifest's
sha256 match, every hostile output is reported refused with its reason, every missing one
reported, exit 1; a clean request exits 0."""
import hashlib
import io
import json
import os
import subprocess
import tarfile

import pytest

pytestmark = pytest.mark.privileged


def _write(path, data, owner, mode=0o644):
    with open(path, "wb") as f:
        f.write(data)
    os.chown(path, owner.uid, owner.gid)
    os.chmod(path, mode)


@pytest.fixture
def scene(runner, job_base, job_accounts, request):
    me, other = job_accounts["gxtjob1"], job_accounts["gxtjob2"]
    root = os.path.join(job_base, f"collect-{request.node.name}")
    os.mkdir(root, 0o755)
    secret = os.path.join(root, "root-secret")                 # like /etc/shadow: root 0600
    _write(secret, b"root:$6$secret\n", type("R", (), {"uid": 0, "gid": 0}), 0o600)
    sib = runner.mkdir(os.path.join(root, "sibling-job"), 0o700)
    _write(os.path.join(sib, "proxy"), b"SIBLING PROXY", me, 0o600)
    oth = runner.mkdir(os.path.join(root, "other-account"), 0o755, owner=other)
    _write(os.path.join(oth, "data"), b"OTHER ACCOUNT", other, 0o644)
    job = runner.mkdir(os.path.join(root, "job"), 0o700)
    res = runner.mkdir(os.path.join(job, "results"), 0o755)
    _write(os.path.join(job, "out.txt"), b"honest output\n", me)
    _write(os.path.join(job, "a.dat"), b"A" * 1000, me)
    _write(os.path.join(job, "b.dat"), os.urandom(5000), me)
    _write(os.path.join(res, "r1"), b"r1", me)
    runner.mkdir(os.path.join(res, "sub"), 0o755)
    _write(os.path.join(res, "sub", "r2"), b"r2", me)
    # hostile outputs, made the way the payload (gxtjob1) can
    links = {"shadow.dat": secret, "sibling.dat": os.path.join(sib, "proxy"),
             "other.dat": os.path.join(oth, "data"), "results/up": "..", "results/sub/esc": "/etc"}
    for name, target in links.items():
        os.symlink(target, os.path.join(job, name))
        os.lchown(os.path.join(job, name), me.uid, me.gid)
    r = runner.run(["/bin/ln", os.path.join(sib, "proxy"), os.path.join(job, "hard.dat")])
    assert r.returncode == 0, r.stderr
    r = runner.run(["/usr/bin/mkfifo", os.path.join(job, "fifo.dat"), os.path.join(res, "fifo")])
    assert r.returncode == 0, r.stderr
    _write(os.path.join(job, "rootowned.dat"), b"root put this here", type("R", (), {"uid": 0, "gid": 0}))
    big = os.path.join(job, "big.bin")
    _write(big, b"", me)
    os.truncate(big, 10 << 30)                                    # sparse 10 GiB
    bound = runner.mkdir(os.path.join(job, "bound"), 0o755)
    subprocess.run(["mount", "--bind", oth, bound], check=True)
    try:
        yield {"root": root, "job": job, "me": me}
    finally:
        subprocess.run(["umount", "-l", bound], check=False)


def _collect(runner, scene, *outputs, max_bytes=1 << 20):
    outdir = runner.mkdir(os.path.join(scene["root"], f"out-{len(os.listdir(scene['root']))}"), 0o700)
    out, man = os.path.join(outdir, "out.tar"), os.path.join(outdir, "manifest.json")
    r = runner.collect(scene["job"], out, man, *outputs, max_bytes=max_bytes)
    with open(out, "rb") as f:
        blob = f.read()
    with open(man) as f:
        manifest = json.load(f)
    with tarfile.open(fileobj=io.BytesIO(blob)) as tf:
        members = {m.name: (tf.extractfile(m).read() if m.isfile() else None, m) for m in tf.getmembers()}
    return r, manifest, members


def test_hostile_outputs_get_nothing_out(runner, scene):
    r, man, members = _collect(runner, scene, "out.txt", "*.dat", "results", "shadow.dat", "big.bin",
                               "bound", "nothere.txt", "no*.glob", "fifo.dat")
    job = scene["job"]
    honest = {"out.txt", "a.dat", "b.dat", "results/r1", "results/sub/r2"}
    assert {n for n, (d, m) in members.items() if m.isfile()} == honest
    assert {n for n, (d, m) in members.items() if m.isdir()} == {"results", "results/sub"}
    assert all(m.isfile() or m.isdir() for _, m in members.values())
    for n in honest:
        with open(os.path.join(job, n), "rb") as f:
            want = f.read()
        assert members[n][0] == want
    assert {f["name"]: f["sha256"] for f in man["files"]} == {
        n: hashlib.sha256(members[n][0]).hexdigest() for n in honest}
    refused = {x["name"]: x["reason"] for x in man["refused"]}
    assert refused == {
        "shadow.dat": "a symlink (not followed)", "sibling.dat": "a symlink (not followed)",
        "other.dat": "a symlink (not followed)", "results/up": "a symlink (not followed)",
        "results/sub/esc": "a symlink (not followed)", "hard.dat": "has other hard links",
        "fifo.dat": "not a regular file or directory", "results/fifo": "not a regular file or directory",
        "rootowned.dat": "not owned by the job's account",
        "big.bin": f"over the output size cap ({1 << 20} bytes)",
        "bound": "a mount point or on another file system"}, refused
    assert man["missing"] == ["nothere.txt", "no*.glob"]
    assert r.returncode == 1 and r.stderr.count(b"\n") == 1
    blob = b"".join(d for d, _ in members.values() if d)
    for secret in (b"root:$6$secret", b"SIBLING PROXY", b"OTHER ACCOUNT"):
        assert secret not in blob


def test_clean_outputs_exit_0(runner, scene):
    r, man, members = _collect(runner, scene, "out.txt", "a.dat")
    assert r.returncode == 0, r.stderr
    assert set(members) == {"out.txt", "a.dat"} and not man["refused"] and not man["missing"]
    assert man["bytes"] == len(b"honest output\n") + 1000


def test_size_cap_counts_every_file(runner, scene):
    r, man, members = _collect(runner, scene, "a.dat", "b.dat", "out.txt", max_bytes=5500)
    assert set(members) == {"a.dat", "out.txt"}          # b.dat (5000) would pass the cap
    assert [x["name"] for x in man["refused"]] == ["b.dat"] and r.returncode == 1


def test_bad_output_names_are_usage_errors(runner, scene):
    for bad in ("/etc/shadow", "../sibling-job/proxy", "results/../../x", ""):
        outdir = runner.mkdir(os.path.join(scene["root"], f"bad-{len(os.listdir(scene['root']))}"), 0o700)
        r = runner.collect(scene["job"], os.path.join(outdir, "o.tar"), os.path.join(outdir, "m.json"), bad)
        assert r.returncode == 1 and r.stderr.startswith(b"glexec-job collect: refused:"), (bad, r.stderr)
        assert r.stderr.count(b"\n") == 1
