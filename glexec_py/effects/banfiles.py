"""Load the site's global ban lists (config section `bans`).

A ban file is parsed once per version: the validated result is cached (marshal) in the
engine's root-only state directory, keyed by the file's identity (dev, inode, size,
mtime_ns, ctime_ns), exactly as the configuration is (``effects.configfile``); every call
re-checks the file's trust and identity, so an edit is seen by the next call (a version
younger than two seconds is not cached: ``effects.rootcache``).  The cache holds the exact DN/CA
entries as a hashed index (``core.bans.to_cache_rows``): a cache hit copies a few byte
strings and looks up only the subjects of this call, whatever the list's length.  A file over
``bans.max_file_size`` bytes is a broken ban source (deny everyone) rather than a minute of
parsing per call.
"""
import os

from glexec_py.core import bans
from glexec_py.effects import rootcache, trust
from glexec_py.errors import ConfigError, SystemFault

_CACHE_FORMAT = 2      # 2: exact entries as a hashed index (core.bans.to_cache_rows)


def load(cfg_bans, config_path, state_dir=None):
    """Runs as: root (reads root-owned files only; writes the cache only as root).

    One BanList from every configured source. A ban file that is missing, unreadable, not
    root-owned, writable by others, larger than ``max_file_size`` or unparsable yields a
    list that denies everyone: a broken ban list must never mean "no bans"."""
    return bans.merge(*(banlist for _label, banlist in load_sources(cfg_bans, config_path, state_dir)))


def load_sources(cfg_bans, config_path, state_dir=None):
    """Runs as: root, or an administrator's tool with ``state_dir=None`` (then no cache is
    read or written).  ``[(label, BanList)]``: each ban file, then the inline lists, in
    the order ``load`` merges them (a broken source is its deny-everyone list)."""
    sources = []
    for kind, paths in (("dn", cfg_bans.dn_files), ("ca", cfg_bans.ca_files), ("fqan", cfg_bans.fqan_files)):
        for path in paths:
            sources.append((path, _load_file(path, kind, cfg_bans.max_file_size, state_dir)))
    inline = {"dn": list(cfg_bans.dn), "ca": list(cfg_bans.ca), "fqan": list(cfg_bans.fqan),
              "fingerprint": list(cfg_bans.fingerprint),
              "token": [_token_entry(t) for t in cfg_bans.token]}
    label = config_path + ": bans"
    try:
        sources.append((label, bans.from_plain(inline, label)))
    except ConfigError as e:
        sources.append((label, bans.unusable(config_path, e.what)))
    return sources


def _token_entry(text):
    issuer, _, subject = text.partition(" ")
    return {"issuer": issuer, "subject": subject.strip()} if subject.strip() else {"issuer": issuer}


RACY_NS = rootcache.RACY_NS


def _too_big(path, size, cap):
    return bans.unusable(path, f"ban file is larger than bans.max_file_size ({size} > {cap} "
                               "bytes): broken ban source")


def _load_file(path, kind, cap, state_dir):
    """Runs as: root.  One ban file as a BanList: from the cache when its identity is
    unchanged, else read (at most ``cap`` + 1 bytes), parsed and cached; unusable (deny
    everyone) when it is missing, untrusted, too large or unparsable."""
    try:
        st = trust.check_file(path)
        if st.st_size > cap:
            return _too_big(path, st.st_size, cap)
        key = (_CACHE_FORMAT, path, kind, rootcache.identity(st))
        rows = rootcache.read(state_dir, _cache_name(path), key)
        if rows is not None:
            try:
                return bans.from_cache_rows(rows, path)
            except (ValueError, TypeError):
                pass                          # another version's rows: parse again
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        with open(fd, "rb") as f:
            read_st = os.fstat(f.fileno())
            data = f.read(cap + 1)            # the file may grow after the check
        if len(data) > cap:
            return _too_big(path, len(data), cap)
        banlist = bans.load_ban_file(data, path, kind)
        if rootcache.identity(read_st) == key[3] and not rootcache.racy(read_st):
            rootcache.write(state_dir, _cache_name(path), key, bans.to_cache_rows(banlist))
        return banlist
    except FileNotFoundError:
        return bans.unusable(path, "ban file is missing")
    except OSError as e:
        return bans.unusable(path, f"ban file is unreadable: {e.strerror}")
    except SystemFault as e:
        return bans.unusable(path, e.message.removeprefix("glexec: "))
    except ConfigError as e:
        return bans.unusable(path, e.message)


def _cache_name(path):
    import _sha256  # builtin: hashlib would load OpenSSL's (~8 ms)
    return f"bans-{_sha256.sha256(os.fsencode(path)).hexdigest()[:32]}.cache"
