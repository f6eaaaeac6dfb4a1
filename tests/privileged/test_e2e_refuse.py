"""End-to-end refusals: exit code, exactly one 'glexec: ' stderr line, payload never runs,
exactly one audit record with event=refuse, exit and reason."""
import os
import stat
import subprocess

import pytest

from tests.support import install as inst

SH = os.path.realpath("/bin/sh")


def canary(gx, name="ran"):
    """argv of a payload that would leave a marker; returns (argv, marker path)."""
    m = gx.marker(name)
    return [SH, "-c", f'echo ran > "{m}"'], m


# --- 203: caller / authorisation -------------------------------------------------------------

def test_caller_not_in_whitelist(gx):
    argv, m = canary(gx)
    r = gx.run(argv, user="gxtoutsider")
    gx.assert_refused(r, 203, "caller_not_allowed")
    assert not m.exists()
    rec = r.refusals[0]
    if isinstance(rec.get("caller"), dict):
        assert rec["caller"]["uid"] == 47002


def test_caller_not_allowed_even_without_credential(gx):
    argv, m = canary(gx)
    r = gx.run(argv, user="gxtoutsider", proxy=None)
    gx.assert_refused(r, 203, "caller_not_allowed")
    assert not m.exists()


def test_dn_not_in_gridmapfile(gx):
    argv, m = canary(gx)
    r = gx.run(argv, proxy=gx.proxy("user3"))
    gx.assert_refused(r, 203, "no_mapping")
    assert not m.exists()


def test_empty_gridmapfile(gx):
    gx.gridmap([])
    argv, m = canary(gx)
    r = gx.run(argv)
    gx.assert_refused(r, 203, "no_mapping")
    assert not m.exists()


# --- 201: credential -------------------------------------------------------------------------

def test_no_credential(gx):
    argv, m = canary(gx)
    r = gx.run(argv, proxy=None)
    gx.assert_refused(r, 201, "no_credential")
    assert not m.exists()


def test_someone_elses_proxy(gx):
    argv, m = canary(gx)
    other = gx.proxy("user1", owner="gxtoutsider")
    r = gx.run(argv, proxy=other)
    gx.assert_refused(r, 201, "credential_owner")
    assert not m.exists()


def test_listed_root_caller_cannot_use_another_users_proxy(gx):
    """Root reads every file, so for a root caller only the fstat owner check (not the
    kernel's permission check as the caller) stops it from presenting a pilot's proxy."""
    argv, m = canary(gx)
    gx.config(callers={"users": ["gxtpilot", "root"]})
    theirs = gx.proxy("user1")           # gxtpilot's, 0600
    p = subprocess.run([gx.glexec, *argv], env={"PATH": "/usr/bin:/bin", "GLEXEC_CLIENT_CERT": str(theirs)},
                       cwd=str(gx.box), stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    assert p.returncode == 201 and p.stderr.count(b"\n") == 1, p
    assert gx.audit()[-1]["reason"] == "credential_owner"
    assert not m.exists()
    mine = gx.proxy("user1", owner="root", name="root-proxy.pem")   # and the harness works
    p = subprocess.run([gx.glexec, "/bin/true"], env={"PATH": "/usr/bin:/bin", "GLEXEC_CLIENT_CERT": str(mine)},
                       cwd=str(gx.box), stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    assert p.returncode == 0, p


def test_credential_size_cap(gx):
    """credentials.max_file_size: one byte over is refused before anything is parsed."""
    argv, m = canary(gx)
    size = len(gx.pkis.proxies["user1"].read_bytes())
    gx.config(credentials={"max_file_size": size - 1})
    gx.assert_refused(gx.run(argv), 201, "credential_size")
    assert not m.exists()
    gx.config(credentials={"max_file_size": size})
    gx.assert_granted(gx.run(["/bin/true"]))


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o4600])
def test_proxy_mode_too_wide(gx, mode):
    argv, m = canary(gx)
    p = gx.proxy("user1", mode=mode)
    r = gx.run(argv, proxy=p)
    gx.assert_refused(r, 201, "credential_mode")
    assert not m.exists()
    assert p.read_bytes()[:200] not in r.stderr


@pytest.mark.parametrize("kind", ["symlink", "directory", "fifo", "devnull"])
def test_proxy_not_a_regular_file(gx, kind):
    argv, m = canary(gx)
    real = gx.proxy("user1")
    pilot = gx.accounts.pilot
    if kind == "symlink":
        path = gx.box / "proxy-link"
        os.symlink(real, path)
        os.lchown(path, pilot.uid, pilot.gid)
    elif kind == "directory":
        path = gx.dir("proxy-dir", mode=0o700)
    elif kind == "fifo":
        path = gx.box / "proxy-fifo"
        os.mkfifo(path, 0o600)
        os.chown(path, pilot.uid, pilot.gid)
    else:
        path = "/dev/null"
    r = gx.run(argv, proxy=path, timeout=20)
    if kind == "devnull":  # owned by root: owner or type, both are refusals of this proxy
        gx.assert_refused(r, 201)
        assert r.refusals[0]["reason"] in ("credential_type", "credential_owner")
    else:
        gx.assert_refused(r, 201, "credential_type")
    assert not m.exists()


def test_expired_proxy(gx):
    argv, m = canary(gx)
    r = gx.run(argv, proxy=gx.proxy("expired"))
    gx.assert_refused(r, 201, "credential_expired")
    assert not m.exists()


def test_proxy_from_unknown_ca(gx):
    argv, m = canary(gx)
    r = gx.run(argv, proxy=gx.proxy("rogue"))
    gx.assert_refused(r, 201, "credential_untrusted")
    assert not m.exists()


@pytest.mark.parametrize("content", [b"", b"not a proxy at all\n",
                                     b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"])
def test_garbage_proxy(gx, content):
    argv, m = canary(gx)
    p = gx.file("garbage.pem", content, mode=0o600)
    r = gx.run(argv, proxy=p)
    gx.assert_refused(r, 201)
    assert r.refusals[0]["reason"].startswith("credential_"), r
    assert not m.exists()


def test_proxy_without_key(gx):
    """Chain verifies but the key is missing (caller not in omission_private_key)."""
    argv, m = canary(gx)
    pem = gx.pkis.proxies["user1"].read_bytes()
    start = pem.index(b"-----BEGIN")
    blocks, rest = [], pem
    while b"-----BEGIN" in rest:
        s = rest.index(b"-----BEGIN")
        kind = rest[s:rest.index(b"\n", s)]
        e = rest.index(b"-----END", s)
        e = rest.index(b"\n", e) + 1
        if b"PRIVATE KEY" not in kind:
            blocks.append(rest[s:e])
        rest = rest[e:]
    assert start == 0 and len(blocks) >= 2
    p = gx.file("nokey.pem", b"".join(blocks), mode=0o600)
    r = gx.run(argv, proxy=p)
    gx.assert_refused(r, 201)
    assert not m.exists()


def test_command_does_not_exist(gx):
    r = gx.run(["/nonexistent/gxt-no-such-command"])
    gx.assert_refused(r, 201, "command_not_executable")


def test_command_target_cannot_execute(gx):
    m = gx.marker("ran")
    prog = gx.script("private.sh", f'#!/bin/sh\necho ran > "{m}"\n', mode=0o700)
    r = gx.run([str(prog)])
    gx.assert_refused(r, 201, "command_not_executable")
    assert not m.exists()


def test_command_not_executable_bit(gx):
    prog = gx.script("noexec.sh", "#!/bin/sh\nexit 0\n", mode=0o644)
    r = gx.run([str(prog)])
    gx.assert_refused(r, 201, "command_not_executable")


def test_caller_cwd_not_accessible_to_target(gx):
    argv, m = canary(gx)
    private = gx.dir("private", mode=0o700)
    r = gx.run(argv, cwd=private)
    gx.assert_refused(r, 201)
    assert not m.exists()


# --- 202: configuration and audit ------------------------------------------------------------

def _line_of(path, needle):
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if needle in line:
            return n
    raise AssertionError(f"{needle!r} not in {path}")


def test_config_unknown_key(gx):
    argv, m = canary(gx)
    cfg = gx.config(payload={"no_such_key": True})
    line = _line_of(cfg, "no_such_key")
    r = gx.run(argv)
    gx.assert_refused(r, 202, "config")
    assert f"glexec.yaml:{line}:".encode() in r.stderr, r
    assert not m.exists()


def test_config_unknown_top_level_key(gx):
    argv, m = canary(gx)
    cfg = gx.config(bogus=1)
    line = _line_of(cfg, "bogus")
    r = gx.run(argv)
    gx.assert_refused(r, 202, "config")
    assert f"glexec.yaml:{line}:".encode() in r.stderr, r
    assert not m.exists()


def test_config_yaml_syntax_error(gx):
    argv, m = canary(gx)
    text = inst.render_yaml(inst.default_config(gx.prefix)).replace(
        'users: ["gxtpilot"]', 'users: ["gxtpilot"')
    cfg = inst.write_config_text(gx.prefix, text)
    r = gx.run(argv)
    gx.assert_refused(r, 202, "config")
    assert b"glexec.yaml:" in r.stderr, r
    assert not m.exists()


def test_config_wrong_type(gx):
    argv, m = canary(gx)
    cfg = gx.config(payload={"linger": "sometimes"})
    line = _line_of(cfg, "linger")
    r = gx.run(argv)
    gx.assert_refused(r, 202, "config")
    assert f"glexec.yaml:{line}:".encode() in r.stderr, r
    assert not m.exists()


@pytest.mark.parametrize("mode,owner", [(0o664, 0), (0o646, 0), (0o644, 47001)])
def test_config_unsafe_permissions(gx, mode, owner):
    argv, m = canary(gx)
    cfg = inst.config_path(gx.prefix)
    os.chown(cfg, owner, 0)
    os.chmod(cfg, mode)
    r = gx.run(argv)
    assert r.returncode == 202, r
    assert len(r.stderr.splitlines()) == 1 and r.stderr.startswith(b"glexec: "), r
    assert not r.grants
    assert not m.exists()


@pytest.mark.parametrize("kind", ["missing_dir", "directory", "symlink"])
def test_audit_unwritable_nothing_runs(gx, kind):
    argv, m = canary(gx)
    logdir = gx.prefix / "var" / "log" / "glexec-py"
    default_before = inst.audit_path(gx.prefix).read_bytes() \
        if inst.audit_path(gx.prefix).exists() else b""
    if kind == "missing_dir":
        target = logdir / "no-such-dir" / "audit.jsonl"
    elif kind == "directory":
        target = logdir / "audit-is-a-dir"
        target.mkdir(mode=0o700)
    else:
        real = logdir / "real.jsonl"
        fd = os.open(real, os.O_WRONLY | os.O_CREAT, 0o600)
        os.close(fd)
        target = logdir / "audit-link.jsonl"
        os.symlink(real, target)
    gx.config(audit={"file": str(target)})
    r = gx.run(argv)
    gx.assert_refused(r, 202, audited=False)
    assert not m.exists(), "payload ran although the audit record could not be written"
    if kind == "symlink":
        assert (logdir / "real.jsonl").read_bytes() == b""
        assert os.path.islink(target)
    # the record of this refusal cannot be in the unwritable file; the default log
    # (if the engine falls back to it) must not contain a grant
    after = inst.audit_path(gx.prefix).read_bytes() if inst.audit_path(gx.prefix).exists() else b""
    assert b'"grant"' not in after[len(default_before):]


# --- usage -----------------------------------------------------------------------------------

def test_usage_h_and_v(gx):
    r = gx.run(["-h"])
    assert r.returncode == 0, r
    assert b"usage" in (r.stdout + r.stderr).lower()
    r = gx.run(["-v"])
    assert r.returncode == 0, r
    assert (r.stdout + r.stderr).strip()


def test_V_as_root_prints_compile_time_defaults(gx):
    p = subprocess.run([gx.glexec, "-V"], capture_output=True, env={"PATH": "/usr/bin:/bin"},
                       stdin=subprocess.DEVNULL, cwd="/", timeout=30)
    assert p.returncode == 0, p
    values = {}
    for line in p.stdout.decode().splitlines():
        name, eq, value = line.partition("=")
        assert eq and name.isidentifier() and value.startswith('"') and value.endswith('"'), line
        values[name] = value[1:-1]
    assert values["GLEXEC_CONFIG_FILE"] == str(inst.config_path(gx.prefix))


def test_V_as_non_root_refused(gx):
    r = gx.run(["-V"])
    assert r.returncode != 0, r
    assert r.stdout == b""
    assert len(r.stderr.splitlines()) <= 1


# --- exactly one record per call, across a mix of calls --------------------------------------

def test_one_record_per_refusal_and_grant_plus_end_per_success(gx):
    before = len(gx.audit())
    calls = [("gxtoutsider", "default", 203), ("gxtpilot", None, 201),
             ("gxtpilot", "default", 0), ("gxtpilot", gx.proxy("user3"), 203),
             ("gxtpilot", gx.proxy("expired"), 201)]
    for user, proxy, code in calls:
        r = gx.run(["/bin/true"], user=user, proxy=proxy)
        assert r.returncode == code, r
    recs = gx.audit()[before:]
    assert [r["event"] for r in recs] == ["refuse", "refuse", "grant", "end", "refuse", "refuse"]
    assert [r.get("exit") for r in recs if r["event"] == "refuse"] == [203, 201, 203, 201]
