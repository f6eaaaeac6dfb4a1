"""The payload glexec-job's end-to-end tests ship in their input sandbox (tests/privileged/
test_e2e_job.py, tests/batch/test_slurm_job.py): ``python3 payload.py MODE``.  It prints
what it sees (uid, cwd, environment, whether it can read its proxy and the pilot's) as one
JSON line on stdout; MODE adds a daemon (setsid + double fork), a proxy renewal watch, an
exit code or signal, or a limit to run into.  Its outputs include hostile symlinks."""
import io
import tarfile

PAYLOAD = r'''import hashlib, json, os, subprocess, sys, time
mode = sys.argv[1]
def try_read(p):
    try:
        with open(p, "rb") as f:
            return "READ:" + hashlib.sha256(f.read()).hexdigest()
    except OSError as e:
        return e.strerror
seen = {"uid": os.getuid(), "cwd": os.getcwd(), "env": dict(os.environ),
        "pilot_proxy": try_read(os.environ.get("PILOT_PROXY", "/nonexistent")),
        "input": open("data/in.txt").read(), "proxy": try_read(os.environ["X509_USER_PROXY"])}
if mode in ("daemon", "stubborn", "renew", "sleep", "slow"):
    # setsid + double fork: the grandchild is in its own session, orphaned at once
    trap = "trap '' TERM; " if mode == "stubborn" else ""
    subprocess.run(["setsid", "/bin/sh", "-c", trap + "/bin/sh -c \"" + trap + "exec sleep 300\" & echo $! > $TMPDIR/d.pid"],
                   check=True)
    time.sleep(0.3)
    seen["daemon"] = int(open(os.environ["TMPDIR"] + "/d.pid").read())
    os.kill(seen["daemon"], 0)
open("result.txt", "w").write("result of " + os.environ["JOBNAME"] + "\n")
os.makedirs("res/sub")
open("res/sub/r.dat", "wb").write(b"\x00\x01" * 1000)
os.symlink(os.environ.get("PILOT_PROXY", "/etc/shadow"), "leak.txt")   # hostile output
os.symlink("/etc/shadow", "res/shadow")
if mode == "renew":
    p = os.environ["X509_USER_PROXY"]
    first, seen_all, end = open(p, "rb").read(), set(), time.time() + 60
    print(json.dumps({"ready": True}), flush=True)
    while time.time() < end:
        data = open(p, "rb").read()
        seen_all.add(hashlib.sha256(data).hexdigest())
        if data != first:
            break
    seen["proxies"] = sorted(seen_all)
print(json.dumps(seen), flush=True)
if mode == "slow":
    time.sleep(4)
if mode == "burn":
    while True:
        pass
if mode == "spew":
    while True:
        sys.stdout.write("x" * 65536)
if mode == "fill":
    with open("big", "wb") as f:
        f.write(b"\1" * (20 << 20))
    time.sleep(300)
if mode in ("sleep", "stubborn"):
    sys.stdout.flush()
    time.sleep(300)
if mode.startswith("exit"):
    sys.exit(int(mode[4:]))
if mode.startswith("sig"):
    os.kill(os.getpid(), int(mode[3:]))
'''


def tar_gz(entries):
    """A .tar.gz of ``{name: bytes}`` (regular files, 0644)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()
