"""The rules by which Gratia's gLExec probe reads syslog lines, restated from
retzkek/gratia-probe:glexec/gratia/glexec/gratia_glexec_parser.py (``parse_line_v3`` and
``update_element``; read for the facts, not copied):

* a line is ``<Mon dd HH:MM:SS> <host> ... glexec.mon[<monitor pid>#<glexec pid>]: <message>``;
  the date is what precedes the last space before ``glexec.mon[``, parsed with
  ``%b %d %H:%M:%S``; the two pids (integers) are the record's key; the message is what
  follows the first ``:`` after ``glexec.mon[``, stripped;
* the message's first seven characters select the field:
  ``Started``: start time, and the job uid = the integer after the last space;
  ``Used DN``: DN = message[10:-1] (after ``Used DN: "``, before the final ``"``);
  ``Used VO``: VO = message[10:] up to the next ``"``;
  ``Used FQ``: FQAN = message[12:-1] (the last one read wins: the parser reads backwards,
  so in file order the first);
  ``Termina``: end time; system CPU = integer after the last space; user CPU = integer
  between the space before ``" system "`` and it.
A line it cannot read raises (the probe skips it).
"""
import time


def parse_line(line):
    at = line.find("glexec.mon[")
    if at < 0:
        raise ValueError("no glexec.mon[")
    head = line[:at].strip()
    date = head[:head.rfind(" ")].strip()
    stamp = time.strptime("2000 " + date, "%Y %b %d %H:%M:%S")
    end = line.find("]:", at)
    mon, gl = line[at + len("glexec.mon["):end].split("#")
    rest = line[at:].strip()
    message = rest[rest.find(":") + 1:].strip()
    return stamp, (int(mon), int(gl)), message


def update(record, stamp, message):
    kind = message[:7]
    if kind == "Started":
        record["start"] = stamp
        record["jobuid"] = int(message[message.rfind(" ") + 1:])
    elif kind == "Used DN":
        record["DN"] = message[10:-1]
    elif kind == "Used VO":
        record["VO"] = message[10:].split('"', 1)[0]
    elif kind == "Used FQ":
        record.setdefault("FQAN", message[12:-1])
    elif kind == "Termina":
        record["end"] = stamp
        sys_at = message.rfind(" ") + 1
        record["syscpu"] = int(message[sys_at:])
        user_at = message.rfind(" ", 0, sys_at - 9) + 1
        record["usercpu"] = int(message[user_at:sys_at - 8])
    return record


def parse(lines):
    """{(monitor pid, glexec pid): record} for the lines (in file order)."""
    out = {}
    for line in lines:
        stamp, key, message = parse_line(line)
        update(out.setdefault(key, {}), stamp, message)
    return out
