"""The part of glexec-job that runs AS THE TARGET through glexec:

    python3 -I -m glexec_tools.job.inner unpack  --dir JOBDIR [--archive PATH|-] [caps]
    python3 -I -m glexec_tools.job.inner collect --dir JOBDIR --out PATH|- [--manifest PATH|-]
                                                 [--manifest-on-stderr] [--max-bytes N] OUTPUT...
    python3 -I -m glexec_tools.job.inner mkjob|renew|wipe|du --dir JOBDIR
    python3 -I -m glexec_tools.job.inner exec --dir JOBDIR -- COMMAND [ARG...]
    python3 -I -m glexec_tools.job.inner sweep --ancestor PID --signal N | --all --signal N

Runs as: whatever account starts it (the job's target); needs no privilege.

unpack: prints one JSON line (format, members, bytes) on success.  collect: the tar goes to
--out (a new file, or "-" for stdout), the manifest (JSON: files with size and sha256,
refused outputs with the reason, missing ones) to --manifest (a new file, or "-" for stdout,
the default; not both on stdout), or as the last line of stderr (--manifest-on-stderr: the
tar alone on stdout, for glexec-job, which gets only fds 0-2 through glexec).

The actions of ``glexec-job run`` (pilot.py), each one glexec call as the job's target:
mkjob (the private job directory with .tmp and .proxy, made with a name the pilot chose and
recorded first, so a crash leaves nothing unlisted), exec (the payload's environment from
GLEXEC_ENV, TMPDIR, cwd = the job directory, then execve), renew (a new proxy from stdin
into .proxy/x509up by O_EXCL temp file + rename), sweep (signal the running account's
processes below the pilot's wrapper, or all of them, until none is left), du (bytes the
job directory holds), wipe (remove it, verified).  These live in ``jobdir.py``.

Exit: 0 done; 1 refused (the archive broke a rule and nothing of it is left / some declared
outputs were missing or refused: see the manifest); 2 usage; 4 system failure.
"""
import argparse
import os
import sys

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_FAIL = 0, 1, 2, 4
PROG = "glexec-job"


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        sys.stderr.write(f"{PROG}: usage: {message}\n")
        sys.exit(EXIT_USAGE)


def _size(text):
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return n


def build_parser():
    from .plan import Caps
    d = Caps()
    p = _Parser(prog=f"{PROG} inner", add_help=False)
    sub = p.add_subparsers(dest="action", required=True, parser_class=_Parser)
    u = sub.add_parser("unpack", add_help=False)
    u.add_argument("--dir", required=True)
    u.add_argument("--archive", default="-")
    u.add_argument("--max-total-bytes", type=_size, default=d.max_total_bytes)
    u.add_argument("--max-members", type=_size, default=d.max_members)
    u.add_argument("--max-member-bytes", type=_size, default=d.max_member_bytes)
    u.add_argument("--max-ratio", type=_size, default=d.max_ratio)
    c = sub.add_parser("collect", add_help=False)
    c.add_argument("--dir", required=True)
    c.add_argument("--out", required=True)
    c.add_argument("--manifest", default="-")
    c.add_argument("--manifest-on-stderr", action="store_true")
    c.add_argument("--max-bytes", type=_size, default=4 << 30)
    c.add_argument("outputs", nargs="+")
    for name in ("mkjob", "renew", "wipe", "du"):
        sub.add_parser(name, add_help=False).add_argument("--dir", required=True)
    e = sub.add_parser("exec", add_help=False)
    e.add_argument("--dir", required=True)
    e.add_argument("command", nargs=argparse.REMAINDER)
    s = sub.add_parser("sweep", add_help=False)
    s.add_argument("--ancestor", type=_size, default=None)
    s.add_argument("--all", action="store_true")
    s.add_argument("--signal", type=_size, required=True)
    return p


def _open_in(path):
    if path == "-":
        return os.dup(0)
    return os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NOCTTY | os.O_CLOEXEC)


def _open_out(path):
    if path == "-":
        return os.dup(1)
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)


def run(argv) -> int:
    from . import apply, plan
    a = build_parser().parse_args(argv)
    if a.action in ("mkjob", "renew", "wipe", "du", "exec", "sweep"):
        from . import jobdir
        return jobdir.run(a)
    try:
        root = apply.open_job_dir(a.dir)
        if a.action == "unpack":
            caps = plan.Caps(max_total_bytes=a.max_total_bytes, max_members=a.max_members,
                             max_member_bytes=a.max_member_bytes, max_ratio=a.max_ratio)
            src = _open_in(a.archive)
            result = apply.unpack(root, src, caps)
            sys.stdout.write(apply.manifest_json(result) + "\n")
            return EXIT_OK
        if a.out == "-" and a.manifest == "-" and not a.manifest_on_stderr:
            sys.stderr.write(f"{PROG}: usage: --out - needs a --manifest file\n")
            return EXIT_USAGE
        outs = [os.fsencode(o) for o in a.outputs]
        for o in outs:
            plan.split_pattern(o)
        with open(_open_out(a.out), "wb") as out:
            manifest = apply.collect(root, outs, out, a.max_bytes)
        text = apply.manifest_json(manifest) + "\n"
        if a.manifest_on_stderr:
            pass
        elif a.manifest == "-":
            sys.stdout.write(text)
        else:
            with open(_open_out(a.manifest), "w") as f:
                f.write(text)
        if manifest["refused"] or manifest["missing"]:
            sys.stderr.write(f"{PROG} collect: {len(manifest['refused'])} outputs refused, "
                             f"{len(manifest['missing'])} missing (see the manifest)\n")
        if a.manifest_on_stderr:
            sys.stderr.write(text)
        return EXIT_REFUSED if manifest["refused"] or manifest["missing"] else EXIT_OK
    except plan.Refused as e:
        sys.stderr.write(f"{PROG} {a.action}: refused: {_one_line(str(e))}\n")
        return EXIT_REFUSED
    except OSError as e:
        sys.stderr.write(f"{PROG} {a.action}: failed: {_one_line(str(e))}\n")
        return EXIT_FAIL
    except MemoryError:
        sys.stderr.write(f"{PROG} {a.action}: failed: out of memory\n")
        return EXIT_FAIL
    except Exception as e:          # a bug: still one line, and what was unpacked is gone
        sys.stderr.write(f"{PROG} {a.action}: failed: internal error {type(e).__name__}: "
                         f"{_one_line(str(e))[:200]}\n")
        return EXIT_FAIL


def _one_line(s):
    return s.replace("\n", " ").replace("\r", " ")[:500]


def main():
    try:
        code = run(sys.argv[1:])
    except KeyboardInterrupt:
        code = EXIT_FAIL
    sys.stdout.flush()
    sys.exit(code)


if __name__ == "__main__":
    main()
