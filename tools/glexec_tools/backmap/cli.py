"""glexec-backmap: who held a uid (account, pid) at a time, from the audit records.

Runs as: root only (the DN history is admin-only).  Answers come from an SQLite index that
is brought up to date with the audit files before every query; semantics in
``glexec_tools.backmap.plan``, storage in ``glexec_tools.backmap.apply``.

Configuration: glexec.yaml (``front``: --config or this installation's file), its optional
``backmap:`` section (``plan.parse_section``).

Exit: 0 the answer is known; 1 unknown or none; 2 usage, configuration or permission
error; 70 an unexpected error (front.EXIT_INTERNAL).
"""
import os
import sys
import time
import unicodedata

from glexec_tools import front

PROG = "glexec-backmap"
EXIT_KNOWN, EXIT_NOT_KNOWN, EXIT_USAGE = 0, 1, 2
_ESCAPED_CATEGORIES = ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")   # controls, bidi, separators


USAGE = """\
usage: glexec-backmap (--uid UID | --account NAME | --pid PID | --dn DN)
                      [--at T | --from T1 --to T2] [--host HOST] [--json]
                      [--audit-file PATH]... [--config PATH] [--index PATH]
                      [--gridmapdir PATH]
                      [--reindex] [--no-refresh]
                      [--site] [--site-db CONNINFO] [--ingest] [--timeline FILE]

Who held a uid, account or process at a time (from the glexec audit records).

  --uid UID          the local uid
  --account NAME     the local account name
  --pid PID          a payload process: live (/proc) or from end records
  --dn DN            reverse: every account and interval of this DN (exact)
  --at T             instant, ISO 8601 UTC (2026-11-21T22:33:04Z) or 'now'
  --from T1 --to T2  a range (both ends inclusive)
  --host HOST        only this host's records
  --json             machine-readable output (one JSON object)
  --audit-file PATH  audit file (its rotated .N/.N.gz siblings are read too); repeatable
                     (default: backmap.audit_files, else audit.file)
  --config PATH      glexec.yaml (default: {config})
  --index PATH       index file (default: backmap.index, else <state_dir>/backmap.sqlite)
  --gridmapdir PATH  pool leases seen there are evidence too (default: mapping.gridmapdir)
  --reindex          rebuild the index from the audit files
  --no-refresh       answer from the index as it is
  --site             answer from the site-wide index in PostgreSQL (backmap.site; the
                     default with backmap.answer_from: site), fed by the records every
                     node ships through rsyslog (packaging/rsyslog/)
  --site-db CONNINFO the site index's libpq connection string (implies --site)
  --ingest           move the records the collector staged into the site index (every
                     --site query does this first, unless --no-refresh); alone: only that
  --timeline FILE    also draw who held it over the period as a self-contained SVG
                     ('-': to standard output instead of the answer)

Exit status: 0 known, 1 unknown or none, 2 usage, configuration or permission error,
70 internal error.
"""

# option -> (attribute, kind).  A hand-made parser instead of argparse: argparse imports
# re, enum and gettext, 11 ms of a query's ~20 ms budget (bench/backmap.py).
_OPTIONS = {"--uid": ("uid", int), "--account": ("account", str), "--pid": ("pid", int),
            "--dn": ("dn", str), "--at": ("at", str), "--from": ("t_from", str),
            "--to": ("t_to", str), "--host": ("host", str), "--audit-file": ("audit_file", list),
            "--config": ("config", str), "--index": ("index", str), "--gridmapdir": ("gridmapdir", str),
            "--json": ("json", bool), "--reindex": ("reindex", bool), "--no-refresh": ("no_refresh", bool),
            "--site": ("site", bool), "--site-db": ("site_db", str), "--ingest": ("ingest", bool),
            "--timeline": ("timeline", str)}
_ONE_QUESTION = ("--uid", "--account", "--pid", "--dn")


class Options:
    def __init__(self):
        for attr, kind in _OPTIONS.values():
            setattr(self, attr, [] if kind is list else False if kind is bool else None)


class HelpRequested(Exception):
    pass


def parse_options(argv):
    """argv (without the program name) -> Options.  UsageError for anything not in
    ``USAGE``: unknown options, a missing or non-numeric value, an option given twice, more
    than one question.  ``--opt value`` and ``--opt=value`` both work; no abbreviations."""
    opts, seen = Options(), set()
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg in ("-h", "--help"):
            raise HelpRequested()
        name, eq, value = arg.partition("=")
        if name not in _OPTIONS:
            raise UsageError(f"unknown argument {escape(arg)} (see --help)")
        attr, kind = _OPTIONS[name]
        if kind is bool:
            if eq:
                raise UsageError(f"{name} takes no value")
            value = True
        elif not eq:
            if not args:
                raise UsageError(f"{name} needs a value")
            value = args.pop(0)
        if kind is int:
            if not (value.isascii() and value.isdigit()) or len(value) > 10:
                raise UsageError(f"{name}: not a number: {escape(value)}")
            value = int(value)
        if kind is list:
            opts.audit_file.append(value)
            continue
        if name in seen:
            raise UsageError(f"{name} given twice")
        seen.add(name)
        setattr(opts, attr, value)
    if len(seen.intersection(_ONE_QUESTION)) > 1:
        raise UsageError("give only one of " + ", ".join(_ONE_QUESTION))
    return opts


class UsageError(Exception):
    pass


def parse_instant(text, now_us):
    from glexec_tools.backmap.plan import parse_time
    if text == "now":
        return now_us
    t = parse_time(text)
    if t is None:
        raise UsageError(f"not an ISO 8601 time: {escape(text)!s} (e.g. 2026-11-21T22:33:04Z)")
    return t


def escape(value):
    """One printable line: control characters, bidi overrides, separators, surrogates and
    backslashes written as escapes, so a hostile DN cannot drive the admin's terminal."""
    if value is None:
        return "-"
    s = str(value)
    out = []
    for ch in s:
        o = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif 0x20 <= o < 0x7F:
            out.append(ch)
        elif o < 0x80 or unicodedata.category(ch) in _ESCAPED_CATEGORIES:
            out.append("\\x%02x" % o if o < 0x100 else "\\u%04x" % o if o < 0x10000 else "\\U%08x" % o)
        else:
            out.append(ch)
    return "".join(out)


def audit_files_and_index(args):
    """The audit files, index path, gridmapdir (or None), the site index's conninfo
    ("" = answer from the local index) and the lease database's conninfo file ("" = none;
    the site index's second source): from the options, else from glexec.yaml's
    ``backmap:`` section and its engine sections.  With both --audit-file and --index the
    configuration is not read; with --site-db only for the lease database, and only if
    there is one (--config, or the installation's file exists).  A file without a
    ``backmap:`` section is read through the engine's cached configuration (no YAML
    import: a query stays ~20 ms)."""
    for name, value in (("--index", args.index), ("--gridmapdir", args.gridmapdir)):
        if value is not None and not value.startswith("/"):
            raise UsageError(f"{name} must be an absolute path")
    files, index = list(args.audit_file), args.index
    if args.site_db:
        path = front.config_path(args.config)
        lease_db = _config(path).lease_db if args.config or os.path.exists(path) else ""
        return files, index, args.gridmapdir, args.site_db, lease_db
    if files and index and not args.site:
        return files, index, args.gridmapdir, "", ""
    cfg = _config(front.config_path(args.config))
    site = ""
    if args.site or args.ingest or getattr(cfg, "answer_from", "local") == "site":
        site = getattr(cfg, "site", "")
        if not site:
            raise UsageError("no site index configured: set backmap.site in glexec.yaml "
                             "or give --site-db")
    return (files or list(cfg.audit_files), index or cfg.index,
            args.gridmapdir or cfg.gridmapdir or None, site, cfg.lease_db)


def _config(path):
    """glexec.yaml at ``path`` -> plan.BackmapConfig."""
    from glexec_tools.backmap import plan
    from glexec_tools.common.section import present
    text = front.read_config(path)
    if present(text, "backmap"):
        return plan.parse_section(text, path)
    from glexec_py.effects import configfile
    prefix = path.rsplit("/etc/glexec-py/", 1)[0] if "/etc/glexec-py/" in path else ""
    state_guess = (prefix or "") + "/var/lib/glexec-py"
    return plan.defaults(configfile.load(path, state_guess if os.path.isdir(state_guess) else ""))


def ask(index, args, now_us):
    """The question the options pose, answered by the index."""
    t_at = parse_instant(args.at, now_us) if args.at else None
    t1 = parse_instant(args.t_from, now_us) if args.t_from else None
    t2 = parse_instant(args.t_to, now_us) if args.t_to else None
    if t_at is not None and (t1 is not None or t2 is not None):
        raise UsageError("give --at or --from/--to, not both")
    if (t1 is None) != (t2 is None):
        raise UsageError("--from and --to go together")
    if t1 is not None and t1 > t2:
        raise UsageError("--from is after --to")
    if args.dn is not None:
        return index.by_dn(args.dn)
    if args.pid is not None:
        return ask_pid(index, args.pid, t_at, now_us)
    if t_at is None and t1 is None:
        raise UsageError("give --at T or --from T1 --to T2")
    lo, hi = (t_at, t_at) if t_at is not None else (t1, t2)
    if args.uid is not None:
        if lo == hi:
            return index.uid_at(args.uid, lo, args.host)
        return index.uid_between(args.uid, lo, hi, args.host)
    if args.account is not None:
        return index.account_between(args.account, lo, hi, args.host)
    return index.all_between(lo, hi, args.host)


def ask_pid(index, pid, t_at, now_us):
    """A live process: its uid and start time from /proc, answered at its start; a process
    that is gone: the end records that name it as the payload."""
    live = read_proc(pid)
    if live is None or t_at is not None:
        return index.by_payload_pid(pid, t_at)
    uid, started = live
    answer = index.uid_between(uid, started, started + 1_000_000, os.uname().nodename)
    answer.question = {"pid": pid, "uid": uid, "process_started": _fmt(started), "live": True}
    identities = {m.identity for m in answer.matches}
    if answer.status == "unknown" and not answer.flags and len(identities) == 1 and answer.matches \
            and all(m.start is not None and m.start <= started + 1_000_000 for m in answer.matches):
        # The live process proves the holder was there at its start: an open grant that is
        # the only candidate around that second is no longer in doubt.
        answer.status = "known"
        answer.why = "live process started while only this identity held the uid (end not recorded yet)"
    return answer


def settle_now(answer, now_us):
    """``--at now``: an open grant whose payload is visibly still running on this host
    answers the holder (``glexec_tools.backmap.plan.settle_running``)."""
    from glexec_tools.backmap.plan import settle_running
    uids = {m.uid for m in answer.matches}
    if answer.status != "unknown" or len(uids) != 1:
        return answer
    return settle_running(answer, now_us, os.uname().nodename, live_starts(uids.pop()))


def live_starts(uid):
    """Runs as: root.  Start times (µs, ±1 s) of the live processes whose real uid is ``uid``."""
    starts = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            if os.stat(f"/proc/{name}").st_uid != uid:
                continue
        except OSError:
            continue
        live = read_proc(int(name))
        if live is not None and live[0] == uid:
            starts.append(live[1])
    return starts


def _fmt(us):
    from glexec_tools.backmap.plan import format_time
    return format_time(us)


def read_proc(pid):
    """Runs as: root.  (real uid, start time in µs, ±1 s: the boot time is whole seconds)
    of a live process, or None."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            status = f.read()
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        with open("/proc/stat", "rb") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith(b"btime "))
    except (OSError, StopIteration, ValueError):
        return None
    uid = next((int(line.split()[1]) for line in status.splitlines() if line.startswith(b"Uid:")), None)
    fields = stat.rpartition(b")")[2].split()     # comm may hold ')' or spaces
    ticks = int(fields[19])                         # field 22: starttime
    start_us = boot * 1_000_000 + ticks * 1_000_000 // os.sysconf("SC_CLK_TCK")
    return None if uid is None else (uid, start_us)


# -- output -----------------------------------------------------------------------------

def render_text(answer, index):
    d = answer.as_dict()
    q = " ".join(f"{k}={escape(v)}" for k, v in d["question"].items() if v is not None)
    lines = [f"{answer.status.upper()}: {escape(answer.why)}", f"  question: {q}",
             f"  history:  {d['history']['from']} .. {d['history']['to']}"]
    for m in d["matches"]:
        c = m["caller"] or {}
        lines += [f"  - {escape(m['account'])} (uid {m['uid']}) on {escape(m['host'])}"
                  f"  {m['start'] or 'start unknown'} .. {m['end'] or 'end unknown'}"
                  + ("" if m["certain"] else "  [uncertain: " + escape(m["why"]) + "]"),
                  f"      dn:     {escape(m['dn'])}",
                  f"      issuer: {escape(m['issuer'])}"
                  + (f"\n      fqans:  {escape(', '.join(m['fqans']))}" if m["fqans"] else ""),
                  f"      pilot:  {escape(c.get('user'))} (uid {c.get('uid')}, pid {c.get('pid')})"
                  f"  engine pid {m['engine_pid']}  payload pid {m['payload_pid'] or '-'}"
                  f"  status {m['status'] if m['status'] is not None else '-'}"]
        lines += [f"      record: {escape(ref)}" for ref in evidence_text(m["evidence"], index)]
    for f in d["flags"]:
        lines.append(f"  ! {f['kind']}: {escape(f['why'])} ({f['from']} .. {f['to']})")
        lines += [f"      record: {escape(ref)}" for ref in evidence_text([f["evidence"]] if f["evidence"] else [], index)]
    return "\n".join(lines) + "\n"


def evidence_text(refs, index):
    out = []
    for source, offset, line in refs:
        path, fp = index.describe_source(source)
        out.append(f"{path}:{line} (byte {offset}, first-line sha256 {fp[:16] if fp else '?'})")
    return out


def render_json(answer, index):
    from glexec_py.core.audit import encode     # the engine's JSON writer: no json/re import
    d = answer.as_dict()
    for item in d["matches"] + d["flags"]:
        refs = item["evidence"] if item in d["matches"] else ([item["evidence"]] if item["evidence"] else [])
        item["records"] = [dict(zip(("file", "sha256_first_line", "offset", "line"),
                                    (*index.describe_source(s), o, n))) for s, o, n in refs]
    return encode(d).decode("ascii")


def _main(argv):
    try:
        args = parse_options(argv)
    except HelpRequested:
        sys.stdout.write(USAGE.replace("{config}", front.config_path()))
        return 0
    except UsageError as e:
        raise front.ToolError(str(e)) from None
    if os.geteuid() != 0:
        raise front.ToolError("permission denied: root only (the DN history is admin-only)")
    os.umask(0o077)
    try:
        files, index_path, gridmapdir, site, lease_db = audit_files_and_index(args)
        if site:
            return _site_main(args, site, lease_db)
        if args.ingest:
            raise UsageError("--ingest feeds the site index: give --site or --site-db")
        from glexec_tools.backmap.apply import Index
        index = Index(index_path)
        try:
            if not args.no_refresh or args.reindex:
                index.refresh(files, rebuild=args.reindex, gridmapdir=gridmapdir,
                              progress=front.Progress(PROG))
            if args.reindex and not _has_question(args):
                return 0
            return _answer(index, args)
        finally:
            index.close()
    except UsageError as e:
        raise front.ToolError(str(e)) from None


def _has_question(args):
    return any(v is not None for v in (args.uid, args.account, args.pid, args.dn, args.at, args.t_from))


def _answer(index, args, settle=True):
    now = int(time.time() * 1_000_000)
    answer = ask(index, args, now)
    if settle and args.at == "now" and args.pid is None and args.dn is None \
            and not args.no_refresh and index.read_to_end():
        answer = settle_now(answer, now)
    if args.timeline:
        from glexec_tools.backmap.timeline import render_svg
        svg = render_svg(answer, _period(args, now))
        if args.timeline == "-":
            sys.stdout.write(svg)
        else:
            fd = os.open(args.timeline, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(svg)
    if args.timeline != "-":
        sys.stdout.write(render_json(answer, index) if args.json else render_text(answer, index))
    return EXIT_KNOWN if answer.status == "known" else EXIT_NOT_KNOWN


def _period(args, now):
    """The timeline's period: --from/--to, --at, else the span of what matched."""
    if args.t_from:
        return parse_instant(args.t_from, now), parse_instant(args.t_to, now)
    if args.at:
        t = parse_instant(args.at, now)
        return t, t
    return None


def _site_main(args, conninfo, lease_db):
    """The question answered from the site-wide index (``backmap.site``), its second
    source the lease database (``lease_db``: its conninfo file), reread with an ingest or
    when the last read is older than ``site.LEASE_SCAN_MAX_AGE``."""
    from glexec_tools.backmap import site
    try:
        index = site.SiteIndex(conninfo)
        try:
            ingested = args.ingest or (not args.no_refresh and index.pending())
            if ingested:
                stats = index.ingest(progress=front.Progress(PROG))
            if lease_db and (args.ingest or not args.no_refresh) and (
                    ingested or index.lease_scan_due(int(time.time() * 1_000_000))):
                from glexec_py.effects.pgleases import read_conninfo
                index.refresh_leases(read_conninfo(lease_db))
            if args.ingest and not _has_question(args):
                sys.stdout.write("ingested: %(received)d received, %(stored)d new, "
                                 "%(duplicates)d duplicates, %(rejected)d refused\n" % stats)
                return 0
            return _answer(index, args, settle=False)
        finally:
            index.close()
    except site.database_error() as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise front.ToolError(f"site index: {first}") from None


def main(argv=None):
    return front.run(PROG, _main, argv)
