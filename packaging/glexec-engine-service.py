# glexec-py engine service entry point (root). Started by systemd socket activation
# (glexec-engine.socket / glexec-engine.service) as
#   /usr/bin/python3.11 -I -S -B <this file> [--idle-exit S] [--max-active N] [--request-timeout S]
# or with --bind to bind the compiled-in socket itself. The setuid shim is its only client.
import sys

# As glexec-engine.py: the engine library dir first, Debian's dist-packages last; both are
# checked by the engine's trust walk before the service accepts anything.
sys.path.insert(0, __file__.rpartition("/")[0])
sys.path.append("/usr/lib/python3/dist-packages")

from glexec_py import service  # noqa: E402

service.main(__file__.rpartition("/")[0] + "/glexec-engine.py", sys.argv[1:])
