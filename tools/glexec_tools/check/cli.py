"""glexec-check: lint the configuration, or explain what glexec would decide for a
credential, without leasing, auditing or running anything (man page docs/man/glexec-check.8).

    glexec-check [--config F] [--json] [--passwd F --group F] [--gridmapdir D]
    glexec-check explain [--config F] (--proxy F | --token F | --dn DN [--fqan F]... [--issuer DN])
                         [--mapcount N] [--caller USER] [--no-pam] [--json] [--passwd F --group F]
                         [--gridmapdir D]

Exit (lint): 0 clean, 1 warnings only, 2 errors (or a usage error).
Exit (explain): 0 glexec would grant, 1 glexec would refuse, 2 usage or unreadable input.
"""
import json
import sys

from glexec_tools import front

PROG = "glexec-check"


def _names_options(p, suppress=False):
    """Also accepted after "explain"; there without defaults, so a value given before the
    sub-command is not reset by the sub-parser."""
    import argparse
    d = argparse.SUPPRESS if suppress else None
    p.add_argument("--passwd", metavar="FILE", default=d,
                   help="accounts from this passwd file instead of the system's")
    p.add_argument("--group", metavar="FILE", default=d,
                   help="groups from this group file instead of the system's")
    p.add_argument("--gridmapdir", metavar="DIR", default=d,
                   help="read pool leases from DIR instead of mapping.gridmapdir (its trust is not checked)")


def parser():
    p = front.argument_parser(PROG, "Lint a glexec-py configuration, or explain a decision "
                              "(nothing is leased, audited or run).", None, changes=False)
    _names_options(p)
    sub = p.add_subparsers(dest="command", parser_class=type(p))
    e = sub.add_parser("explain", help="explain what glexec would decide for a credential")
    front.add_common(e, changes=False, suppress=True)
    _names_options(e, suppress=True)
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
    return front.run(PROG, _body, argv)


def _body(argv):
    from glexec_tools.check.apply import Usage
    args = parser().parse_args(argv)
    try:
        return _run(args)
    except Usage as e:
        raise front.ToolError(str(e)) from None


def _run(args):
    from glexec_tools.check import apply, plan
    if (args.passwd is None) != (args.group is None):
        raise apply.Usage("--passwd and --group go together")
    names = apply.NameService(args.passwd, args.group)
    config = front.config_path(args.config)
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
