"""glexec-job: a pilot's job on this worker node, through glexec (man page docs/man/glexec-job.8).

    glexec-job run --proxy FILE --outdir DIR [--input ARCHIVE]... [--output PATTERN]...
                   [--env NAME=VALUE]... [--wall-time S] [--cpu-time S] [--max-output-bytes N]
                   [--max-disk-bytes N] [--status-file FILE] [--state-dir DIR]
                   [--config F] [--json] [--dry-run] -- COMMAND [ARG...]
    glexec-job renew --job ID --proxy FILE [--state-dir DIR] [--json]
    glexec-job recover [--state-dir DIR] [--json]
    glexec-job pack --entry NAME [-o FILE|-] [-C DIR] [--json] [--] PATH...

Runs as: the pilot (a caller glexec accepts), never root.  ``pack`` is the bundle's
sub-command (glexec_tools.job.bundle).

Exit (run): the payload's own status once it ran (0-255; 128+N for a death by signal N),
also when a limit stopped it (the status says "limit"); 201-204 glexec refused the job's
account; 75 the job could not be set up (an input refused, a step failed: "infrastructure");
2 usage or configuration.  renew/recover: 0 done, 1 refused or something left, 2 usage.
"""
import json
import os
import sys

from glexec_tools import front

PROG = "glexec-job"
EXIT_OK, EXIT_LEFT = 0, 1


def _seconds(text):
    v = int(text)
    if v < 0:
        raise ValueError(text)
    return v


def parser():
    p = front.argument_parser(PROG, "Run a pilot's job as its owner through glexec: a private job "
                              "directory, inputs unpacked and outputs collected as the owner, the payload "
                              "under a watchdog, everything wiped afterwards.",
                              "Exit status (run): the payload's (128+N: signal N), 201-204 glexec refused, "
                              "75 the job could not be set up, 2 usage.", changes=False, common=False)
    sub = p.add_subparsers(dest="command", required=True, parser_class=type(p))
    r = sub.add_parser("run", help="run one job")
    front.add_common(r, changes=True)
    _state(r)
    r.add_argument("--proxy", required=True, metavar="FILE",
                   help="the job owner's proxy (GLEXEC_CLIENT_CERT of every glexec call)")
    r.add_argument("--outdir", required=True, metavar="DIR",
                   help="the pilot's directory for stdout, stderr, outputs.tar and manifest.json")
    r.add_argument("--input", action="append", default=[], metavar="ARCHIVE",
                   help="an input sandbox (tar, tar.gz/bz2/xz/zst or zip), unpacked as the owner; repeatable")
    r.add_argument("--output", action="append", default=[], metavar="PATTERN",
                   help="a declared output (name or glob in the job directory); repeatable")
    r.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                   help="a variable of the job's environment; repeatable")
    for name, what in (("wall-time", "seconds of wall time"), ("cpu-time", "CPU seconds of all the job's processes"),
                       ("max-output-bytes", "bytes of stdout and stderr"),
                       ("max-disk-bytes", "bytes in the job directory")):
        r.add_argument(f"--{name}", type=_seconds, metavar="N",
                       help=f"limit: {what} (at most the site's glexec.yaml job.{name.replace('-', '_')})")
    r.add_argument("--status-file", metavar="FILE", help="the job's status as JSON, rewritten at each heartbeat")
    r.add_argument("argv", nargs="+", metavar="COMMAND", help="the payload and its arguments (after --)")
    n = sub.add_parser("renew", help="replace a running job's proxy")
    front.add_common(n, changes=False)
    _state(n)
    n.add_argument("--job", required=True, metavar="ID")
    n.add_argument("--proxy", required=True, metavar="FILE", help="the new proxy")
    c = sub.add_parser("recover", help="sweep and wipe the jobs of wrappers that died")
    front.add_common(c, changes=False)
    _state(c)
    return p


def _state(p):
    p.add_argument("--state-dir", metavar="DIR", default=None,
                   help="the pilot's private job records (default ~/.glexec-job)")
    p.add_argument("--glexec", metavar="PATH", default=None, help="glexec (default: the one beside this tool)")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["pack"]:                   # runs anywhere, needs no glexec (the bundle's own parser)
        from .bundle import main_pack
        return main_pack(argv[1:])
    return front.run(PROG, _body, argv)


def _glexec(option):
    if option:
        return option
    here = os.path.join(os.path.dirname(os.path.realpath(sys.argv[0])), "glexec")
    if os.path.isfile(here):
        return here
    from glexec_py import site_paths
    return site_paths.PREFIX + "/sbin/glexec"


def _body(argv):
    from . import pilot, plan
    args = parser().parse_args(argv)
    if os.geteuid() == 0:
        raise front.ToolError("runs as the pilot, not as root (glexec switches to the job's owner)")
    cfg = front.load_section("job", args.config)
    glexec = os.path.abspath(_glexec(args.glexec))
    state_path = os.path.abspath(args.state_dir or os.path.expanduser("~/.glexec-job"))
    out = sys.stdout
    try:
        if args.command == "run":
            return _run(args, cfg, glexec, state_path, out)
        state = pilot.StateDir(state_path)
        if args.command == "renew":
            rec = pilot.renew(state, cfg, glexec, args.job, os.path.abspath(args.proxy))
            _report(args, rec, f"job {args.job}: proxy renewed", out)
            return EXIT_OK
        done = pilot.recover(state, cfg, glexec)
        left = [r for r in done if r["event"] != "recovered"]
        _report(args, {"recovered": done}, f"{len(done) - len(left)} jobs recovered, {len(left)} left", out)
        return EXIT_LEFT if left else EXIT_OK
    except pilot.JobError as e:
        raise front.ToolError(str(e), EXIT_LEFT if args.command != "run" else plan.EXIT_INFRASTRUCTURE) from None
    except plan.Refused as e:
        raise front.ToolError(str(e)) from None


def _run(args, cfg, glexec, state_path, out):
    from . import pilot, plan
    limits = plan.effective_limits(cfg, {"wall_time": args.wall_time, "cpu_time": args.cpu_time,
                                         "max_output_bytes": args.max_output_bytes,
                                         "max_disk_bytes": args.max_disk_bytes})
    env = plan.parse_env_assignments(args.env)
    for pattern in args.output:
        plan.split_pattern(os.fsencode(pattern))
    command = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if not command:
        raise front.ToolError("no COMMAND given (see --help)")
    outdir, proxy = os.path.abspath(args.outdir), os.path.abspath(args.proxy)
    inputs = [os.path.abspath(i) for i in args.input]
    status_file = os.path.abspath(args.status_file) if args.status_file else None
    if args.dry_run:
        return _dry_run(args, cfg, glexec, state_path, limits, env, command, inputs, outdir, out)
    pilot.check_outdir(outdir)
    with open(proxy, "rb") as f:
        proxy_bytes = f.read(1 << 20)
    state = pilot.StateDir(state_path)
    args.status_file = status_file
    os.chdir("/")                # glexec checks that the target may enter the caller's cwd
    job = pilot.Job(cfg, args, glexec, state, limits)
    pilot.install_stop_handlers(job)
    code = job.run(command, env, inputs, args.output, outdir, proxy_bytes)
    s = job.status
    _report(args, s, f"job {s['job']}: {s['kind']}, exit {s['exit']}"
            + (f" ({s['reason']})" if s["reason"] else "")
            + ("" if (s["wipe"] or {}).get("gone") else "; job directory NOT wiped (recovered next run)"),
            sys.stderr if not args.json else out)
    return code


def _dry_run(args, cfg, glexec, state_path, limits, env, command, inputs, outdir, out):
    from . import plan
    job_dir = os.path.join(cfg.scratch_root, plan.JOB_DIR_PREFIX + "<id>")
    proxy = os.path.join(job_dir, os.fsdecode(plan.JOB_PROXY_DIR), os.fsdecode(plan.JOB_PROXY_NAME))
    steps = [{"step": "recover", "what": f"sweep and wipe jobs of dead wrappers listed in {state_path}/live"},
             {"step": "mkjob", "as": "target", "what": f"mkdir {job_dir} (0700; .tmp, .proxy)"}]
    steps += [{"step": "unpack", "as": "target", "what": f"unpack {i} into {job_dir}"} for i in inputs]
    steps += [{"step": "exec", "as": "target", "what": " ".join(command),
               "env": [n.decode("utf-8", "replace") for n, _ in env] + ["TMPDIR", "X509_USER_PROXY"],
               "x509_user_proxy": proxy, "stdout": f"{outdir}/stdout", "stderr": f"{outdir}/stderr",
               "limits": limits, "grace": cfg.grace},
              {"step": "sweep", "as": "target", "what": "SIGTERM, grace, SIGKILL to the job's processes"}]
    if args.output:
        steps.append({"step": "collect", "as": "target", "what": f"{' '.join(args.output)} -> {outdir}/outputs.tar"})
    steps.append({"step": "wipe", "as": "target", "what": f"remove {job_dir}, verify it is gone"})
    plan_ = {"glexec": glexec, "state_dir": state_path, "steps": steps}
    if args.json:
        out.write(json.dumps(plan_, sort_keys=True) + "\n")
    else:
        from glexec_py.core.text import printable
        out.write(f"glexec: {printable(glexec)}\n")
        for s in steps:
            out.write(f"{s['step']:8} {'as ' + s['as'] if 'as' in s else '':10} {printable(s['what'])}\n")
    return EXIT_OK


def _report(args, record, line, out):
    if args.json:
        out.write(json.dumps(record, sort_keys=True) + "\n")
    else:
        front.say(PROG, line)
