"""Install glexec-py into a throw-away test prefix and write its config.

The prefix lives in ``/var/lib/glexec-py-tests/prefix-<random>`` (root 0755): NOT under /tmp,
since the shim refuses to run when any ancestor of its engine/config is group/other-writable.

    prefix = install_prefix()                 # make -C <repo> install PREFIX=<prefix>
    write_gridmap(prefix, [(dn, "gxttarget1")])
    write_config(prefix, payload={"linger": False})   # deep-merged over the defaults
    remove_prefix(prefix)

Config schema (strict; unknown keys are errors in the engine): see ``default_config``.

Engine mode: with ``GLEXEC_TEST_MODE=service`` in the environment, ``install_prefix`` also
starts the prefix's engine service (``start_service``: bound to the prefix's compiled-in
socket, ``<prefix>/var/run/glexec-py/engine.sock``) and ``remove_prefix`` stops it, so a
whole suite runs in service mode; unset (or ``in-process``), no service runs and the shim
execs the engine as before.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from .accounts import TESTS_BASE

__all__ = ["REPO_ROOT", "TESTS_BASE", "InstallError", "DELETE", "ensure_base", "install_prefix",
           "remove_prefix", "cleanup_leftover_prefixes", "default_config", "render_yaml",
           "write_config", "write_config_text", "write_gridmap", "install_trust_dir",
           "glexec_path", "config_path", "audit_path", "pam_service", "install_pam_service",
           "remove_pam_service", "gridmap_path", "trust_dir_path",
           "make_run_dir", "use_base", "service_mode", "service_socket_path", "start_service",
           "stop_service"]

REPO_ROOT = Path(__file__).resolve().parents[2]
DELETE = object()  # override value: remove this key from the default config


class InstallError(RuntimeError):
    pass


# --- paths inside a prefix --------------------------------------------------------------------

def glexec_path(prefix: Path) -> Path:
    return Path(prefix) / "sbin" / "glexec"


def config_path(prefix: Path) -> Path:
    return Path(prefix) / "etc" / "glexec-py" / "glexec.yaml"


def gridmap_path(prefix: Path) -> Path:
    return Path(prefix) / "etc" / "glexec-py" / "grid-mapfile"


def trust_dir_path(prefix: Path) -> Path:
    return Path(prefix) / "etc" / "glexec-py" / "certificates"


PAM_DIR = Path("/etc/pam.d")
PAM_PREFIX = "gxt-test-"


PAM_HEADER = "# glexec-py test prefix: "


def pam_service(prefix: Path) -> str:
    """The PAM service name of a test prefix: /etc/pam.d/gxt-test-<random part of
    prefix-XXXX>, or of a hash of the path for prefixes named otherwise."""
    name = Path(prefix).name
    if name.startswith("prefix-"):
        return PAM_PREFIX + name[len("prefix-"):]
    import hashlib
    return PAM_PREFIX + "h" + hashlib.sha256(str(prefix).encode()).hexdigest()[:12]


def install_pam_service(prefix: Path, text: str | None = None) -> Path:
    """Install the shipped packaging/pam.d/glexec as this prefix's PAM service (root 0644),
    its /etc/glexec-py/ paths pointed into the prefix; ``text`` replaces it (a test's own
    stack).  PAM reads only /etc/pam.d, so this is the one file a test run puts there."""
    if text is None:
        text = (REPO_ROOT / "packaging" / "pam.d" / "glexec").read_text()
        text = text.replace("/etc/glexec-py/", f"{prefix}/etc/glexec-py/")
    text = f"{PAM_HEADER}{prefix}\n{text}"   # which prefix it belongs to (leftover cleanup)
    return _write_root_file(PAM_DIR / pam_service(prefix), text.encode(), 0o644)


def remove_pam_service(prefix: Path) -> None:
    p = PAM_DIR / pam_service(prefix)
    if p.name.startswith(PAM_PREFIX) and (p.is_file() or p.is_symlink()):
        p.unlink()


def audit_path(prefix: Path) -> Path:
    return Path(prefix) / "var" / "log" / "glexec-py" / "audit.jsonl"


# --- base dir and prefixes --------------------------------------------------------------------

def _root_dir(d: Path, mode: int = 0o755) -> Path:
    if d.is_symlink():
        raise InstallError(f"{d} is a symlink")
    d.mkdir(mode=mode, exist_ok=True)
    os.chown(d, 0, 0)
    os.chmod(d, mode)
    return d


def use_base(base) -> Path:
    """For the benches (bench/benchsite.py): put prefixes and run dirs under ``base``
    instead of /var/lib/glexec-py-tests (the same trust rules apply; ``remove_prefix``
    then removes only directories directly under ``base``)."""
    global TESTS_BASE
    TESTS_BASE = Path(base).resolve()
    return ensure_base()


def ensure_base() -> Path:
    """Create /var/lib/glexec-py-tests (root 0755) and check its ancestors are trustworthy."""
    for anc in reversed(TESTS_BASE.parents):
        st = anc.lstat()
        if not os.path.isdir(anc) or anc.is_symlink() or st.st_uid != 0 or st.st_mode & 0o022:
            raise InstallError(f"ancestor {anc} of {TESTS_BASE} is not a root-owned, "
                               "non-group/other-writable directory")
    return _root_dir(TESTS_BASE)


def make_run_dir(tag: str) -> Path:
    """A fresh root-owned 0755 dir ``/var/lib/glexec-py-tests/<tag>-<random>``."""
    ensure_base()
    d = Path(tempfile.mkdtemp(prefix=f"{tag}-", dir=TESTS_BASE))
    os.chmod(d, 0o755)
    return d


def _safe_rmtree(d: Path) -> None:
    d = Path(d)
    if d.parent != TESTS_BASE or d.is_symlink():
        raise InstallError(f"refusing to remove {d}: not a test dir in {TESTS_BASE}")
    if d.exists():
        # chattr/immutable are not used by the tests; a plain rmtree is enough
        shutil.rmtree(d, ignore_errors=False)


def remove_prefix(prefix: Path) -> None:
    stop_service(prefix)
    remove_pam_service(prefix)
    _safe_rmtree(Path(prefix))


# --- the engine service of a prefix -------------------------------------------------------------

def service_mode() -> bool:
    """GLEXEC_TEST_MODE=service: every installed prefix gets its engine service."""
    mode = os.environ.get("GLEXEC_TEST_MODE", "in-process")
    if mode not in ("service", "in-process"):
        raise InstallError(f"GLEXEC_TEST_MODE={mode!r}: want 'service' or 'in-process'")
    return mode == "service"


def service_socket_path(prefix: Path) -> Path:
    return Path(prefix) / "var" / "run" / "glexec-py" / "engine.sock"


def _service_pidfile(prefix: Path) -> Path:
    return Path(prefix) / "var" / "run" / "glexec-py" / "test-service.pid"


_services: dict = {}   # prefix -> Popen


def start_service(prefix: Path, *args: str, timeout: float = 30.0) -> subprocess.Popen:
    """Start the prefix's installed engine service (``--bind``: no systemd here) and wait
    until it listens. ``args``: its options (``--max-active 2`` ...). Log:
    <prefix>/var/log/glexec-py/service.log."""
    prefix = Path(prefix)
    stop_service(prefix)
    entry = prefix / "lib" / "glexec-py" / "glexec-engine-service.py"
    sock = service_socket_path(prefix)
    log = open(Path(prefix) / "var" / "log" / "glexec-py" / "service.log", "ab")
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}
    proc = subprocess.Popen(["/usr/bin/python3.11", "-I", "-S", "-B", str(entry), "--bind", *args],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, cwd="/",
                            start_new_session=True)
    log.close()
    import time
    deadline = time.monotonic() + timeout
    while not sock.is_socket() or _listening(sock) is False:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise InstallError(f"engine service for {prefix} did not start; see its service.log")
        time.sleep(0.05)
    _services[str(prefix)] = proc
    _service_pidfile(prefix).write_text(f"{proc.pid}\n")
    return proc


def _listening(sock: Path) -> bool:
    import socket
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(str(sock))   # the service drops a peer that offers nothing
        return True
    except OSError:
        return False
    finally:
        s.close()


def stop_service(prefix: Path) -> None:
    """Stop the prefix's engine service (ours, or one a crashed session left: by its pid
    file, only if that pid still runs this prefix's service)."""
    import signal
    prefix = Path(prefix)
    proc = _services.pop(str(prefix), None)
    if proc is not None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    else:
        pidfile = _service_pidfile(prefix)
        try:
            pid = int(pidfile.read_text())
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            cmd = b""
        if str(prefix / "lib" / "glexec-py" / "glexec-engine-service.py").encode() in cmd.split(b"\0"):
            os.kill(pid, signal.SIGKILL)
    for p in (_service_pidfile(prefix), service_socket_path(prefix)):
        try:
            p.unlink()
        except FileNotFoundError:
            pass


def cleanup_leftover_prefixes() -> list[Path]:
    """Remove prefix-*/run-*/pki-* dirs of earlier (crashed) sessions. Call under session_lock."""
    gone = []
    for p in PAM_DIR.glob(PAM_PREFIX + "*"):     # services of prefixes that are gone
        first = p.read_text(errors="replace").split("\n", 1)[0]
        if not (first.startswith(PAM_HEADER) and Path(first[len(PAM_HEADER):]).is_dir()):
            p.unlink()
    if TESTS_BASE.is_dir():
        for d in TESTS_BASE.iterdir():
            if d.is_dir() and not d.is_symlink() and d.name.split("-")[0] in ("prefix", "run", "pki"):
                if d.name.startswith("prefix-"):
                    stop_service(d)
                _safe_rmtree(d)
                gone.append(d)
    return gone


def install_prefix(repo: Path = REPO_ROOT, log_dir: Path | None = None) -> Path:
    """Create a fresh prefix and ``make -C repo install PREFIX=prefix`` into it.

    Raises InstallError (with the tail of make's output) when the build/install fails."""
    prefix = make_run_dir("prefix")
    log = (Path(log_dir) if log_dir else TESTS_BASE) / f"{prefix.name}.make.log"
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "LC_ALL": "C", "HOME": "/root", "DEBIAN_FRONTEND": "noninteractive"}
    with open(log, "wb") as out:
        p = subprocess.run(["make", "-C", str(repo), "install", f"PREFIX={prefix}"],
                           stdout=out, stderr=subprocess.STDOUT, env=env, timeout=900)
    text = log.read_text(errors="replace")
    if p.returncode != 0:
        raise InstallError(f"make install PREFIX={prefix} failed ({p.returncode}); "
                           f"log {log}:\n{text[-4000:]}")
    g = glexec_path(prefix)
    st = g.stat() if g.exists() else None
    if st is None or st.st_uid != 0 or (st.st_mode & 0o7777) != 0o4755:
        raise InstallError(f"{g} is missing or not root 4755 after make install; log {log}")
    log.unlink()
    install_pam_service(prefix)
    if service_mode():
        start_service(prefix)
    return prefix


# --- config -----------------------------------------------------------------------------------

def default_config(prefix: Path) -> dict:
    prefix = Path(prefix)
    return {
        "callers": {"users": ["gxtpilot"], "groups": ["gxtpilotgrp"], "omission_private_key": []},
        "credentials": {"ca_dir": str(trust_dir_path(prefix)), "max_file_size": 65536},
        "mapping": {"gridmapfile": str(gridmap_path(prefix)), "min_uid": 1000},
        "audit": {"file": str(audit_path(prefix)), "syslog": False},
        "payload": {"linger": True, "preserve_env": [], "keep_caller_groups": []},
        "target_proxy": {"create": True, "default_dir": "/tmp"},
        "pam": {"enabled": True, "service": pam_service(prefix)},
        "state_dir": str(Path(prefix) / "var" / "lib" / "glexec-py"),
    }


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        if v is DELETE:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def _scalar(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, Path):
        v = str(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid YAML double-quoted scalar
    raise TypeError(f"cannot render {v!r} as a YAML scalar")


def render_yaml(cfg: dict, indent: int = 0) -> str:
    """Block-style YAML: mappings as blocks, lists in flow style, strings double-quoted."""
    lines = []
    pad = "  " * indent
    for k, v in cfg.items():
        if isinstance(v, dict):
            if v:
                lines.append(f"{pad}{k}:")
                lines.append(render_yaml(v, indent + 1).rstrip("\n"))
            else:
                lines.append(f"{pad}{k}: {{}}")
        elif isinstance(v, (list, tuple)):
            lines.append(f"{pad}{k}: [{', '.join(_scalar(x) for x in v)}]")
        else:
            lines.append(f"{pad}{k}: {_scalar(v)}")
    return "\n".join(lines) + "\n"


def _write_root_file(path: Path, data: bytes, mode: int = 0o644) -> Path:
    """Atomically replace ``path`` (new inode, so any config cache sees the change)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.write(fd, data)
        os.fchown(fd, 0, 0)
        os.fchmod(fd, mode)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path


def write_config(prefix: Path, **overrides) -> Path:
    """Write <prefix>/etc/glexec-py/glexec.yaml (root 0644): defaults deep-merged with overrides.

    ``write_config(p, payload={"linger": False})`` changes one key; ``audit=DELETE`` drops a
    section; an unknown key (``bogus=1``) is written as given (the engine must reject it)."""
    cfg = _merge(default_config(prefix), overrides)
    return write_config_text(prefix, render_yaml(cfg))


def write_config_text(prefix: Path, text: str | bytes) -> Path:
    data = text.encode() if isinstance(text, str) else text
    return _write_root_file(config_path(prefix), data, 0o644)


def write_gridmap(prefix: Path, entries) -> Path:
    """Write the gridmapfile (LCMAPS syntax ``"<DN>" account``), root 0644."""
    lines = []
    for dn, account in entries:
        if '"' in dn or "\n" in dn:
            raise ValueError(f"DN not representable in a gridmapfile: {dn!r}")
        lines.append(f'"{dn}" {account}\n')
    return _write_root_file(gridmap_path(prefix), "".join(lines).encode(), 0o644)


def install_trust_dir(prefix: Path, pki, dest: Path | None = None) -> Path:
    """Copy the PKI's hash-named trust dir to ``dest`` (default
    <prefix>/etc/glexec-py/certificates), root 0755 / files root 0644."""
    dest = Path(dest) if dest is not None else trust_dir_path(prefix)
    if dest.exists():
        shutil.rmtree(dest)
    pki.copy_trust_dir(dest)
    for root, dirs, files in os.walk(dest):
        os.chown(root, 0, 0)
        os.chmod(root, 0o755)
        for f in files:
            os.chown(os.path.join(root, f), 0, 0)
            os.chmod(os.path.join(root, f), 0o644)
    return dest
