# glexec-py engine entry point. Started only by the setuid shim, as
#   /usr/bin/python3.11 -I -S -B <this file> <config path>
# with fd 3 holding the shim's hand-off. It must not be run by hand.
import sys

# -I -S -B leave only the stdlib on sys.path; add the engine library dir (this file's
# directory, an absolute path the shim compiled in) first and Debian's dist-packages
# (cffi backend, PyYAML) last. Both are checked by the engine's trust walk before use.
sys.path.insert(0, __file__.rpartition("/")[0])
sys.path.append("/usr/lib/python3/dist-packages")

from glexec_py import engine  # noqa: E402  (engine checks every loaded module first)

engine.exit_process(engine.main(__file__, sys.argv[1:]))
