"""The RPM spec builds here (rpmbuild -bb --nodeps with Debian's rpm: packaging/rpm/README)
and the package has the FHS layout, the setuid bit from %attr and the configuration files
as %config(noreplace)."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_rpmbuild_succeeds_and_the_rpm_is_laid_out(tmp_path):
    if shutil.which("rpmbuild") is None:
        pytest.fail("rpmbuild is not installed (make pkg-deps)")
    top = tmp_path / "rpm"
    p = subprocess.run([str(REPO / "packaging" / "rpm" / "build.sh")], capture_output=True,
                       env={**os.environ, "RPM_TOPDIR": str(top)}, timeout=900)
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    (rpm,) = top.glob("RPMS/*/glexec-py-*.rpm")
    q = subprocess.run(["rpm", "-qp", "--qf", "[%{FILEMODES:perms} %{FILEUSERNAME} %{FILEFLAGS:fflags} %{FILENAMES}\n]",
                        str(rpm)], capture_output=True, text=True, check=True).stdout
    files = {line.split()[-1]: line.split()[:-1] for line in q.splitlines()}
    assert files["/usr/sbin/glexec"][:2] == ["-rwsr-xr-x", "root"]
    for conf in ("/etc/glexec-py/glexec.yaml", "/etc/glexec-py/access.conf", "/etc/pam.d/glexec",
                 "/etc/cron.d/glexec-py", "/etc/logrotate.d/glexec-py"):
        assert files[conf][2] == "cn", (conf, files[conf])        # %config(noreplace)
    for d in ("/var/log/glexec-py", "/var/lib/glexec-py"):
        assert files[d][:2] == ["drwx------", "root"], files[d]
    for tool in ("glexec-backmap", "glexec-leases", "glexec-sweep", "prune-users"):
        assert f"/usr/sbin/{tool}" in files
    assert "/usr/share/man/man8/glexec.8" in files or "/usr/share/man/man8/glexec.8.gz" in files
    assert any(f.endswith("/glexec-leases-expire.timer") for f in files)
