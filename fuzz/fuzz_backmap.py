"""atheris target: glexec_tools.backmap.plan.parse_record (the back-map's audit line parser)
and the history built from parsed lines.

Input: byte 0 picks the mode: 0 = raw bytes as lines; 1 = a record made from the input
(FuzzedDataProvider), written by the engine's own encoder (core.audit.encode), then
possibly cut or with one byte flipped.

Oracles (beyond "no crash"):
  * parse_record never raises; it returns an Event whose time, event, host, uid, engine
    pid, DN and account are exactly what the line's JSON says, or a Damaged (no record the
    line does not hold; a salvaged uid only from a line that has one)
    (tests/support/backmap_oracle.py);
  * mode 1 without damage: the record comes back (round trip through the encoder);
  * build_history over the lines never raises, and every occupation's evidence points at
    a line of the input.
"""
import sys

import atheris

import _common
from _common import check

with atheris.instrument_imports():
    from glexec_tools.backmap import plan as backmap
from glexec_py.core.audit import encode
from tests.support.backmap_oracle import problems

KINDS = ("grant", "end", "refuse", "boot", "grant ", "")


def _record(fdp):
    t = 1_795_300_000_000_000 + fdp.ConsumeIntInRange(-10 ** 12, 10 ** 12)
    rec = {"time": backmap.format_time(t), "event": KINDS[fdp.ConsumeIntInRange(0, 5)],
           "host": fdp.ConsumeUnicodeNoSurrogates(8) or "wn1",
           "pid": fdp.ConsumeIntInRange(1, 1 << 22)}
    if fdp.ConsumeBool():
        rec["dn"] = fdp.ConsumeUnicode(24)
        rec["account"] = fdp.ConsumeUnicodeNoSurrogates(8)
        rec["uid"] = fdp.ConsumeIntInRange(0, (1 << 32) - 2)
        rec["gid"] = 47000
    return rec, t


def TestOneInput(data):
    if not data:
        return
    if data[0] % 2 == 0:
        lines = data[1:].split(b"\n")[:16]
    else:
        fdp = atheris.FuzzedDataProvider(data[1:])
        rec, t = _record(fdp)
        line = encode(rec)
        clean = True
        cut = fdp.ConsumeIntInRange(0, len(line) + 8)
        if cut < len(line):
            line, clean = line[:cut], False
        flip = fdp.ConsumeIntInRange(0, len(line) + 8)
        if flip < len(line):
            line = line[:flip] + bytes([line[flip] ^ fdp.ConsumeIntInRange(1, 255)]) + line[flip + 1:]
            clean = False
        if clean:
            ev = backmap.parse_record(line, backmap.Ref(1, 0, 1))
            if rec["event"] in ("grant", "end") and "uid" not in rec:
                check(type(ev) is backmap.Damaged, "grant/end without uid accepted")
            else:
                check(type(ev) is backmap.Event and ev.time == t and ev.host == rec["host"],
                      f"engine record not read back: {line!r}")
        lines = [line]
    for line in lines:
        bad = problems(line)
        check(not bad, "; ".join(bad))
    occs, flags, coverage = backmap.build_history({"s": [ln + b"\n" for ln in lines]})
    for o in occs:
        for ref in o.evidence:
            check(1 <= ref.line <= len(lines), f"evidence {ref} outside the input")


def seeds():
    import os
    sys.path.insert(0, os.path.join(_common.REPO, "tests"))
    from tests.backmap.backmap_helpers import S, T0, record
    return [b"\x00" + record("grant", T0) + record("end", T0 + S) + record("refuse", T0 + 2 * S),
            b"\x00" + record("grant", T0, dn="/CN=Eve\x1b\n\u202e")[:-30] + b"\n{}\n[1]\n",
            b"\x01" + bytes(range(64))]


if __name__ == "__main__":
    _common.seed(sys.argv, seeds)
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
