"""Skips in CI: as root with CI=true, tests/conftest.py turns every skip into a failure
unless its reason starts with OPTIONAL. Use ``pytest.skip(optional("why"))`` only for what
is genuinely optional on a correct CI machine (a kernel feature, a sysctl, a race the
machine did not produce); a missing package or a daemon that does not start is a failure."""
import os

OPTIONAL = "optional: "


def optional(reason):
    return OPTIONAL + reason


def strict():
    """CI=true and root: every required part must run."""
    return os.environ.get("CI") == "true" and os.geteuid() == 0
