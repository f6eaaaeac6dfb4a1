"""glexec-sweep: remove files and IPC objects of pool accounts that are no longer in use.

Runs as: root only.  Configuration: the optional ``sweep:`` section of glexec.yaml
(``front``: --config or this installation's file); without ``pool`` the pools the
gridmapfile names, without ``roots`` /tmp and /var/tmp at 10 days.  Semantics in
``glexec_tools.sweep.plan`` (planner), effects and the run in ``glexec_tools.sweep.apply``;
the schema, state record and exit codes are in docs/man/glexec-sweep.8.

Exit: 0 done, every swept account is clean ("no files" recorded); 1 done, but something of
a swept account is left (young or spared files, errors, a cap reached); 2 usage or
configuration refused; 3 another glexec-sweep is running (lock held); 4 system failure
(a root cannot be opened safely, the audit or state record cannot be written ...);
70 an unexpected error (front.EXIT_INTERNAL).
"""
import json
import os
import sys

from glexec_py.core.text import printable
from glexec_tools import front

EXIT_CLEAN, EXIT_LEFT, EXIT_USAGE, EXIT_LOCKED, EXIT_FAIL = 0, 1, 2, 3, 4
PROG = "glexec-sweep"


def _uid(text):
    v = int(text)
    if not 0 <= v <= 0xFFFFFFFE:
        raise ValueError(text)
    return v


def build_parser():
    p = front.argument_parser(
        PROG, "Remove old files, SysV IPC objects and POSIX message queues of pool "
              "accounts that hold no lease and run no process.",
        "Exit status: 0 clean, 1 something left, 2 usage/config refused, "
        "3 another run holds the lock, 4 system failure, 70 internal error.", changes=True)
    p.add_argument("--test", dest="dry_run", action="store_true", help="the same as --dry-run")
    p.add_argument("--verbose", "-v", action="store_true",
                   help="print every decision also when removing")
    p.add_argument("--account", action="append", default=[],
                   help="only this pool account (repeatable)")
    p.add_argument("--uid", action="append", type=_uid, default=[],
                   help="only this pool uid (repeatable)")
    return p


def escape_path(b):
    """Path bytes as one printable line (core.text.printable): newlines, invalid UTF-8 and
    terminal escapes cannot reach the tty."""
    return printable(b)


class Printer:
    def __init__(self, as_json, out):
        self.as_json = as_json
        self.out = out
        self.owner = {}

    def decision(self, root, rel, st, d):
        path = root + b"/" + rel
        if self.as_json:
            from glexec_py.core.audit import encode
            self.out.write(encode({"path": path, "uid": st.st_uid, "action": d.action,
                                   "reason": d.reason, "rmdir_if_empty": d.rmdir}).decode("ascii"))
        else:
            extra = " (rmdir if empty)" if d.rmdir else ""
            self.out.write(f"{d.action:7} uid={st.st_uid:<6} {escape_path(path)}  # {d.reason}{extra}\n")

    def account(self, name, uid, verdict, why):
        if self.as_json:
            self.out.write(json.dumps({"account": name, "uid": uid, "sweep": verdict, "reason": why}) + "\n")
        else:
            self.out.write(f"account {name or '-'} uid={uid}: {'sweep' if verdict else 'spare'}  # {why}\n")


def report(args, summary, out):
    """The summary: one JSON object (--json) or lines for people."""
    if args.json:
        out.write(json.dumps(summary, sort_keys=True) + "\n")
        return
    for a in summary["swept"]:
        out.write(f"{'would sweep' if args.dry_run else 'swept'} {a['account']} uid={a['uid']}: "
                  f"removed {a['removed']} files {a['removed_dirs']} dirs "
                  f"{len(a['ipc'])} ipc, kept {a['kept']}, errors {a['errors']} -> {a['state']}"
                  f" ({a['why']})\n")
    for s in summary["spared"]:
        out.write(f"spared {s['account'] or '-'} uid={s['uid']}: {s['why']}\n")
    if summary["incomplete"]:
        out.write(f"incomplete: {summary['incomplete']}\n")
    for k, w in sorted(summary["unchecked"].items()):
        out.write(f"cannot inspect {k}: {w}\n")
    if summary.get("note"):
        out.write(f"nothing to do: {summary['note']}\n")


def _main(argv):
    args = build_parser().parse_args(argv)
    if os.geteuid() != 0:
        raise front.ToolError("permission denied: root only")
    os.umask(0o077)
    from glexec_tools.sweep import apply
    cfg = front.load_section("sweep", args.config, old_tool="sweep.yaml")
    if cfg.pool is None:
        from glexec_tools.common.site import gridmap_pools
        cfg.pool = gridmap_pools(cfg.gridmapfile)
        if not cfg.pool:
            report(args, {"summary": True, "dry_run": args.dry_run, "swept": [], "spared": [],
                          "incomplete": None, "unchecked": {}, "not_swept": [],
                          "refused_roots": [], "exit": EXIT_CLEAN,
                          "note": "no pool: the gridmapfile names none and sweep.pool is not set"},
                   sys.stdout)
            return EXIT_CLEAN
    status, summary = apply.run(cfg, args, Printer(args.json, sys.stdout), sys.stdout)
    report(args, summary, sys.stdout)
    sys.stdout.flush()
    return status


def main(argv=None):
    return front.run(PROG, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
