"""Load the site configuration, strictly, with a root-only cache of the validated result.

Parsing YAML costs ~20 ms of imports; the validated config is cached (marshal) in the
engine's state directory, keyed by the config file's identity, so the hot path reads
one small file instead; a version younger than two seconds is parsed on every call and not
cached (``effects.rootcache``).
"""
import os

from glexec_py.core import config as config_model
from glexec_py.effects import rootcache, trust
from glexec_py.errors import ConfigError, SystemFault

_CACHE_NAME = "config.cache"
_CACHE_FORMAT = 1


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
    key = (_CACHE_FORMAT, path, rootcache.identity(st))
    cached = rootcache.read(state_dir, _CACHE_NAME, key)
    if cached is not None:
        try:
            return config_model.config_from_plain(cached)
        except SystemFault:
            pass  # written by another version of the schema: parse again
    with open(path, "rb") as f:
        read_st = os.fstat(f.fileno())
        raw = f.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise ConfigError(path, line, "not valid UTF-8") from None
    cfg = config_model.parse_config(text, path)
    # Cached only for the version that was checked and read, and only once it has settled:
    # a second edit within one timestamp tick could keep the same key.
    if rootcache.identity(read_st) == key[2] and not rootcache.racy(read_st):
        rootcache.write(state_dir, _CACHE_NAME, key, config_model.config_to_plain(cfg))
    return cfg

