"""The payload plan's C decoder (csrc/plan_decode.c) outside the executor: linked with
tests/native/plan_harness.c (ASan+UBSan or UBSan only) and run once per input.  Shared by
tests/native/test_plan_decode.py and fuzz/fuzz_plan.py.

``PlanHarness.decode(data)`` returns the Plan the C decoded (rebuilt from the harness's
dump), or None if it refused the bytes; any other outcome (a sanitizer report, a crash,
ENOMEM) raises.  The oracle is glexec_py.core.plan.decode: the two must agree on every input.
Nothing here is installed or shipped.
"""
import hashlib
import os
import subprocess
from pathlib import Path

from glexec_py.core import plan as core_plan

REPO = Path(__file__).resolve().parents[2]
CSRC = REPO / "csrc"
SOURCES = [REPO / "tests" / "native" / "plan_harness.c", CSRC / "plan_decode.c"]
REFUSED = 3


def _build(out_dir, asan):
    flags = ["-fsanitize=" + ("address,undefined" if asan else "undefined"), "-fno-sanitize-recover=all",
             "-D_FORTIFY_SOURCE=2"]
    h = hashlib.sha256(" ".join(flags).encode())
    for s in SOURCES + [CSRC / "native.h"]:
        h.update(s.read_bytes())
    out = Path(out_dir) / f"plan_harness-{h.hexdigest()[:16]}"
    if not out.exists():
        tmp = out.with_suffix(".tmp%d" % os.getpid())
        subprocess.run(["gcc", "-O1", "-g", "-Wall", "-Wextra", "-Werror", "-I", str(CSRC), *flags, "-o", str(tmp),
                        *map(str, SOURCES)], check=True)
        os.replace(tmp, out)
    return out


def plan_from_dump(text):
    """The harness's dump as a core.plan.Plan (argv/env/groups/limits in the C's order)."""
    f = {"groups": [], "argv": [], "env": [], "rlimits": []}
    for line in text.decode("ascii").splitlines():
        key, _, value = line.partition(" ")
        if key in ("path", "cwd", "argv", "env"):
            v = bytes.fromhex(value)
            f[key].append(v) if key in ("argv", "env") else f.__setitem__(key, v)
        elif key == "groups":
            f["groups"] = [int(g) for g in value.split()]
        elif key == "rlimit":
            res, soft, hard = (int(x) for x in value.split())
            f["rlimits"].append((res, tuple(-1 if v == core_plan.RLIM_INFINITY else v for v in (soft, hard))))
        else:
            f[key] = int(value)
    flags = f.pop("flags")
    forward = f.pop("forward")
    return core_plan.Plan(
        path=f["path"], cwd=f["cwd"], argv=f["argv"], env=f["env"], uid=f["uid"], gid=f["gid"], groups=f["groups"],
        umask=f["umask"], rlimits=dict(f["rlimits"]), switch_identity=flags & core_plan.SWITCH,
        no_new_privs=flags & core_plan.NO_NEW_PRIVS, tty_guard=flags & core_plan.TTY_GUARD,
        linger=flags & core_plan.LINGER, pdeathsig=f["pdeathsig"], caller_ruid=f["caller_ruid"],
        forward_signals=[n + 1 for n in range(64) if forward >> n & 1]), f


class PlanHarness:
    def __init__(self, out_dir, asan=True):
        self.path = _build(out_dir, asan)

    def run(self, data):
        """(exit code, stdout, stderr) of one run on `data`."""
        p = subprocess.run([str(self.path)], input=bytes(data), capture_output=True,
                           env={"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0"})
        return p.returncode, p.stdout, p.stderr

    def decode(self, data):
        code, out, err = self.run(data)
        if code == REFUSED and not out:
            return None
        if code != 0:
            raise AssertionError(f"plan harness exit {code}: {err.decode(errors='replace')[-2000:]}")
        plan, fields = plan_from_dump(out)
        # the C keeps the wire order: it must already be the canonical one
        if fields["groups"] != sorted(set(fields["groups"])) or fields["rlimits"] != sorted(fields["rlimits"]):
            raise AssertionError("groups or limits out of order after decoding")
        return plan


# --- plans for hypothesis and the fuzz target ------------------------------------------

def plans(st):
    """A hypothesis strategy of valid Plans (st = hypothesis.strategies): every field over
    its range, limits at infinity, ids at the edges, bytes of every value but NUL."""
    text = st.binary(max_size=40).map(lambda b: b.replace(b"\0", b"\1"))
    absolute = text.map(lambda b: (b"/" + b)[:core_plan.MAX_PATH])
    ids = st.integers(0, core_plan.MAX_ID)
    limit = st.one_of(st.just(-1), st.integers(0, 2**64 - 2))
    pair = st.tuples(limit, limit).map(lambda p: tuple(sorted(p, key=lambda v: 2**64 if v == -1 else v)))
    signals = st.integers(1, 64).filter(lambda s: s not in (9, 17, 19))

    @st.composite
    def plan(draw):
        linger = draw(st.booleans())
        return core_plan.Plan(
            path=draw(absolute), argv=draw(st.lists(text, min_size=1, max_size=6)),
            env=draw(st.lists(text, max_size=6)), uid=draw(ids), gid=draw(ids),
            groups=draw(st.lists(ids, max_size=8)), cwd=draw(st.one_of(st.just(b""), absolute)),
            umask=draw(st.integers(0, 0o777)), rlimits=draw(st.dictionaries(st.integers(0, 15), pair, max_size=16)),
            switch_identity=draw(st.booleans()), no_new_privs=draw(st.booleans()), tty_guard=draw(st.booleans()),
            linger=linger, pdeathsig=draw(st.integers(0, 64)) if linger else 0,
            forward_signals=draw(st.lists(signals, max_size=6)) if linger else (), caller_ruid=draw(ids))
    return plan()
