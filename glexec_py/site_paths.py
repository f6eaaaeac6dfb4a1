"""Where this installation keeps its files.

``make install`` rewrites this file with the values it was given (PREFIX, SYSCONFDIR,
LOCALSTATEDIR, RUNSTATEDIR); the shim has the same CONFIG_FILE compiled in, so the setuid path and every
site tool read one configuration. The values below are those of a source-tree run
(PREFIX=/usr/local)."""

PREFIX = "/usr/local"
SYSCONFDIR = "/usr/local/etc"
LOCALSTATEDIR = "/usr/local/var"
RUNSTATEDIR = "/usr/local/var/run"
CONFIG_FILE = SYSCONFDIR + "/glexec-py/glexec.yaml"
STATE_DIR = LOCALSTATEDIR + "/lib/glexec-py"
LOG_DIR = LOCALSTATEDIR + "/log/glexec-py"
# The engine service's root-only socket; the shim has the same path compiled in.
SERVICE_SOCKET = RUNSTATEDIR + "/glexec-py/engine.sock"
