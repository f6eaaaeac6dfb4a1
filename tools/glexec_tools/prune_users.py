"""prune-users: kill stray processes of pool accounts (not in any batch job).

Runs as: root only (from cron, a systemd timer or a batch epilogue).  Configuration:
``PREFIX/etc/glexec-py/prune.yaml`` (a separate strict file: glexec.yaml's schema belongs to
the engine, which refuses unknown sections).  Planner ``glexec_py.core.prune``, effects
``glexec_py.effects.procscan`` and ``glexec_py.effects.prune_apply``; man page
docs/man/prune-users.8.

Exit: 0 nothing to do; 1 strays found and all gone (with --dry-run: strays would be
killed); 2 usage, configuration, scope, lock or lease-store error (nothing signalled);
3 some strays survived the bound, the --max-kills cap stopped the run, or an audit record
could not be written.
"""
import argparse
import json
import os
import sys

EXIT_NOTHING, EXIT_KILLED, EXIT_USAGE, EXIT_SURVIVED = 0, 1, 2, 3


def default_config_path():
    """PREFIX/etc/glexec-py/prune.yaml for the PREFIX this tool is installed in."""
    here = os.path.realpath(__file__)
    lib = os.path.dirname(os.path.dirname(here))           # .../lib/glexec-py
    if lib.endswith("/lib/glexec-py"):
        prefix = lib[: -len("/lib/glexec-py")]
        return ("" if prefix in ("", "/usr") else prefix) + "/etc/glexec-py/prune.yaml"
    return "/usr/local/etc/glexec-py/prune.yaml"


def _nonneg_int(s):
    v = int(s)
    if v < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return v


def _pos_int(s):
    v = int(s)
    if v < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return v


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        sys.stderr.write(f"prune-users: {message}\n")
        sys.exit(EXIT_USAGE)


def build_parser():
    from glexec_py.core.prune import SIGNALS
    p = _Parser(prog="prune-users",
                description="Kill processes of pool accounts that belong to no batch job.",
                epilog="Exit status: 0 nothing to do, 1 strays killed (dry run: found), "
                       "2 usage/config error, 3 some survived or the run was stopped.")
    p.add_argument("--config", help="prune.yaml (default: %(default)s of this install)")
    p.add_argument("-n", "--dry-run", action="store_true",
                   help="print the plan with reasons, signal nothing")
    p.add_argument("--json", action="store_true", help="machine-readable report on stdout")
    p.add_argument("--all", action="store_true",
                   help="also list kept processes in the text report")
    p.add_argument("--signal", choices=SIGNALS, type=lambda s: s if s.startswith("SIG")
                   else "SIG" + s, help="first signal (default: config 'signal', SIGTERM)")
    p.add_argument("--grace", type=_nonneg_int, metavar="SECONDS",
                   help="wait between the first signal and SIGKILL (config 'term_grace')")
    p.add_argument("--min-age", type=_nonneg_int, metavar="SECONDS",
                   help="spare processes younger than this (config 'min_age')")
    p.add_argument("--max-kills", type=_pos_int, metavar="N",
                   help="sanity cap: more strays than this in the first scan -> signal nothing")
    ssh = p.add_mutually_exclusive_group()
    ssh.add_argument("--spare-ssh", dest="spare_ssh", action="store_true", default=None,
                     help="spare processes below a root-owned sshd")
    ssh.add_argument("--no-spare-ssh", dest="spare_ssh", action="store_false")
    p.add_argument("--daemons", metavar="LIST",
                   help="comma-separated job daemon names (replaces config 'daemons')")
    ka = p.add_mutually_exclusive_group()
    ka.add_argument("--kill-all", dest="kill_all", action="store_true", default=None,
                    help="kill(-1) as the pool uid when it has no legitimate process")
    ka.add_argument("--no-kill-all", dest="kill_all", action="store_false")
    return p


def _overrides(args, cfg):
    kw = {}
    if args.signal:
        kw["signal"] = args.signal
    if args.grace is not None:
        kw["term_grace"] = args.grace
    if args.min_age is not None:
        kw["min_age"] = args.min_age
    if args.max_kills is not None:
        kw["max_kills"] = args.max_kills
    if args.spare_ssh is not None:
        kw["spare_ssh"] = args.spare_ssh
    if args.kill_all is not None:
        kw["kill_all"] = args.kill_all
    if args.daemons is not None:
        names = tuple(n.strip() for n in args.daemons.split(",") if n.strip())
        from glexec_py.core.prune import _name_problem
        bad = [n for n in names if _name_problem(n)]
        if not names or bad:
            raise ValueError("--daemons must be a comma-separated list of process names")
        kw["daemons"] = names
    return cfg.replace(**kw) if kw else cfg


def _text(report, show_all, out):
    from glexec_py.core.prune import escape
    plan = report.get("plan", [])
    verb = "WOULD KILL" if report.get("dry_run") else "stray"
    for d in plan:
        if d["action"] == "kill" or show_all:
            tag = verb if d["action"] == "kill" else "keep"
            acct = escape(str(d["account"])) if d["account"] else "-"
            line = (f"{tag} pid {d['pid']} uid {d['uid']}({acct}) start {d['starttime']} "
                    f"comm '{d['comm']}': {d['why']}")
            if d.get("cmdline"):
                line += " [" + " ".join(d["cmdline"])[:200] + "]"
            out.write(line + "\n")
    if report.get("dry_run"):
        out.write(f"dry run: {report.get('would_kill', 0)} process(es) would be killed\n")
        return
    for e in report.get("killed", []):
        out.write(f"signalled pid {e['pid']} uid {e['uid']} ({escape(str(e['account']))}) "
                  f"with {e['signal']} in round {e['round']}: {e['why']}\n")
    for d in report.get("survivors", []):
        out.write(f"SURVIVED pid {d['pid']} uid {d['uid']} state {d['state']}: {d['why']}\n")
    if report.get("zombies"):
        out.write(f"{len(report['zombies'])} zombie(s) left for their parent/init to reap\n")
    if report.get("stopped"):
        out.write(f"stopped: {report['stopped']}\n")
    out.write(f"killed {len(report.get('killed', []))}, survivors "
              f"{len(report.get('survivors', []))}, rounds {report.get('rounds', 0)}\n")


def main(argv=None):
    args = build_parser().parse_args(argv)
    if os.geteuid() != 0:
        sys.stderr.write("prune-users: must run as root\n")
        return EXIT_USAGE
    from glexec_py.core.prune import parse_prune_config
    from glexec_py.effects import prune_apply
    from glexec_py.errors import ConfigError
    path = args.config or default_config_path()
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            if st.st_uid != 0 or st.st_mode & 0o022:
                raise ConfigError(path, None, "must be root-owned and not group/other-writable")
            cfg = parse_prune_config(f.read(1 << 20), path)
        cfg = _overrides(args, cfg)
        # the text report lists kept processes only with --all: no 10,000 rows to build
        pruner = prune_apply.Pruner(cfg, dry_run=args.dry_run,
                                    list_keeps=args.json or args.all)
        if args.dry_run:
            report = pruner.run()
        else:
            with prune_apply.RunLock(cfg):
                report = pruner.run()
    except ConfigError as e:
        sys.stderr.write(f"prune-users: config error: {e.message}\n")
        return EXIT_USAGE
    except (prune_apply.PruneError, ValueError) as e:
        sys.stderr.write(f"prune-users: {e}\n")
        return EXIT_USAGE
    except OSError as e:
        sys.stderr.write(f"prune-users: {path if e.filename is None else e.filename}: "
                         f"{e.strerror}\n")
        return EXIT_USAGE
    report["exit"] = pruner.exit_code
    if args.json:
        sys.stdout.write(json.dumps(report, sort_keys=True, ensure_ascii=True) + "\n")
    else:
        _text(report, args.all, sys.stdout)
    return pruner.exit_code


if __name__ == "__main__":
    sys.exit(main())
