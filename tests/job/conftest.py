"""Fixtures for the job-side tests (issue 11): the unpacker and collector run as a real
unprivileged test account, from a root-owned copy of the tool code.

Accounts: ``gxtjob1`` (uid/gid 47360) runs the job; ``gxtjob2`` (47361) is another account
whose files must never come out.  Created under the machine-wide session lock and removed
afterwards (also on failure).  Scratch: ``/var/lib/glexec-py-tests/job-<random>`` (root 0755)."""
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
for p in (REPO, os.path.join(REPO, "tools")):
    if p not in sys.path:
        sys.path.insert(0, p)

from tests.support import accounts as acc  # noqa: E402
from tests.support.runas import run_as  # noqa: E402

PY = "/usr/bin/python3"
USERS = {"gxtjob1": 47360, "gxtjob2": 47361}   # 47300-47349: tests/importer


def inner_argv(tools_dir):
    """The inner entry point as glexec will start it (``python3 -I -m``), with the code dir
    put on sys.path first (-I ignores PYTHONPATH)."""
    boot = ("import sys, runpy; sys.path[:0] = [%r]; "
            "runpy.run_module('glexec_tools.job.inner', run_name='__main__', alter_sys=True)" % tools_dir)
    return [PY, "-I", "-c", boot]


@pytest.fixture(scope="session")
def job_accounts():
    if os.geteuid() != 0:
        pytest.skip("the job-side tests run the tools as real test accounts: need root")
    with acc.session_lock():
        def remove():
            for name in USERS:
                acc.remove_user(name)
                acc.remove_group(name)
        remove()
        try:
            out = {}
            for name, uid in USERS.items():
                acc.create_group(name, uid)
                out[name] = acc.create_user(name, uid, name)
            yield out
        finally:
            remove()


@pytest.fixture(scope="session")
def job_base(job_accounts):
    """A root-owned 0755 scratch dir with a root-owned copy of the tool code in ``tools``."""
    acc._ensure_home_base()
    base = tempfile.mkdtemp(prefix="job-", dir=str(acc.TESTS_BASE))
    os.chmod(base, 0o755)
    src = os.path.join(REPO, "tools", "glexec_tools")
    dst = os.path.join(base, "tools", "glexec_tools")
    os.makedirs(os.path.join(dst, "job"), mode=0o755)
    os.chmod(os.path.join(base, "tools"), 0o755)
    os.chmod(dst, 0o755)
    shutil.copy(os.path.join(src, "__init__.py"), dst)
    for f in os.listdir(os.path.join(src, "job")):
        if f.endswith(".py"):
            shutil.copy(os.path.join(src, "job", f), os.path.join(dst, "job"))
    for root, dirs, files in os.walk(os.path.join(base, "tools")):
        for d in dirs:
            os.chmod(os.path.join(root, d), 0o755)
        for f in files:
            os.chmod(os.path.join(root, f), 0o644)
    try:
        yield base
    finally:
        subprocess.run(["chattr", "-R", "-i", base], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


class Runner:
    def __init__(self, base, account):
        self.base, self.account = base, account
        self.inner = inner_argv(os.path.join(base, "tools"))

    def run(self, argv, timeout=120, stdin=None):
        return run_as(self.account.name, argv, timeout=timeout, cwd="/", stdin=stdin)

    def unpack(self, job, archive, *caps):
        return self.run(self.inner + ["unpack", "--dir", job, "--archive", archive, *caps])

    def collect(self, job, out, manifest, *outputs, max_bytes=None):
        extra = ["--max-bytes", str(max_bytes)] if max_bytes is not None else []
        return self.run(self.inner + ["collect", "--dir", job, "--out", out, "--manifest", manifest,
                                      *extra, *outputs])

    def mkdir(self, path, mode=0o700, owner=None):
        os.mkdir(path, mode)
        a = owner or self.account
        os.chown(path, a.uid, a.gid)
        os.chmod(path, mode)
        return path


@pytest.fixture(scope="session")
def runner(job_base, job_accounts):
    return Runner(job_base, job_accounts["gxtjob1"])
