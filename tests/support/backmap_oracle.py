"""The oracle for the back-map's record parser (``glexec_tools.backmap.plan.parse_record``), shared by
fuzz/fuzz_backmap.py and tests/backmap/test_record_parser.py: any line gives an Event
whose every field is what the line's JSON says, or a Damaged (a clean rejection) -- never a
record the line does not hold."""
import json

from glexec_tools.backmap import plan as bm


def _json(line):
    try:
        rec = json.loads(line)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return rec if type(rec) is dict else None


def problems(line):
    ref = bm.Ref(1, 0, 1)
    item = bm.parse_record(line, ref)
    if type(item) is bm.Damaged:
        out = []
        if item.uid is not None and b'"uid"' not in line:
            out.append(f"uid {item.uid} salvaged from a line without a uid: {line!r}")
        return out
    if type(item) is not bm.Event:
        return [f"parse_record returned {type(item).__name__}"]
    rec = _json(line)
    if rec is None:
        return [f"an Event from a line that is not a JSON object: {line!r}"]
    out = []

    def same(what, got, want):
        if got != want or type(got) is not type(want):
            out.append(f"{what}: parsed {got!r}, the line says {want!r}")

    same("time", item.time, bm.parse_time(rec.get("time")))
    same("event", item.kind, rec.get("event"))
    same("host", item.host, rec.get("host"))
    if item.ref != ref:
        out.append("ref changed")
    if item.kind in ("grant", "end"):
        same("uid", item.uid, rec.get("uid"))
        same("engine pid", item.engine_pid, rec.get("pid"))
        if type(rec.get("dn")) is str:
            same("dn", item.identity and item.identity.dn, rec["dn"])
        elif item.identity is not None:
            out.append("identity without a dn string")
        if type(rec.get("account")) is str:
            same("account", item.account, rec["account"])
        elif item.account is not None:
            out.append("account without an account string")
    return out
