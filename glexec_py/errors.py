"""Typed failures, each carrying the exit code the caller sees.

A refusal is an exception: ``message`` is the one line the caller gets on stderr,
``reason`` a stable machine-readable code for the audit record, ``detail`` everything
else the audit record should keep (never shown to the caller).
"""

EXIT_CLIENT = 201      # caller or credential fault
EXIT_SYSTEM = 202      # system, installation or configuration fault (clients retry)
EXIT_DENIED = 203      # not authorised (clients retry)
EXIT_PAYLOAD_COLLIDES = 204  # payload's own status was 201..204
EXIT_NOT_EXECUTABLE = 126    # payload could not be executed


class GlexecError(Exception):
    exit_code = EXIT_SYSTEM

    def __init__(self, reason, message, **detail):
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.detail = detail


class CallerError(GlexecError):
    """The caller or its credential is at fault (201)."""
    exit_code = EXIT_CLIENT


class SystemFault(GlexecError):
    """Installation, configuration or system failure (202)."""
    exit_code = EXIT_SYSTEM


class NotAuthorized(GlexecError):
    """Policy says no (203)."""
    exit_code = EXIT_DENIED


class ExecFailure(GlexecError):
    """The payload could not be executed after the switch (126)."""
    exit_code = EXIT_NOT_EXECUTABLE


class ConfigError(SystemFault):
    """A configuration file is wrong; message reads ``file:line: what is wrong``."""

    def __init__(self, filename, line, what):
        where = f"{filename}:{line}" if line else filename
        super().__init__("config", f"{where}: {what}", file=filename, line=line)
        self.filename = filename
        self.line = line
        self.what = what


def payload_exit_status(wait_status_exitcode=None, signal_number=None):
    """The status glexec exits with for a payload that ended.

    201..204 from the payload become 204 so they never look like glexec's own codes;
    death by signal N becomes 128+N, as a shell reports it.
    """
    if signal_number is not None:
        return 128 + signal_number
    if EXIT_CLIENT <= wait_status_exitcode <= EXIT_PAYLOAD_COLLIDES:
        return EXIT_PAYLOAD_COLLIDES
    return wait_status_exitcode
