"""Log-only mode: the shim installed without its setuid bit. Same decisions and audit; the
payload runs as the caller."""
import os
import stat

import pytest


@pytest.fixture
def log_only(gx):
    """Drop the setuid bit for one test; pre-create the audit file for the pilots' group
    (the engine runs as the caller and cannot create root files)."""
    glexec = gx.glexec
    os.chmod(glexec, 0o755)
    audit = gx.audit_file
    audit.touch()
    os.chown(audit, 0, gx.accounts.pilot.gid)
    os.chmod(audit, 0o620)
    logdir = audit.parent
    old_mode = stat.S_IMODE(os.stat(logdir).st_mode)
    os.chmod(logdir, 0o755)  # the caller must reach the file
    try:
        yield gx
    finally:
        os.chmod(glexec, 0o4755)
        os.chmod(logdir, old_mode)
        os.chmod(audit, 0o600)
        os.chown(audit, 0, 0)


def test_log_only_runs_payload_as_caller_and_audits_mapping(log_only):
    gx = log_only
    r = gx.run(["/usr/bin/id", "-un"])
    assert r.returncode == 0, r
    assert r.stderr == b"", r
    assert r.stdout == b"gxtpilot\n"
    grant = r.grants[0]
    assert grant["log_only"] is True
    assert grant["account"] == "gxttarget1"  # the mapping that would have been used
    assert r.ends and r.ends[0]["status"] == 0


def test_log_only_refuses_like_setuid_mode(log_only):
    gx = log_only
    r = gx.run(["/usr/bin/id"], user="gxtoutsider")
    # the outsider is not in the audit file's group: no record can be written, yet it is refused
    assert r.returncode == 203, r
    r = gx.run(["/usr/bin/id"], proxy=gx.proxy("user1", mode=0o644))
    gx.assert_refused(r, 201, "credential_mode")


def test_log_only_audit_file_writable_by_others_is_refused(log_only):
    gx = log_only
    os.chmod(gx.audit_file, 0o622)
    marker = gx.marker("logonly-ran")
    r = gx.run(["/bin/sh", "-c", f"touch {marker}"])
    assert r.returncode == 202, r
    assert not marker.exists()


def test_log_only_checks_the_pam_service_but_not_the_account(log_only):
    gx = log_only
    r = gx.run(["/bin/true"])
    assert r.returncode == 0, r
    assert r.grants[0]["pam"]["account"] == "not_checked_log_only"
    gx.config(pam={"service": "gxt-test-missing"})
    r = gx.run(["/bin/true"])
    assert r.returncode == 202 and r.refusals[0]["reason"] == "pam_service", r
