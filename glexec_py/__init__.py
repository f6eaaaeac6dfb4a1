"""glexec-py: a safer drop-in replacement for gLExec."""

__version__ = "0.1.0"
