"""The Debian package on this machine: build it (make deb), dpkg -i, run the packaged
/usr/sbin/glexec as real unprivileged users with real proxies, run every installed timer's
service command on the fresh install, then dpkg --purge and check nothing of it remains.

Holds the machine-wide session lock (other sessions wait); the package is purged on the way
out also when a test failed (tests/support/system_install.py)."""
import configparser
import os
import re
import shlex
import subprocess
import time
from pathlib import Path

import pytest

from tests.support import system_install as sysinst

from .conftest import GX, USER1_DN, USER2_DN

UNIT_DIR = Path("/lib/systemd/system")
TIMER_WANTS = Path("/etc/systemd/system/timers.target.wants")


@pytest.fixture(scope="module")
def deb(session_lock, accounts, pkis, run_dir, request):
    """The package built from this tree and installed (once for this module)."""
    t0 = time.monotonic()
    state = {}

    def fin():
        if sysinst.installed() and sysinst.MARKER.is_file():
            sysinst.purge()
        print(f"\n[test_deb] build + install + tests + purge: {time.monotonic() - t0:.1f} s; "
              f"build {state.get('build', 0):.1f} s, dpkg -i {state.get('install', 0):.1f} s")
    request.addfinalizer(fin)
    out = run_dir / "deb"
    path = sysinst.build_deb(out)
    state["build"] = time.monotonic() - t0
    t1 = time.monotonic()
    sysinst.install_deb(path)
    state["install"] = time.monotonic() - t1
    return path


def test_lintian_has_nothing_unjustified(deb):
    """Every lintian finding (also info and pedantic) is fixed or overridden with its reason
    in debian/glexec-py.lintian-overrides."""
    p = subprocess.run(["lintian", "-EvIL", "+pedantic", str(deb)], capture_output=True,
                       text=True, timeout=300)
    findings = [line for line in p.stdout.splitlines() if re.match(r"[EWIPX]: ", line)]
    assert p.returncode == 0 and not findings, (findings, p.stderr[-2000:])


def test_installed_layout(deb):
    st = sysinst.GLEXEC.stat()
    assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o4755, 0, 0)
    for d in (sysinst.AUDIT.parent, sysinst.STATE_DIR):
        assert (d.stat().st_mode & 0o7777, d.stat().st_uid) == (0o700, 0), d
    conffiles = subprocess.run(["dpkg-query", "-W", "-f=${Conffiles}", "glexec-py"],
                               capture_output=True, text=True).stdout
    for f in ("/etc/glexec-py/glexec.yaml", "/etc/glexec-py/access.conf", "/etc/pam.d/glexec",
              "/etc/logrotate.d/glexec-py", "/etc/cron.d/glexec-py"):
        assert f" {f} " in conffiles, (f, conffiles)
    for tool in ("glexec-backmap", "glexec-leases", "glexec-sutest", "glexec-sweep", "prune-users"):
        assert os.access(f"/usr/sbin/{tool}", os.X_OK), tool
    for page, section in [("glexec", 8), ("glexec.yaml", 5), ("glexec-leases", 8)]:
        p = subprocess.run(["man", "-w", str(section), page], capture_output=True, text=True)
        assert p.stdout.strip() == f"/usr/share/man/man{section}/{page}.{section}.gz", p
    # The postinst compiled the engine (hash-based, never re-validated: flags == 1).
    pycs = list(Path("/usr/lib/glexec-py/glexec_py/__pycache__").glob("engine.*.pyc"))
    assert len(pycs) == 1 and int.from_bytes(pycs[0].read_bytes()[4:8], "little") == 1
    # One configuration path: the shim's compiled-in one is the installed site_paths'.
    ns = {}
    exec(Path("/usr/lib/glexec-py/glexec_py/site_paths.py").read_text(), ns)
    assert (ns["CONFIG_FILE"], ns["STATE_DIR"], ns["LOG_DIR"]) == \
        ("/etc/glexec-py/glexec.yaml", "/var/lib/glexec-py", "/var/log/glexec-py")
    p = subprocess.run([str(sysinst.GLEXEC), "-V"], capture_output=True, text=True, env={}, cwd="/")
    assert p.returncode == 0, p
    assert f'GLEXEC_CONFIG_FILE="{ns["CONFIG_FILE"]}"' in p.stdout.splitlines(), p.stdout
    # The timers are the active schedule: enabled by the package.
    for timer in timers():
        assert (TIMER_WANTS / timer.name).is_symlink(), timer
    p = subprocess.run(["logrotate", "-d", "/etc/logrotate.d/glexec-py"], capture_output=True, text=True)
    assert p.returncode == 0 and "error" not in p.stderr.lower(), p.stderr


def timers():
    found = sorted(UNIT_DIR.glob("glexec-*.timer"))
    assert {t.stem for t in found} == {"glexec-prune-users", "glexec-sweep", "glexec-leases-expire",
                                     "glexec-leases-confirm"}
    return found


def service_command(timer: Path):
    """(argv, success statuses) of the service a timer starts."""
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.optionxform = str
    unit.read(timer.with_suffix(".service"))
    svc = unit["Service"]
    ok = {0} | {int(x) for x in svc.get("SuccessExitStatus", "").split()}
    return shlex.split(svc["ExecStart"]), ok


def test_every_timer_of_a_fresh_install_succeeds(deb):
    """With the configuration as shipped, each timer's service command exits with one of its
    success statuses (what systemd would record as success)."""
    failures = []
    for timer in timers():
        argv, ok = service_command(timer)
        assert argv[0].startswith("/usr/sbin/") and "--config" not in argv, argv
        p = subprocess.run(argv, capture_output=True, text=True, env=sysinst.ENV, cwd="/",
                           timeout=600)
        if p.returncode not in ok:
            failures.append(f"{timer.name}: {shlex.join(argv)} -> exit {p.returncode} "
                            f"(success: {sorted(ok)}): {p.stderr.strip()[-400:]}")
    assert not failures, "\n".join(failures)


@pytest.fixture
def sgx(deb, accounts, pkis, run_dir, request):
    """A GX helper for the packaged glexec (/usr/sbin/glexec, /var/log/glexec-py)."""
    sysinst.write_system_config(pkis.pki, [(USER1_DN, "gxttarget1"), (USER2_DN, "gxttarget2")])
    box = run_dir / f"deb-{request.node.name}"[:60]
    box.mkdir()
    os.chown(box, accounts.pilot.uid, accounts.pilot.gid)
    (box / "out").mkdir()
    os.chmod(box / "out", 0o1777)
    g = GX(Path("/usr"), accounts, pkis, box)
    g.audit_file = sysinst.AUDIT
    return g


def test_real_proxy_maps_to_the_account(sgx, accounts):
    r = sgx.run(["/usr/bin/id", "-un"])
    sgx.assert_granted(r)
    assert r.stdout == b"gxttarget1\n"
    rec = r.grants[0]
    assert (rec["caller"]["user"], rec["dn"], rec["account"], rec["uid"]) == \
        ("gxtpilot", USER1_DN, "gxttarget1", accounts.target1.uid), rec
    st = sysinst.AUDIT.stat()
    assert (st.st_uid, st.st_mode & 0o777) == (0, 0o600)
    r = sgx.run(["/usr/bin/id", "-u"], proxy=sgx.proxy("user2"))
    sgx.assert_granted(r)
    assert r.stdout == f"{accounts.target2.uid}\n".encode()


@pytest.mark.parametrize("case, user, proxy, code, reason", [
    ("unmapped DN", "gxtpilot", "user3", 203, "no_mapping"),
    ("expired proxy", "gxtpilot", "expired", 201, "credential_expired"),
    ("no credential", "gxtpilot", None, 201, "no_credential"),
    ("caller not allowed", "gxtoutsider", "default", 203, "caller_not_allowed"),
])
def test_refusals(sgx, case, user, proxy, code, reason):
    marker = sgx.marker("ran")
    argv = ["/bin/sh", "-c", f"touch {marker}"]
    r = sgx.run(argv, user=user, proxy=sgx.proxy(proxy, owner=user) if proxy not in (None, "default") else proxy)
    sgx.assert_refused(r, code, reason)
    assert not marker.exists()


def test_purge_leaves_nothing(deb):
    files = sysinst.package_files()
    sysinst.purge()
    assert not sysinst.installed()
    ours = [p for p in files if "glexec" in str(p)]
    assert len(ours) > 20, ours
    left = [p for p in ours if os.path.lexists(p)]
    assert not left, left
    for p in (sysinst.ETC, sysinst.AUDIT.parent, sysinst.STATE_DIR, Path("/usr/lib/glexec-py")):
        assert not os.path.lexists(p), p
    leftovers = [str(p) for d in (TIMER_WANTS, Path("/var/lib/systemd/deb-systemd-helper-enabled"),
                                  Path("/var/lib/systemd/deb-systemd-helper-enabled/timers.target.wants"))
                 if d.is_dir() for p in d.iterdir() if re.match(r"glexec-", p.name)]
    assert not leftovers, leftovers


def test_dpkg_statoverride_is_respected(deb):
    """A site that registered another mode for /usr/sbin/glexec gets that mode, not 4755."""
    path = str(sysinst.GLEXEC)
    listed = subprocess.run(["dpkg-statoverride", "--list", path], capture_output=True)
    assert listed.returncode == 1, f"a statoverride for {path} exists already: {listed.stdout!r}"
    subprocess.run(["dpkg-statoverride", "--add", "root", "root", "0750", path], check=True)
    try:
        sysinst.install_deb(deb)
        st = sysinst.GLEXEC.stat()
        assert (st.st_mode & 0o7777, st.st_uid) == (0o750, 0)
    finally:
        try:
            if sysinst.installed():
                sysinst.purge()
        finally:
            subprocess.run(["dpkg-statoverride", "--remove", path], check=True)
