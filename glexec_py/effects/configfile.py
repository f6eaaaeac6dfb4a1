"""Load the site configuration, strictly, with a root-only cache of the validated result.

Parsing YAML costs ~20 ms of imports; the validated config is cached (marshal) in the
engine's state directory, keyed by the config file's identity, so the hot path reads
one small file instead.
"""
import marshal
import os

from glexec_py.core import config as config_model
from glexec_py.effects import trust
from glexec_py.errors import ConfigError, SystemFault

_CACHE_NAME = "config.cache"
_CACHE_FORMAT = 1


def _identity(st):
    # ctime cannot be set by anyone but the kernel: a rewritten file always changes it.
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def load(path, state_dir):
    """Runs as: the engine (root, or the caller in log-only mode); reads root-owned files,
    writes the cache only when running as root.

    The config file and its directories must be root-owned and not writable by others
    (ConfigError otherwise). Returns a validated ``Config``."""
    try:
        st = trust.check_file(path)
    except FileNotFoundError:
        raise ConfigError(path, 0, "configuration file is missing") from None
    except SystemFault as fault:
        raise ConfigError(path, 0, fault.message.removeprefix("glexec: ")) from None
    key = (_CACHE_FORMAT, path, _identity(st))
    cached = _read_cache(state_dir, key)
    if cached is not None:
        try:
            return config_model.config_from_plain(cached)
        except SystemFault:
            pass  # written by another version of the schema: parse again
    with open(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise ConfigError(path, line, "not valid UTF-8") from None
    cfg = config_model.parse_config(text, path)
    _write_cache(state_dir, key, config_model.config_to_plain(cfg))
    return cfg


def _read_cache(state_dir, key):
    if not state_dir:
        return None
    try:
        fd = os.open(f"{state_dir}/{_CACHE_NAME}", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if st.st_uid != 0 or st.st_mode & 0o077 or st.st_nlink != 1:
            return None
        trust.check_dir_chain(state_dir)
        data = os.read(fd, 1 << 20)
    except (OSError, SystemFault):
        return None
    finally:
        os.close(fd)
    try:
        stored_key, plain = marshal.loads(data)
    except (ValueError, EOFError, TypeError):
        return None
    return plain if stored_key == key else None


def _write_cache(state_dir, key, plain):
    if not state_dir or os.geteuid() != 0:
        return
    tmp = f"{state_dir}/.{_CACHE_NAME}.{os.getpid()}"
    try:
        trust.check_dir_chain(state_dir)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, marshal.dumps((key, plain)))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, f"{state_dir}/{_CACHE_NAME}")
    except (OSError, SystemFault):
        # A cache that cannot be written only costs speed.
        try:
            os.unlink(tmp)
        except OSError:
            pass
