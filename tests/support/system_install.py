"""The Debian package installed on this machine, for the packaging tests (root, under the
session lock).

    deb = build_deb(out_dir)                  # make deb DEB_OUT=out_dir -> the .deb
    install_deb(deb)                          # dpkg -i; refuses to touch a site's glexec-py
    write_system_config(pki, gridmap)         # /etc/glexec-py/glexec.yaml, grid-mapfile, CAs
    purge()                                   # our test files, then dpkg --purge

A machine that has glexec-py (or a /usr/sbin/glexec, /etc/glexec-py) that these helpers did
not install is left alone: InstallError, never a purge of someone's installation.  The
marker file says the installed package is ours (a crashed session's leftover is purged).
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from . import install as inst

PACKAGE = "glexec-py"
ETC = Path("/etc/glexec-py")
MARKER = ETC / ".gxt-test-install"
CONFIG = ETC / "glexec.yaml"
GRIDMAP = ETC / "grid-mapfile"
TRUST_DIR = ETC / "certificates"
AUDIT = Path("/var/log/glexec-py/audit.jsonl")
STATE_DIR = Path("/var/lib/glexec-py")
GLEXEC = Path("/usr/sbin/glexec")
ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C",
       "HOME": "/root", "DEBIAN_FRONTEND": "noninteractive"}


def _run(cmd, timeout=600):
    p = subprocess.run(cmd, capture_output=True, env=ENV, timeout=timeout)
    if p.returncode != 0:
        raise inst.InstallError(f"{' '.join(map(str, cmd))} failed ({p.returncode}):\n"
                                f"{(p.stdout + p.stderr).decode(errors='replace')[-4000:]}")
    return p


def installed() -> bool:
    """Installed, or removed with its configuration files left (dpkg's "config-files")."""
    p = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Status}", PACKAGE],
                       capture_output=True, env=ENV)
    return p.returncode == 0 and p.stdout.strip() not in (b"", b"not-installed")


def build_deb(out_dir: Path) -> Path:
    """``make deb`` into ``out_dir`` (a copy of the tree is built there): the .deb path."""
    _run(["make", "-s", "-C", str(inst.REPO_ROOT), "deb", f"DEB_OUT={out_dir}"])
    debs = sorted(Path(out_dir).glob(f"{PACKAGE}_*.deb"))
    if len(debs) != 1:
        raise inst.InstallError(f"make deb made {debs}, want one {PACKAGE}_*.deb")
    return debs[0]


def install_deb(deb: Path) -> None:
    if installed():
        if not MARKER.is_file():
            raise inst.InstallError(f"{PACKAGE} is installed on this machine and not by the "
                                    "tests: not touching it")
        purge()                                 # a crashed session's leftover
    for p in (GLEXEC, ETC, AUDIT.parent, STATE_DIR):
        if os.path.lexists(p):
            raise inst.InstallError(f"{p} exists without the {PACKAGE} package: not touching it")
    _run(["dpkg", "-i", str(deb)])
    MARKER.write_text("installed by the glexec-py test suite (tests/support/system_install.py)\n")


def write_system_config(pki, gridmap_entries, **overrides) -> None:
    """The test policy for the packaged glexec at its FHS paths (the shipped PAM service)."""
    inst.install_trust_dir(None, pki, dest=TRUST_DIR)
    inst._write_root_file(GRIDMAP, "".join(f'"{dn}" {account}\n'
                                           for dn, account in gridmap_entries).encode(), 0o644)
    cfg = {
        "callers": {"users": ["gxtpilot"], "groups": ["gxtpilotgrp"], "omission_private_key": []},
        "credentials": {"ca_dir": str(TRUST_DIR), "max_file_size": 65536},
        "mapping": {"gridmapfile": str(GRIDMAP), "min_uid": 1000},
        "audit": {"file": str(AUDIT), "syslog": False},
        "payload": {"linger": True, "preserve_env": [], "keep_caller_groups": []},
        "target_proxy": {"create": True, "default_dir": "/tmp"},
        "pam": {"enabled": True, "service": "glexec"},
        "state_dir": str(STATE_DIR),
    }
    inst._write_root_file(CONFIG, inst.render_yaml(inst._merge(cfg, overrides)).encode(), 0o644)


def package_files() -> list[Path]:
    return [Path(x) for x in _run(["dpkg-query", "-L", PACKAGE]).stdout.decode().splitlines()
            if x.startswith("/")]


def purge() -> None:
    """Remove what the tests put into /etc/glexec-py, then ``dpkg --purge`` (which removes
    the package's files, conffiles, the audit log and the state)."""
    if GRIDMAP.is_file():
        GRIDMAP.unlink()
    if TRUST_DIR.is_dir() and not TRUST_DIR.is_symlink():
        shutil.rmtree(TRUST_DIR)
    if MARKER.is_file():
        MARKER.unlink()
    _run(["dpkg", "--purge", PACKAGE])
