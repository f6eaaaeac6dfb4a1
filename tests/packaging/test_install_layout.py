"""make install: DESTDIR/PREFIX/SYSCONFDIR/LOCALSTATEDIR, and one configuration path.

For every layout the shim's compiled-in configuration path (what it passes the engine) must
be the installed ``site_paths.CONFIG_FILE`` that every tool reads; a DESTDIR install puts
nothing outside DESTDIR and sets no setuid bit; ``make install`` never runs apt."""
import marshal
import os
import re
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support import install as inst

REPO = inst.REPO_ROOT
ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C",
       "HOME": "/root"}


def make(*args, check=True):
    p = subprocess.run(["make", "-s", "-C", str(REPO), *args], capture_output=True, env=ENV,
                       timeout=600)
    if check:
        assert p.returncode == 0, p.stderr.decode(errors="replace")[-3000:]
    return p


def installed_site_paths(lib: Path) -> dict:
    """The values of the site_paths.py that make install wrote into ``lib``."""
    ns = {}
    exec(compile((lib / "glexec_py" / "site_paths.py").read_text(), "site_paths", "exec"), ns)
    return {k: ns[k] for k in ("PREFIX", "SYSCONFDIR", "LOCALSTATEDIR", "RUNSTATEDIR", "CONFIG_FILE",
                               "STATE_DIR", "LOG_DIR", "SERVICE_SOCKET")}


def compiled_strings(shim: Path, suffix: bytes) -> list[bytes]:
    """The absolute paths ending in ``suffix`` among the shim's string constants."""
    return re.findall(rb"/[A-Za-z0-9._/-]*" + re.escape(suffix) + rb"(?=\0)", shim.read_bytes())


def snapshot(paths):
    out = {}
    for p in paths:
        try:
            st = os.lstat(p)
            out[p] = (st.st_ino, st.st_mtime_ns, st.st_mode)
        except FileNotFoundError:
            out[p] = None
    return out


def layouts(base: Path):
    """(make variables, what they must mean) for a spread of layouts."""
    b = str(base)
    return [
        ({"PREFIX": f"{b}/p1"},
         {"conf": f"{b}/p1/etc", "var": f"{b}/p1/var"}),
        ({"PREFIX": f"{b}/p2", "SYSCONFDIR": f"{b}/conf2", "LOCALSTATEDIR": f"{b}/state2"},
         {"conf": f"{b}/conf2", "var": f"{b}/state2"}),
        ({"PREFIX": "/usr"},                                    # FHS: /etc and /var
         {"conf": "/etc", "var": "/var"}),
        ({"PREFIX": "/opt/glexec-py", "SYSCONFDIR": "/etc/opt/glexec-py",
          "LOCALSTATEDIR": "/var/opt/glexec-py"},
         {"conf": "/etc/opt/glexec-py", "var": "/var/opt/glexec-py"}),
    ]


def test_make_install_never_runs_apt_but_test_and_demo_still_do():
    out = make("-n", "install", "PREFIX=/opt/glexec-py", "NATIVE_BUILD=true").stdout
    assert b"apt-get" not in out and b"apt-ensure" not in out, out[-2000:]
    for target in ("test", "demo"):
        out = make("-n", target).stdout
        assert b"apt-get" in out, target      # the README's two commands install what they need


def test_destdir_installs_agree_on_the_config_path_and_stay_in_destdir(session_lock, run_dir):
    base = run_dir / "layout"
    base.mkdir()
    for n, (variables, meaning) in enumerate(layouts(base)):
        dest = base / f"stage{n}"
        prefix = variables["PREFIX"]
        extra = {"PAMDIR": f"{meaning['conf']}/pam.d", "SYSTEMDUNITDIR": f"{prefix}/lib/systemd/system",
                 "CRONDIR": f"{meaning['conf']}/cron.d", "LOGROTATEDIR": f"{meaning['conf']}/logrotate.d"}
        final = [f"{prefix}/sbin/glexec", f"{prefix}/lib/glexec-py", f"{meaning['conf']}/glexec-py",
                 f"{meaning['var']}/log/glexec-py", f"{meaning['var']}/lib/glexec-py",
                 *(f"{d}/glexec-py" for d in (extra["CRONDIR"], extra["LOGROTATEDIR"])),
                 f"{extra['PAMDIR']}/glexec", f"{prefix}/share/man/man8/glexec.8"]
        before = snapshot(final)
        make("install", f"DESTDIR={dest}", *(f"{k}={v}" for k, v in {**variables, **extra}.items()))
        assert snapshot(final) == before, f"DESTDIR install changed the final location ({variables})"
        for p in final:                                      # ... and made everything in DESTDIR
            assert os.path.lexists(f"{dest}{p}"), p
        tops = {p.relative_to(dest).parts[0] for p in dest.iterdir()}
        allowed = {Path(x).relative_to("/").parts[0] for x in (prefix, meaning["conf"], meaning["var"])}
        assert tops <= allowed, tops

        lib = Path(f"{dest}{prefix}/lib/glexec-py")
        paths = installed_site_paths(lib)
        conf_file = f"{meaning['conf']}/glexec-py/glexec.yaml"
        assert paths["CONFIG_FILE"] == conf_file, (variables, paths)
        assert paths["STATE_DIR"] == f"{meaning['var']}/lib/glexec-py"
        assert paths["LOG_DIR"] == f"{meaning['var']}/log/glexec-py"
        shim = Path(f"{dest}{prefix}/sbin/glexec")
        assert compiled_strings(shim, b"/glexec-py/glexec.yaml") == [paths["CONFIG_FILE"].encode()]
        assert compiled_strings(shim, b"/glexec-engine.py") == [f"{prefix}/lib/glexec-py/glexec-engine.py".encode()]
        # The engine service's socket: the same path in the shim, site_paths and the socket unit.
        sock = ("/run" if prefix == "/usr" else f"{meaning['var']}/run") + "/glexec-py/engine.sock"
        assert paths["SERVICE_SOCKET"] == sock, (variables, paths)
        assert compiled_strings(shim, b"/glexec-py/engine.sock") == [sock.encode()]
        socket_unit = Path(f"{dest}{extra['SYSTEMDUNITDIR']}/glexec-engine.socket").read_text()
        assert f"ListenStream={sock}\n" in socket_unit
        service_unit = Path(f"{dest}{extra['SYSTEMDUNITDIR']}/glexec-engine.service").read_text()
        assert f" {prefix}/lib/glexec-py/glexec-engine-service.py " in service_unit
        assert Path(f"{lib}/glexec-engine-service.py").is_file()
        mode = shim.stat().st_mode
        assert not mode & (stat.S_ISUID | stat.S_ISGID) and mode & 0o777 == 0o755

        cfg = yaml.safe_load(Path(f"{dest}{conf_file}").read_text())
        assert cfg["mapping"]["gridmapfile"] == f"{meaning['conf']}/glexec-py/grid-mapfile"
        assert cfg["audit"]["file"] == f"{paths['LOG_DIR']}/audit.jsonl"
        assert cfg["state_dir"] == paths["STATE_DIR"]
        # The pycs name the final files, not the stage.
        pyc = next(lib.glob("glexec_py/__pycache__/engine.*.pyc"))
        code = marshal.loads(pyc.read_bytes()[16:])
        assert code.co_filename == f"{prefix}/lib/glexec-py/glexec_py/engine.py"
        # The units, cron and logrotate files and man pages name this layout's paths.
        unit = Path(f"{dest}{extra['SYSTEMDUNITDIR']}/glexec-sweep.service").read_text()
        assert f"ExecStart={prefix}/sbin/glexec-sweep" in unit
        rotate = Path(f"{dest}{extra['LOGROTATEDIR']}/glexec-py").read_text()
        assert f"{paths['LOG_DIR']}/audit.jsonl {{" in rotate
        man = Path(f"{dest}{prefix}/share/man/man8/glexec.8").read_text()
        assert conf_file in man
        pam = Path(f"{dest}{extra['PAMDIR']}/glexec").read_text()
        assert f"accessfile={meaning['conf']}/glexec-py/access.conf" in pam
        # Every man page of docs/man is installed, by section.
        for page in (REPO / "docs" / "man").glob("*.[0-9]"):
            assert Path(f"{dest}{prefix}/share/man/man{page.suffix[1:]}/{page.name}").is_file(), page


def test_real_install_runs_with_separate_sysconfdir_and_localstatedir(session_lock, run_dir):
    """Not staged: the shim is setuid root and, run as root with -V, names the same
    configuration file and state directory as the installed site_paths."""
    base = run_dir / "real"
    base.mkdir()
    os.chmod(base, 0o755)
    prefix, conf, var = base / "prefix", base / "conf", base / "state"
    make("install", f"PREFIX={prefix}", f"SYSCONFDIR={conf}", f"LOCALSTATEDIR={var}")
    shim = prefix / "sbin" / "glexec"
    st = shim.stat()
    assert (st.st_mode & 0o7777, st.st_uid) == (0o4755, 0)
    for d in (var / "log" / "glexec-py", var / "lib" / "glexec-py"):
        assert (d.stat().st_mode & 0o7777, d.stat().st_uid) == (0o700, 0), d
    paths = installed_site_paths(prefix / "lib" / "glexec-py")
    p = subprocess.run([str(shim), "-V"], capture_output=True, env={}, cwd="/", timeout=30)
    assert p.returncode == 0, p
    shown = dict(re.findall(r'^(\w+)="(.*)"$', p.stdout.decode(), re.M))
    assert shown["GLEXEC_CONFIG_FILE"] == paths["CONFIG_FILE"] == f"{conf}/glexec-py/glexec.yaml"
    assert shown["GLEXEC_STATE_DIR"] == paths["STATE_DIR"] == f"{var}/lib/glexec-py"
    assert shown["GLEXEC_DEFAULT_AUDIT_FILE"] == f"{paths['LOG_DIR']}/audit.jsonl"
    assert (conf / "glexec-py" / "glexec.yaml").is_file()
    # the site tools sit next to glexec and find the library from there
    p = subprocess.run([str(prefix / "sbin" / "glexec-leases"), "--help"], capture_output=True,
                       env=ENV, timeout=60)
    assert p.returncode == 0 and b"usage" in p.stdout.lower(), p


def test_preflight_judges_the_final_location_not_the_stage(session_lock, run_dir, tmp_path):
    """/tmp is world-writable: a real install under it is refused (the shim would refuse to
    run), a DESTDIR stage under /tmp for a sound final location is fine."""
    p = make("install", f"PREFIX={tmp_path}/p", "NATIVE_BUILD=true", check=False)
    assert p.returncode != 0 and b"group/other-writable" in p.stderr, p
    assert not (tmp_path / "p").exists()
    make("install", f"DESTDIR={tmp_path}/stage", "PREFIX=/opt/glexec-py")
    assert (tmp_path / "stage/opt/glexec-py/sbin/glexec").is_file()
    # The configuration and state directories are judged too (the engine trusts them).
    sound = run_dir / "preflight"
    sound.mkdir()
    for var in ("SYSCONFDIR", "LOCALSTATEDIR"):
        p = make("install", f"PREFIX={sound}/p", f"{var}={tmp_path}/{var}", "NATIVE_BUILD=true",
                 check=False)
        assert p.returncode != 0 and b"group/other-writable" in p.stderr, (var, p)
        assert not (sound / "p").exists() and not (tmp_path / var).exists()
