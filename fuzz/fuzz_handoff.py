"""atheris target: glexec_py.core.handoff (shim -> engine hand-off blob).

Oracles (beyond "no crash"):
  * parse raises nothing but SystemFault (reason "handoff");
  * an accepted blob round-trips: parse(build(f)) == f and build is a fixed point
    (build(parse(build(f))) == build(f));
  * nothing extra was accepted: len(build(f)) == len(blob) (the parser is strict: every
    accepted byte belongs to a record build() reproduces, in whatever order it came);
  * the values obey the documented limits (no NUL in argv/env/cwd, ids 0..2**32-2, pid >= 1,
    umask <= 0o777, all 16 rlimits with soft <= hard).
"""
import sys

import atheris

import _common
from _common import check

with atheris.instrument_imports():
    from glexec_py.core import handoff
    from glexec_py.errors import SystemFault


def TestOneInput(data):
    ok, f = _common.only(SystemFault, handoff.parse, data)
    if not ok:
        check(f.reason == "handoff", f"unexpected SystemFault reason {f.reason!r}")
        return
    check(f.argv and all(b"\0" not in a for a in f.argv + f.env + [f.cwd]), "NUL or empty argv accepted")
    check(all(0 <= v <= 0xFFFFFFFE for v in (f.ruid, f.euid, f.suid, f.rgid, f.egid, f.sgid)
              + tuple(f.groups)), "id out of range accepted")
    check(f.pid >= 1 and 0 <= f.umask <= 0o777 and type(f.privileged) is bool, "bad pid/umask/privileged")
    check(sorted(f.rlimits) == list(range(handoff.RLIM_NLIMITS)), "rlimit set incomplete")
    for s, h in f.rlimits.values():
        check(h == -1 or (s != -1 and s <= h), f"soft > hard accepted: {(s, h)}")
    b = handoff.build(f)
    check(len(b) == len(data), f"accepted {len(data)} bytes but they rebuild to {len(b)}")
    f2 = handoff.parse(b)
    check(f2 == f, "parse(build(f)) != f")
    check(handoff.build(f2) == b, "build not a fixed point")


def seeds():
    F = handoff.CallerFacts
    rl = {r: (-1, -1) for r in range(16)}
    rl[4], rl[7] = (0, -1), (1024, 4096)
    a = F(argv=[b"glexec", b"/bin/id", b"-a"], env=[b"PATH=/bin", b"NOEQ", b"X=\xff"], ruid=1000,
          euid=0, suid=0, rgid=1000, egid=1000, sgid=1000, pid=4242, ppid=1, sid=4000, pgid=4242,
          umask=0o022, privileged=True, groups=(1000, 27), rlimits=rl, cwd=b"/home/pilot")
    b = F(argv=[b"x"], env=[], ruid=0, euid=0, suid=0, rgid=0, egid=0, sgid=0, pid=1, ppid=0,
          sid=0, pgid=0, umask=0o777, privileged=False, groups=(), rlimits=dict(rl), cwd=b"/")
    return [handoff.build(a), handoff.build(b), handoff.MAGIC + b"Z\0\0\0\0"]


if __name__ == "__main__":
    _common.seed(sys.argv, seeds)
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
