"""glexec-check: lint the configuration, or explain what glexec would decide for a
credential, without leasing, auditing or running anything (man page docs/man/glexec-check.8).

    glexec-check [--config F] [--json] [--passwd F --group F] [--gridmapdir D]
    glexec-check explain [--config F] (--proxy F | --token F | --dn DN [--fqan F]... [--issuer DN])
                         [--mapcount N] [--caller USER] [--no-pam] [--json] [--passwd F --group F]
                         [--gridmapdir D]

Exit (lint): 0 clean, 1 warnings only, 2 errors (or a usage error).
Exit (explain): 0 glexec would grant, 1 glexec would refuse, 2 usage or unreadable input.
"""
import argparse
import json
import sys

PROG = "glexec-check"
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise _UsageError(message)


class _UsageError(Exception):
    pass


def _default_config():
    from glexec_py import site_paths
    return site_paths.CONFIG_FILE


def _common(p):
    p.add_argument("--config", metavar="FILE", default=None,
                   help="the glexec.yaml to check (default: this installation's)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--passwd", metavar="FILE", help="accounts from this passwd file instead of the system's")
    p.add_argument("--group", metavar="FILE", help="groups from this group file instead of the system's")
    p.add_argument("--gridmapdir", metavar="DIR",
                   help="read pool leases from DIR instead of mapping.gridmapdir (its trust is not checked)")


def parser():
    p = _Parser(prog=PROG, description="Lint a glexec-py configuration, or explain a decision "
                "(nothing is leased, audited or run).")
    _common(p)
    sub = p.add_subparsers(dest="command", parser_class=_Parser)
    e = sub.add_parser("explain", help="explain what glexec would decide for a credential")
    _common(e)
    who = e.add_mutually_exclusive_group(required=True)
    who.add_argument("--proxy", metavar="FILE", help="a proxy file, verified with the site's CA and VOMS dirs")
    who.add_argument("--token", metavar="FILE", help="a token file, verified with the site's issuer keys")
    who.add_argument("--dn", metavar="DN", help="a subject DN (slash form), taken as verified")
    e.add_argument("--fqan", metavar="FQAN", action="append", default=[], help="with --dn: a VOMS FQAN, in order")
    e.add_argument("--issuer", metavar="DN", help="with --dn: the issuing CA's DN (for CA bans)")
    e.add_argument("--mapcount", metavar="N", type=int, help="GLEXEC_MAPCOUNT of the request")
    e.add_argument("--caller", metavar="USER", help="the caller (for callers.omission_private_key)")
    e.add_argument("--no-pam", action="store_true", help="do not run the PAM account check")
    return p


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = parser().parse_args(argv)
    except _UsageError as e:
        return _fail(str(e))
    except SystemExit as e:        # --help
        return int(e.code or 0)
    try:
        return _run(args)
    except Exception as e:         # one line, never a traceback
        from glexec_py.errors import GlexecError
        if isinstance(e, GlexecError):
            return _fail(e.message.removeprefix("glexec: "))
        from glexec_tools.check.apply import Usage
        if isinstance(e, Usage):
            return _fail(str(e))
        return _fail(f"internal error: {e!r}")


def _fail(message):
    sys.stderr.write(f"{PROG}: {message}\n")
    return EXIT_USAGE


def _run(args):
    from glexec_tools.check import apply, plan
    if (args.passwd is None) != (args.group is None):
        raise apply.Usage("--passwd and --group go together")
    names = apply.NameService(args.passwd, args.group)
    config = args.config or _default_config()
    if args.command == "explain":
        if args.dn is None and (args.fqan or args.issuer):
            raise apply.Usage("--fqan and --issuer go with --dn")
        req = apply.Request(proxy=args.proxy, token=args.token, dn=args.dn, fqans=args.fqan, issuer=args.issuer,
                            mapcount=args.mapcount, caller=args.caller, pam=not args.no_pam)
        exp, code = apply.explain(config, req, names, args.gridmapdir)
        sys.stdout.write(apply.dumps(exp) + "\n" if args.json else "\n".join(plan.render_text(exp)) + "\n")
        return code
    findings, _cfg = apply.lint(config, names, args.gridmapdir)
    code = plan.lint_exit(findings)
    if args.json:
        sys.stdout.write(json.dumps({"config": config, "exit": code, "findings": [f.as_dict() for f in findings]},
                                    indent=2, ensure_ascii=False) + "\n")
    else:
        for f in findings:
            sys.stdout.write(f"{f.where}: {f.severity}: {f.what}\n")
        counts = {s: sum(f.severity == s for f in findings) for s in (plan.ERROR, plan.WARNING)}
        sys.stdout.write(f"{config}: {counts['error']} error(s), {counts['warning']} warning(s)\n")
    return code
