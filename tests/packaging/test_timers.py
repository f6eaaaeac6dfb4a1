"""The shipped schedule (packaging/systemd/*.timer and packaging/cron.d/glexec-py) runs
``glexec-leases confirm``: with the PostgreSQL lease store it posts this node's prune-users /
glexec-sweep records to the lease database, so that the expire job of another node releases
the account; with the gridmapdir it does nothing and succeeds.

The confirm job is run as each schedule runs it -- the service's ExecStart (what its timer
starts) and the cron line through /bin/sh (its systemd guard made false, so that the cron
body runs on a host with systemd too) -- with the shipped files' paths moved to the
installed test prefix, as make install moves them.  ``logger`` is replaced on the cron
line's PATH by a recorder: the cron line reports a failure only through it."""
import configparser
import json
import os
import shlex
import subprocess
import time
from pathlib import Path

import pytest

from tests.support import install as inst
from tests.support.postgres import postgres  # noqa: F401  (session fixture)

REPO = inst.REPO_ROOT
UNITS = REPO / "packaging" / "systemd"
CRON = REPO / "packaging" / "cron.d" / "glexec-py"
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C", "HOME": "/root"}
POOL = "gxtcnf"


def fix_paths(text, prefix):
    """The Makefile's FIX_PATHS for a PREFIX install (conf and state under the prefix):
    through markers, so that a replacement is never matched again by the next one."""
    pairs = (("/usr/sbin/", f"{prefix}/sbin/"), ("/etc/glexec-py/", f"{prefix}/etc/glexec-py/"),
             ("/var/lib/glexec-py", f"{prefix}/var/lib/glexec-py"),
             ("/var/log/glexec-py", f"{prefix}/var/log/glexec-py"))
    for n, (fhs, _here) in enumerate(pairs):
        text = text.replace(fhs, f"@{n}@")
    for n, (_fhs, here) in enumerate(pairs):
        text = text.replace(f"@{n}@", here)
    return text


def service(name, prefix=None):
    """(argv, success statuses, [Service] section) of a shipped service."""
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.optionxform = str
    text = (UNITS / f"{name}.service").read_text()
    unit.read_string(fix_paths(text, prefix) if prefix else text)
    svc = unit["Service"]
    ok = {0} | {int(x) for x in svc.get("SuccessExitStatus", "").split()}
    return shlex.split(svc["ExecStart"]), ok, svc


def cron_lines():
    return [line for line in CRON.read_text().splitlines()
            if line.strip() and not line.startswith("#") and "=" not in line.split()[0]]


def cron_command(words, prefix=None):
    """The command of the cron line that runs ``words``."""
    [line] = [x for x in cron_lines() if words in x]
    command = line.split(None, 6)[6]
    return fix_paths(command, prefix) if prefix else command


def test_every_timer_has_its_cron_line_and_its_package_entry():
    """Pure: the two schedules agree; the confirm job is in both, and in the Debian
    package; the jobs that talk to the lease database may use the network."""
    timers = sorted(p.stem for p in UNITS.glob("*.timer"))
    assert "glexec-leases-confirm" in timers
    rules = (REPO / "debian" / "rules").read_text()
    for name in timers:
        argv, _ok, _svc = service(name)
        command = " ".join(argv)
        assert any(command in line and line.split()[5] == "root" for line in cron_lines()), name
        assert f"dh_installsystemd --name={name} {name}.timer" in rules, name
    assert service("glexec-leases-confirm")[0] == ["/usr/sbin/glexec-leases", "confirm"]
    for name in ("glexec-leases-confirm", "glexec-leases-expire"):
        assert service(name)[2].get("PrivateNetwork", "no") == "no", name


def _run_cron(command, tmp, env=None):
    """``command`` through /bin/sh as cron would, its systemd guard false; returns
    (exit status, what it gave logger)."""
    fake = tmp / "fakebin"
    fake.mkdir(exist_ok=True)
    logged = tmp / "logger.out"
    (fake / "logger").write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {logged}\n')
    os.chmod(fake / "logger", 0o755)
    assert command.startswith("[ -d /run/systemd/system ] || ")
    body = "false || " + command[len("[ -d /run/systemd/system ] || "):]
    p = subprocess.run(["/bin/sh", "-c", body], env={**ENV, "PATH": f"{fake}:{ENV['PATH']}", **(env or {})},
                       cwd="/", capture_output=True, text=True, timeout=120)
    return p.returncode, logged.read_text() if logged.exists() else ""


def _write_config(prefix, **over):
    inst.write_config(prefix, **over)


@pytest.fixture
def node_config(prefix):
    """Writes the installed prefix's glexec.yaml for one "node"; the default back after."""
    made = []

    def write(node=None, conninfo_file=None):
        state = Path(prefix) / "var" / "lib" / f"glexec-py-{node or 'plain'}"
        for d in (state, state / "prune", state / "sweep"):
            d.mkdir(mode=0o700, exist_ok=True)
        made.append(state)
        over = {"state_dir": str(state)}
        if conninfo_file:
            over.update(mapping={"gridmapfile": str(inst.gridmap_path(prefix)), "min_uid": 1000,
                                 "lease_store": "postgresql"},
                        postgresql={"conninfo_file": str(conninfo_file), "node": node})
        _write_config(prefix, **over)
        return state
    yield write
    inst.write_config(prefix)
    import shutil
    for d in set(made):           # inside the session's test prefix, which goes with it
        assert Path(prefix) in d.parents
        shutil.rmtree(d)


def test_confirm_is_a_no_op_with_the_gridmapdir(prefix, node_config, tmp_path):
    node_config()
    argv, ok, _svc = service("glexec-leases-confirm", prefix)
    p = subprocess.run(argv, env=ENV, cwd="/", capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.returncode in ok, p
    assert p.stdout.startswith("nothing to confirm") and p.stderr == "", p
    rc, logged = _run_cron(cron_command("glexec-leases confirm", prefix), tmp_path)
    assert (rc, logged) == (0, "")


def _idle_records(state, account):
    """This node's prune-users and glexec-sweep records: no processes, no files, now."""
    boot = open("/proc/sys/kernel/random/boot_id").read().strip()
    now = time.time()
    for sub, rec in (("prune", {"v": 1, "result": "no_processes", "boot_id": boot, "time": now}),
                     ("sweep", {"v": 1, "state": "no_files", "swept_at_unix": now})):
        p = state / sub / f"{account}.json"
        p.write_text(json.dumps(rec))
        os.chmod(p, 0o644)


def test_confirm_posts_this_nodes_records_and_another_node_releases(prefix, node_config,
                                                                     postgres, tmp_path):  # noqa: F811
    from glexec_py.core.leases import LeaseOwner
    from glexec_py.effects.pgleases import PgLeaseStore
    conninfo = postgres.conninfo(postgres.fresh_db())
    cfile = Path(prefix) / "etc" / "glexec-py" / "timers.conninfo"
    fd = os.open(cfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, conninfo.encode() + b"\n")
    os.close(fd)
    try:
        who = [(b"/DC=test/CN=Timer %d" % i, LeaseOwner(("x509", "CN=Timer %d,DC=test" % i),
                                                         b"/DC=test/CN=Timer %d" % i, True))
               for i in range(2)]
        with PgLeaseStore(conninfo, node="nodeA") as s:
            s.add_accounts(POOL, [f"{POOL}01", f"{POOL}02"])
            accounts = [s.acquire(dn, POOL, owner=o)[0].decode() for dn, o in who]
            names = list(s.leases())
            for name in names:
                s.drain(name)
        time.sleep(0.05)                     # the records below are observed after the drain
        state_a = node_config("nodeA", cfile)
        for a in accounts:
            _idle_records(state_a, a)

        def confirmations():
            with PgLeaseStore(conninfo, node="admin") as s:
                return {a: s.confirmations(a) for a in accounts}
        # the cron form on node A: nothing reported, A's confirmations of both accounts posted
        rc, logged = _run_cron(cron_command("glexec-leases confirm", prefix), tmp_path)
        assert (rc, logged) == (0, "")
        got = confirmations()
        assert {a: sorted(c) for a, c in got.items()} == {
            a: [("nodeA", "prune"), ("nodeA", "sweep")] for a in accounts}
        # the timer's service on node A again: newer records replace the older ones
        for a in accounts:
            _idle_records(state_a, a)
        argv, ok, _svc = service("glexec-leases-confirm", prefix)
        p = subprocess.run(argv, env=ENV, cwd="/", capture_output=True, text=True, timeout=120)
        assert p.returncode in ok and "4 confirmation(s) posted from node nodeA" in p.stdout, p
        again = confirmations()
        assert all(again[a][k] > got[a][k] for a in accounts for k in got[a])
        # node B's expire job (its own config, no records of its own) releases both
        node_config("nodeB", cfile)
        argv, ok, _svc = service("glexec-leases-expire", prefix)
        p = subprocess.run(argv + ["--older-than", "0", "--grace", "0", "--json"], env=ENV, cwd="/",
                           capture_output=True, text=True, timeout=120)
        assert p.returncode in ok, p
        done = json.loads(p.stdout)["done"]
        assert sorted((d["account"], d["done"]) for d in done) == [(a, "released") for a in sorted(accounts)]
        with PgLeaseStore(conninfo, node="admin") as s:
            assert s.leases() == {}
            ended = s._q("SELECT account, ended_by FROM lease_history ORDER BY account")
        assert ended == [(a, "release") for a in sorted(accounts)]
    finally:
        cfile.unlink(missing_ok=True)


def test_without_a_posting_node_nothing_is_released(prefix, node_config, postgres):  # noqa: F811
    """The same lease, node A's records written but its confirm job never run: node B's
    expire job leaves it draining (the confirmation is what the timer adds)."""
    from glexec_py.core.leases import LeaseOwner
    from glexec_py.effects.pgleases import PgLeaseStore
    conninfo = postgres.conninfo(postgres.fresh_db())
    cfile = Path(prefix) / "etc" / "glexec-py" / "timers.conninfo"
    fd = os.open(cfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.write(fd, conninfo.encode() + b"\n")
    os.close(fd)
    try:
        dn = b"/DC=test/CN=Timer 9"
        with PgLeaseStore(conninfo, node="nodeA") as s:
            s.add_accounts(POOL, [f"{POOL}01"])
            account = s.acquire(dn, POOL, owner=LeaseOwner(("x509", "CN=Timer 9,DC=test"), dn, True))[0]
            s.drain(next(iter(s.leases())))
        time.sleep(0.05)
        _idle_records(node_config("nodeA", cfile), account.decode())
        node_config("nodeB", cfile)
        argv, ok, _svc = service("glexec-leases-expire", prefix)
        p = subprocess.run(argv + ["--older-than", "0", "--grace", "0", "--json"], env=ENV, cwd="/",
                           capture_output=True, text=True, timeout=120)
        assert p.returncode in ok, p
        [plan] = json.loads(p.stdout)["plan"]
        assert plan["action"] == "wait" and "nodeA" in plan["why"], plan
        with PgLeaseStore(conninfo, node="admin") as s:
            assert [rec["state"] for _a, rec, _t in s.leases().values()] == ["draining"]
    finally:
        cfile.unlink(missing_ok=True)
