"""The site tools' one front: options, configuration, errors, admin audit records.

Every tool's ``cli.main(argv=None) -> int`` is ``front.run(PROG, body, argv)``: whatever
goes wrong becomes ONE line ``<tool>: <message>`` on stderr and a documented exit code,
never a traceback.

Exit codes shared by every tool (each tool documents its own 0, 1, 3, 4 meanings):

  2   usage, configuration or permission refused (nothing was changed)
  70  an unexpected error (a bug in the tool; EX_SOFTWARE): one line naming it
  130 interrupted (SIGINT)

Configuration: glexec.yaml, found at ``glexec_py.site_paths.CONFIG_FILE`` (what ``make
install`` was given) unless ``--config`` names another; each tool reads the engine's
sections and its own optional section through ``<tool>.plan.parse_section(text, filename)``
(``SECTIONS`` lists them, for a lint tool that checks every section).
"""
import os
import sys

EXIT_USAGE = 2
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130
MAX_CONFIG = 1 << 20

# glexec.yaml section -> the module whose parse_section(text, filename) validates it
SECTIONS = {"backmap": "glexec_tools.backmap.plan", "job": "glexec_tools.job.plan",
            "leases": "glexec_tools.leases.plan",
            "prune": "glexec_tools.prune.plan", "sweep": "glexec_tools.sweep.plan"}


class ToolError(Exception):
    """A refusal or failure with its exit code; the message is one line for the admin."""

    def __init__(self, message, code=EXIT_USAGE):
        super().__init__(message)
        self.message = message
        self.code = code


def say(prog, message):
    """Write ``<prog>: <message>`` as exactly one printable line on stderr."""
    from glexec_py.core.text import printable
    message = str(message).removeprefix(f"{prog}: ").removeprefix("glexec: ")
    sys.stderr.write(f"{prog}: {printable(message)}\n")


def run(prog, body, argv=None):
    """``body(argv)`` -> its exit code; every exception becomes one line and a code."""
    from glexec_py.errors import ConfigError, GlexecError
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        return body(argv)
    except ToolError as e:
        say(prog, e.message)
        return e.code
    except ConfigError as e:           # "file:line: what"
        say(prog, e.message)
        return EXIT_USAGE
    except GlexecError as e:
        say(prog, e.message)
        return EXIT_USAGE
    except KeyboardInterrupt:
        say(prog, "interrupted")
        return EXIT_INTERRUPTED
    except SystemExit as e:            # argparse: help (0) or a usage line already written
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    except BrokenPipeError:
        return EXIT_USAGE
    except OSError as e:
        where = e.filename if e.filename is not None else ""
        say(prog, f"{os.fsdecode(where) + ': ' if where else ''}{e.strerror or e}")
        return EXIT_USAGE
    except (ValueError, UnicodeError) as e:   # a value no path or number can be (NUL, ...)
        say(prog, f"invalid value: {e}")
        return EXIT_USAGE
    except Exception as e:             # a bug: name it in one line, never a traceback
        say(prog, f"internal error ({type(e).__name__}: {e}); please report it")
        return EXIT_INTERNAL


# --- options ---------------------------------------------------------------------------

def argument_parser(prog, description, epilog, *, changes, common=True):
    """An argparse parser with the common options (``common``): ``--config``, ``--json``
    and, for a tool that changes anything, ``-n/--dry-run``.  A usage error is one line
    ``<prog>: <message> (see --help)`` and exit 2."""
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message):
            say(prog, f"{message} (see --help)")
            raise SystemExit(EXIT_USAGE)

        def parse_known_args(self, args=None, namespace=None):
            # argparse turns "--opt=--" into an empty list, not the string "--"
            for arg in sys.argv[1:] if args is None else args:
                if isinstance(arg, str) and arg.startswith("-") and arg.endswith("=--"):
                    self.error(f"{arg.partition('=')[0]}: '--' is not a value")
            return super().parse_known_args(args, namespace)

    class Formatter(argparse.HelpFormatter):
        def _split_lines(self, text, width):     # a path stays whole (no break at '-')
            import textwrap
            return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)

    p = Parser(prog=prog, description=description, epilog=epilog, formatter_class=Formatter)
    if common:
        add_common(p, changes=changes)
    return p


def add_common(p, *, changes, suppress=False):
    import argparse
    d = argparse.SUPPRESS if suppress else None
    p.add_argument("--config", metavar="PATH", default=d,
                   help=f"glexec.yaml (default: {config_path()})")
    p.add_argument("--json", action="store_true", default=argparse.SUPPRESS if suppress else False,
                   help="one JSON object on stdout")
    if changes:
        p.add_argument("-n", "--dry-run", action="store_true",
                       default=argparse.SUPPRESS if suppress else False,
                       help="print what would be done, change nothing")


def config_path(option=None):
    """``--config`` if given, else this installation's glexec.yaml."""
    if option:
        return option
    from glexec_py import site_paths
    return site_paths.CONFIG_FILE


# --- configuration ----------------------------------------------------------------------

def read_config(path):
    """Runs as: root (any user for a readable file).  The bytes of glexec.yaml at ``path``:
    must be a regular file, root-owned and not writable by group or others (as the engine
    demands), at most 1 MiB.  ToolError (exit 2) otherwise."""
    import stat
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise ToolError(f"{path}: {e.strerror}") from None
    except ValueError:
        raise ToolError(f"{path!r}: not a path (NUL character)") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ToolError(f"{path}: not a regular file")
        if st.st_uid != 0 or st.st_mode & 0o022:
            raise ToolError(f"{path}: must be owned by root and not writable by group or others")
        data = b""
        while len(data) <= MAX_CONFIG:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            data += chunk
        if len(data) > MAX_CONFIG:
            raise ToolError(f"{path}: larger than {MAX_CONFIG} bytes")
        return data
    except OSError as e:
        raise ToolError(f"{path}: {e.strerror}") from None
    finally:
        os.close(fd)


def load_section(section, option=None, *, old_tool=None):
    """Runs as: root.  The validated ``section`` of glexec.yaml (``--config`` ``option`` or
    this installation's file) with its defaults from the engine's sections.  An old
    separate tool file (prune.yaml, sweep.yaml) gets one line saying where its keys go."""
    from importlib import import_module
    from glexec_py.errors import ConfigError
    from glexec_tools.common.section import old_file_hint
    path = config_path(option)
    text = read_config(path)
    try:
        cfg = import_module(SECTIONS[section]).parse_section(text, path)
    except ConfigError as e:
        hint = old_file_hint(text, old_tool or section, section)
        if hint:
            raise ToolError(f"{path}: {hint}") from None
        raise
    _ship_like_the_engine(text, path)
    return cfg


def _ship_like_the_engine(text, path):
    """The tools' records go into glexec's audit file and its chain: with audit.ship on they
    are shipped too (else the collector would see each of them as a gap)."""
    from glexec_py.core.config import parse_config
    from glexec_py.effects import auditlog
    auditlog.ship_records_of(parse_config(text, path).audit)


# --- admin audit ---------------------------------------------------------------------------

def admin_record(audit_file, prog, event, fields):
    """Runs as: root.  Append one audit record of an administrative change (``event``,
    e.g. "lease_admin", "sweep", "prune_kill") to glexec's audit file through the engine's
    writer (``effects.auditlog``: its lock and hash chain): ``time`` (the audit format, read
    under the lock: file order is time order), ``host``, ``tool``, ``pid`` (unless
    ``fields`` has its own), the admin (uid, SUDO_USER) and ``fields``.  Returns the
    record; a GlexecError if it cannot be written (no change may go unrecorded: the
    caller stops)."""
    import socket
    from glexec_py.core.audit import encode
    from glexec_py.effects import auditlog
    rec = {"time": None, "event": event, "tool": prog, "host": socket.gethostname(),
           "pid": os.getpid(), "admin": {"uid": os.getuid(),
                                        "sudo_user": os.environ.get("SUDO_USER")}}
    rec.update(fields)
    rec["event"], rec["tool"] = event, prog
    auditlog.append(audit_file, auditlog.stamper(rec, encode))
    return rec


# --- human output ---------------------------------------------------------------------------

def iso_time(t):
    """Seconds since the epoch -> ``2026-12-05T06:41:46Z`` (UTC, whole seconds)."""
    import time
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def human_age(seconds):
    """``3h12m``, ``2d4h``, ``45s``: an age for people (JSON keeps the number)."""
    s = max(0, int(seconds))
    for unit, size, sub, subsize in (("d", 86400, "h", 3600), ("h", 3600, "m", 60),
                                     ("m", 60, "s", 1)):
        if s >= size:
            rest = (s % size) // subsize
            return f"{s // size}{unit}" + (f"{rest}{sub}" if rest else "")
    return f"{s}s"


class Progress:
    """A progress line on stderr for long work, only when stderr is a terminal, at most
    every ``interval`` seconds, erased when done.  ``Progress(prog)(done, total, what)``."""

    def __init__(self, prog, interval=0.5, stream=None, clock=None):
        import time
        self.prog = prog
        self.stream = stream or sys.stderr
        self.clock = clock or time.monotonic
        self.interval = interval
        try:
            self.on = self.stream.isatty()
        except (AttributeError, ValueError, OSError):
            self.on = False
        self.next = 0.0
        self.shown = False

    def __call__(self, done, total=None, what="records"):
        if not self.on:
            return
        now = self.clock()
        if now < self.next:
            return
        self.next = now + self.interval
        pct = f" ({100 * done // total}%)" if total else ""
        self.stream.write(f"\r{self.prog}: {done:,} {what}{pct}\x1b[K")
        self.stream.flush()
        self.shown = True

    def done(self):
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.shown = False
