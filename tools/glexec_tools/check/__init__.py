"""glexec-check: lint a glexec-py configuration and explain decisions without running
anything (plan: pure decisions; apply: read-only gathering; cli: the command line)."""
