#!/usr/bin/python3.11 -I
"""glexec_unwrapenv.pl [--] COMMAND [ARGS...] -- run as the target by glexec: restore the
caller's environment from GLEXEC_ENV (except the names glexec set for the target and the
loader/allocator variables: glexec_py/core/envwrap.py, docs/glexec-env.md), then exec
COMMAND. A single COMMAND word is run by /bin/sh -c (as gLExec's Perl script did through
Perl's exec: PanDA passes 'cd DIR; python -m glexec_aux 2>1;').

A GLEXEC_ENV that glexec_wrapenv.pl did not make: one line on stderr, exit 201, nothing
runs (glexec reports a payload's 201 as 204).
"""
import os
import sys

sys.path.insert(0, "@LIBDIR@")
PROG = "glexec_unwrapenv.pl"
EXIT_BAD_INPUT = 201


def fail(message, code=EXIT_BAD_INPUT):
    sys.stderr.write(f"{PROG}: " + message.replace("\n", " ") + "\n")
    sys.exit(code)


def environment():
    """The environment exactly as this process received it (not os.environ, which the
    interpreter may have changed: PEP 538 locale coercion)."""
    from glexec_py.core import envwrap
    with open("/proc/self/environ", "rb") as f:
        return envwrap.environ_block(f.read())


def main(args):
    from glexec_py.core import envwrap
    if args[:1] == ["--"]:
        args = args[1:]
    if not args:
        fail(f"usage: {PROG} -- COMMAND [ARGS...]")
    current = environment()
    blob = dict(current).get(envwrap.WRAP_NAME)
    if blob is None:
        fail("GLEXEC_ENV is not set (export GLEXEC_ENV=$(glexec_wrapenv.pl) before glexec)")
    try:
        env = dict(envwrap.restore(current, envwrap.decode(blob)))
    except envwrap.EnvWrapError as e:
        fail(str(e))
    argv = ["/bin/sh", "-c", args[0]] if len(args) == 1 else args
    sys.stdout.flush()
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as e:
        fail(f"cannot execute {argv[0]!r}: {e.strerror}", 127 if isinstance(e, FileNotFoundError) else 126)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
