"""prune-users: kill stray processes of pool accounts (not in any batch job).

Runs as: root only (from cron, a systemd timer or a batch epilogue).  Configuration: the
optional ``prune:`` section of glexec.yaml (``front``: --config or this installation's
file); without ``pool_accounts``/``uid_ranges`` the scope is the pools the gridmapfile
names.  Planner ``glexec_tools.prune.plan``, effects ``glexec_tools.prune.apply`` and
``glexec_tools.common.procfs``; man page docs/man/prune-users.8.

Exit: 0 nothing to do; 1 strays found and all gone (with --dry-run: strays would be
killed); 2 usage, configuration, scope, lock or lease-store error (nothing signalled);
3 some strays survived the bound, the --max-kills cap stopped the run, or an audit record
could not be written; 70 an unexpected error (front.EXIT_INTERNAL).
"""
import argparse
import json
import os
import sys

from glexec_tools import front

PROG = "prune-users"
EXIT_NOTHING, EXIT_KILLED, EXIT_USAGE, EXIT_SURVIVED = 0, 1, 2, 3


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


def _signal_name(s):
    return s if s.startswith("SIG") else "SIG" + s


def build_parser():
    from glexec_tools.prune.plan import SIGNALS
    p = front.argument_parser(
        PROG, "Kill processes of pool accounts that belong to no batch job.",
        "Exit status: 0 nothing to do, 1 strays killed (dry run: found), "
        "2 usage/config error, 3 some survived or the run was stopped, 70 internal error.",
        changes=True)
    p.add_argument("--all", action="store_true",
                   help="also list kept processes in the text report")
    p.add_argument("--signal", choices=SIGNALS, type=_signal_name,
                   help="first signal (default: prune.signal, SIGTERM)")
    p.add_argument("--grace", type=_nonneg_int, metavar="SECONDS",
                   help="wait between the first signal and SIGKILL (default: prune.term_grace)")
    p.add_argument("--min-age", type=_nonneg_int, metavar="SECONDS",
                   help="spare processes younger than this (default: prune.min_age)")
    p.add_argument("--max-kills", type=_pos_int, metavar="N",
                   help="sanity cap: more strays than this in the first scan -> signal "
                        "nothing (default: prune.max_kills)")
    ssh = p.add_mutually_exclusive_group()
    ssh.add_argument("--spare-ssh", dest="spare_ssh", action="store_true", default=None,
                     help="spare processes below a root-owned sshd (default: prune.spare_ssh)")
    ssh.add_argument("--no-spare-ssh", dest="spare_ssh", action="store_false")
    p.add_argument("--daemons", metavar="LIST",
                   help="comma-separated job daemon names (replaces prune.daemons)")
    ka = p.add_mutually_exclusive_group()
    ka.add_argument("--kill-all", dest="kill_all", action="store_true", default=None,
                    help="kill(-1) as the pool uid when it has no legitimate process "
                         "(default: prune.kill_all)")
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
        from glexec_tools.prune.plan import _name_problem
        bad = [n for n in names if _name_problem(n)]
        if not names or bad:
            raise front.ToolError("--daemons must be a comma-separated list of process names")
        kw["daemons"] = names
    return cfg.replace(**kw) if kw else cfg


def _when(report, ticks):
    """(age, ISO start time) of a process that started ``ticks`` after boot."""
    scan = report.get("scan")
    if not scan or not scan.get("hz"):
        return "?", "?"
    age = scan["uptime"] - ticks / scan["hz"]
    return front.human_age(age), front.iso_time(scan["time"] - age)


def _text(report, show_all, out):
    from glexec_tools.prune.plan import escape
    plan = report.get("plan", [])
    verb = "WOULD KILL" if report.get("dry_run") else "stray"
    for d in plan:
        if d["action"] == "kill" or show_all:
            tag = verb if d["action"] == "kill" else "keep"
            acct = escape(str(d["account"])) if d["account"] else "-"
            age, start = _when(report, d["starttime"])
            line = (f"{tag} pid {d['pid']} uid {d['uid']}({acct}) age {age} (since {start}) "
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


def _with_pools(cfg):
    """The configuration with its scope: without pool_accounts/uid_ranges, the pools the
    gridmapfile names (None if it names none: nothing to do)."""
    if cfg.pool_accounts is not None:
        return cfg
    from glexec_tools.common.site import gridmap_pools
    pools = gridmap_pools(cfg.gridmapfile)
    return cfg.replace(pool_accounts=pools) if pools else None


def _main(argv):
    args = build_parser().parse_args(argv)
    if os.geteuid() != 0:
        raise front.ToolError("must run as root")
    from glexec_tools.prune import apply as prune_apply
    cfg = _with_pools(_overrides(args, front.load_section("prune", args.config,
                                                          old_tool="prune.yaml")))
    if cfg is None:
        report = {"dry_run": args.dry_run, "plan": [], "killed": [], "survivors": [],
                  "exit": EXIT_NOTHING, "note": "no pool accounts: the gridmapfile names "
                  "no pool and prune.pool_accounts/uid_ranges are not set"}
        if args.json:
            sys.stdout.write(json.dumps(report, sort_keys=True, ensure_ascii=True) + "\n")
        else:
            sys.stdout.write(f"nothing to do: {report['note']}\n")
        return EXIT_NOTHING
    try:
        # the text report lists kept processes only with --all: no 10,000 rows to build
        pruner = prune_apply.Pruner(cfg, dry_run=args.dry_run,
                                    list_keeps=args.json or args.all)
        if args.dry_run:
            report = pruner.run()
        else:
            with prune_apply.RunLock(cfg):
                report = pruner.run()
    except prune_apply.PruneError as e:
        raise front.ToolError(str(e)) from None
    report["exit"] = pruner.exit_code
    if args.json:
        sys.stdout.write(json.dumps(report, sort_keys=True, ensure_ascii=True) + "\n")
    else:
        _text(report, args.all, sys.stdout)
    return pruner.exit_code


def main(argv=None):
    return front.run(PROG, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
