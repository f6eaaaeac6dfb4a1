#!/usr/bin/python3.11 -I
"""glexec_wrapenv.pl -- print this process's environment packed for GLEXEC_ENV.

    export GLEXEC_ENV=$(glexec_wrapenv.pl)
    glexec glexec_unwrapenv.pl -- 'command'

The encoding is defined in one place, glexec_py/core/envwrap.py (docs/glexec-env.md).
(Named after gLExec's Perl script, which clients call by this path; it is Python.)
"""
import sys

sys.path.insert(0, "@LIBDIR@")
PROG = "glexec_wrapenv.pl"


def environment():
    """The environment exactly as this process received it (not os.environ, which the
    interpreter may have changed: PEP 538 locale coercion)."""
    from glexec_py.core import envwrap
    with open("/proc/self/environ", "rb") as f:
        return envwrap.environ_block(f.read())


def main(args):
    from glexec_py.core import envwrap
    if args and args != ["--"]:
        sys.stderr.write(f"{PROG}: takes no arguments (usage: export GLEXEC_ENV=$({PROG}))\n")
        return 1
    try:
        blob = envwrap.encode(environment())
    except (OSError, ValueError) as e:
        sys.stderr.write(f"{PROG}: cannot pack the environment: {e}\n")
        return 1
    sys.stdout.buffer.write(blob + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
