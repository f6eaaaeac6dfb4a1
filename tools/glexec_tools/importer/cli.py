"""glexec-import: translate a gLExec site's glexec.conf, lcmaps.db and lcas.db into one
glexec.yaml, with a report of what was translated and what was not (file:line, why).

Exit: 0 translated cleanly; 1 translated with warnings, or not translated (the report
says why, nothing is written); 2 usage error or an input file that cannot be read; 70 an
unexpected error.  Errors are one line, ``glexec-import: <what>`` (the shared front);
never a traceback."""
import os
import sys

from glexec_tools import front
from glexec_tools.importer import plan as P

PROG = "glexec-import"
MAX_INPUT = 4 << 20          # bytes per configuration file read
MAX_REFERENCED = 64 << 20    # bytes per grid-mapfile or ban list checked


UsageError = front.ToolError       # exit 2, one line


def _parser():
    # not the common options: this tool reads no glexec.yaml, it writes one
    p = front.argument_parser(PROG, "Translate gLExec's glexec.conf + lcmaps.db + lcas.db "
                              "into a glexec-py glexec.yaml and report what could not be "
                              "translated.", None, changes=False, common=False)
    p.add_argument("--glexec-conf", metavar="FILE", default=P.DEFAULT_GLEXEC_CONF,
                   help=f"gLExec's configuration (default: {P.DEFAULT_GLEXEC_CONF})")
    p.add_argument("--lcmaps-db", metavar="FILE",
                   help="the LCMAPS policy file (default: glexec.conf's lcmaps_db_file, else the "
                        "first of " + ", ".join(P.DEFAULT_LCMAPS_DBS) + " that exists)")
    p.add_argument("--lcas-db", metavar="FILE",
                   help="the LCAS database (default: glexec.conf's lcas_db_file, else the first "
                        "of " + ", ".join(P.DEFAULT_LCAS_DBS) + " that exists; not read when "
                        "use_lcas = no)")
    p.add_argument("--output", "-o", metavar="FILE",
                   help="write the glexec.yaml here (atomically; an existing file only with --force)")
    p.add_argument("--force", action="store_true", help="replace an existing --output file")
    p.add_argument("--dry-run", action="store_true",
                   help="print the report (and the YAML on stdout) but write nothing")
    p.add_argument("--json", action="store_true", help="the report as one JSON object on stdout")
    p.add_argument("--state-dir", metavar="DIR", help="state_dir of the new configuration")
    p.add_argument("--audit-file", metavar="FILE", help="audit.file of the new configuration")
    return p


def _read(path, what):
    """Text of a configuration file (UTF-8, undecodable bytes kept as surrogates)."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_INPUT + 1)
    except OSError as e:
        raise UsageError(f"cannot read the {what} {path}: {e.strerror}") from None
    if len(data) > MAX_INPUT:
        raise UsageError(f"the {what} {path} is larger than {MAX_INPUT} bytes")
    if b"\0" in data:
        raise UsageError(f"the {what} {path} is not a text file")
    return data.decode("utf-8", "surrogateescape")


def _read_ref(path):
    """A file the configuration names (checked by the planner), or None if unreadable."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_REFERENCED + 1)
    except OSError:
        return None
    return None if len(data) > MAX_REFERENCED else data


def _list_dir(path):
    try:
        return tuple(os.listdir(path))
    except OSError:
        return None


def _first_existing(paths):
    for p in paths:
        if os.path.exists(p):
            return p
    return None


def _inputs(args):
    conf_text = _read(args.glexec_conf, "glexec.conf")
    db_named, lcas_named = P.referenced_defaults(conf_text)
    db = args.lcmaps_db or db_named or _first_existing(P.DEFAULT_LCMAPS_DBS)
    if db is None:
        raise UsageError("no lcmaps.db: give --lcmaps-db (glexec.conf names none and none of "
                         + ", ".join(P.DEFAULT_LCMAPS_DBS) + " exists)")
    db_text = _read(db, "lcmaps.db")
    lcas, lcas_text = None, None
    if P.uses_lcas(conf_text):
        lcas = args.lcas_db or lcas_named or _first_existing(P.DEFAULT_LCAS_DBS)
        if lcas is not None:
            lcas_text = _read(lcas, "lcas.db")
    return conf_text, db, db_text, lcas, lcas_text


def _write_atomic(path, text, force):
    """Write ``text`` to ``path`` through a new file in the same directory and a rename
    (mode 0644): readers see the old file or the whole new one."""
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.lexists(path) and not force:
        raise UsageError(f"{path} exists; use --force to replace it")
    tmp = os.path.join(directory, f".{os.path.basename(path)}.glexec-import.{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    except OSError as e:
        raise UsageError(f"cannot write {path}: {e.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if force:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)       # fails if someone created it meanwhile
            os.unlink(tmp)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise UsageError(f"cannot write {path}: {e.strerror}") from None


def format_report(result):
    """The report as text lines: errors, warnings, then what was translated."""
    out = []
    for title, level in (("NOT TRANSLATED (errors)", P.ERROR), ("WARNINGS", P.WARNING),
                         ("translated / not needed", P.INFO)):
        rows = [f for f in result.findings if f.level == level]
        if not rows:
            continue
        out.append(f"{title}:")
        for f in rows:
            out.append(f"  {f.where()}: {f.item}: [{f.status}] {f.why}")
    for name, lines in result.policies.items():
        out.append(f"policy {name}:")
        out.extend("  " + line for line in lines)
    verdict = ("translated" if result.yaml_text is not None and not result.warnings
               else "translated with warnings" if result.yaml_text is not None
               else "NOT translated")
    out.append(f"{verdict}: {len(result.errors)} errors, {len(result.warnings)} warnings")
    return out


def main(argv=None):
    return front.run(PROG, _body, argv)


def _body(argv):
    args = _parser().parse_args(argv)
    if args.force and not args.output:
        raise UsageError("--force needs --output")
    for opt, v in (("--state-dir", args.state_dir), ("--audit-file", args.audit_file)):
        if v is not None and not v.startswith("/"):
            raise UsageError(f"{opt} must be an absolute path")
    conf_text, db, db_text, lcas, lcas_text = _inputs(args)
    wanted = P.referenced_files(args.glexec_conf, conf_text, db, db_text, lcas, lcas_text)
    files = {path: _list_dir(path) if kind == "ca_dir" else _read_ref(path)
             for path, kind in wanted.items()}
    result = P.translate(args.glexec_conf, conf_text, db, db_text, lcas, lcas_text, files,
                         state_dir=args.state_dir, audit_file=args.audit_file)
    if args.output and not args.dry_run and result.yaml_text is not None:
        _write_atomic(args.output, result.yaml_text, args.force)
    if args.json:
        import json
        sys.stdout.write(json.dumps(result.to_json(), indent=1, ensure_ascii=True) + "\n")
    else:
        stream = sys.stderr if (result.yaml_text is not None and not args.output) else sys.stdout
        for line in format_report(result):
            stream.write(line + "\n")
        if result.yaml_text is not None and (args.dry_run or not args.output):
            sys.stdout.write(result.yaml_text)
    if result.yaml_text is None:
        sys.stderr.write(f"{PROG}: not translated: {len(result.errors)} errors (see the report)\n")
    return result.exit_code
