"""effects.pam.check_service on real root-owned service files (a private pam.d, so the
system's /etc/pam.d is never touched): the checks the engine makes before PAM is started,
in process (the end-to-end versions are tests/privileged/test_e2e_pam.py)."""
import os

import pytest

from glexec_py.effects import pam
from glexec_py.errors import SystemFault

STACK = b"account required pam_unix.so\nsession required pam_limits.so\n"


@pytest.fixture
def pamd(root_dir):
    return root_dir


def write(d, name, text, mode=0o644):
    p = os.path.join(d, name)
    with open(p, "wb") as f:
        f.write(text)
    os.chmod(p, mode)


def refused(d, reason="pam_service"):
    with pytest.raises(SystemFault) as e:
        pam.check_service("glexec", pam_dir=d)
    assert (e.value.exit_code, e.value.reason) == (202, reason)
    return e.value


def test_the_shipped_service_passes(pamd):
    with open(os.path.join(os.path.dirname(__file__), "..", "..", "packaging", "pam.d", "glexec"), "rb") as f:
        write(pamd, "glexec", f.read())
    pam.check_service("glexec", pam_dir=pamd)


def test_missing_service_file(pamd):
    # Linux-PAM would fall back to "other" (Debian's includes pam_systemd)
    assert refused(pamd).detail["path"] == f"{pamd}/glexec"


@pytest.mark.parametrize("mode", [0o664, 0o646])
def test_service_file_writable_by_others(pamd, mode):
    write(pamd, "glexec", STACK, mode)
    refused(pamd, "untrusted_install")


def test_service_file_not_owned_by_root(pamd):
    write(pamd, "glexec", STACK)
    os.chown(os.path.join(pamd, "glexec"), 47001, 0)
    refused(pamd, "untrusted_install")


@pytest.mark.parametrize("how", ["session optional pam_systemd.so\n",
                                 "-session optional /lib/x86_64-linux-gnu/security/pam_systemd.so\n"])
def test_pam_systemd_in_the_stack(pamd, how):
    write(pamd, "glexec", STACK + how.encode())
    assert refused(pamd).detail["modules"] == ["pam_systemd.so"]


@pytest.mark.parametrize("how", [b"@include common-session\n", b"session include common-session\n",
                                 b"session substack common-session\n"])
def test_pam_systemd_through_an_include(pamd, how):
    write(pamd, "glexec", STACK + how)
    write(pamd, "common-session", b"session optional pam_systemd.so\n")
    assert refused(pamd).detail["path"] == f"{pamd}/common-session"


def test_included_file_must_be_safe_and_present(pamd):
    write(pamd, "glexec", STACK + b"@include common-account\n")
    refused(pamd)                                  # missing include
    write(pamd, "common-account", b"account required pam_unix.so\n", 0o666)
    refused(pamd, "untrusted_install")             # writable by others
    os.chmod(os.path.join(pamd, "common-account"), 0o644)
    pam.check_service("glexec", pam_dir=pamd)
