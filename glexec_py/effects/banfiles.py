"""Load the site's global ban lists (config section `bans`)."""
from glexec_py.core import bans
from glexec_py.effects import trust
from glexec_py.errors import ConfigError, SystemFault


def load(cfg_bans, config_path):
    """Runs as: root (reads root-owned files only).

    One BanList from every configured source. A ban file that is missing, unreadable, not
    root-owned, writable by others or unparsable yields a list that denies everyone: a
    broken ban list must never mean "no bans"."""
    lists = []
    for kind, paths in (("dn", cfg_bans.dn_files), ("ca", cfg_bans.ca_files), ("fqan", cfg_bans.fqan_files)):
        for path in paths:
            lists.append(_load_file(path, kind))
    inline = {"dn": list(cfg_bans.dn), "ca": list(cfg_bans.ca), "fqan": list(cfg_bans.fqan),
              "fingerprint": list(cfg_bans.fingerprint),
              "token": [_token_entry(t) for t in cfg_bans.token]}
    try:
        lists.append(bans.from_plain(inline, config_path + ": bans"))
    except ConfigError as e:
        lists.append(bans.unusable(config_path, e.what))
    return bans.merge(*lists)


def _token_entry(text):
    issuer, _, subject = text.partition(" ")
    return {"issuer": issuer, "subject": subject.strip()} if subject.strip() else {"issuer": issuer}


def _load_file(path, kind):
    try:
        trust.check_file(path)
        with open(path, "rb") as f:
            return bans.load_ban_file(f.read(), path, kind)
    except FileNotFoundError:
        return bans.unusable(path, "ban file is missing")
    except OSError as e:
        return bans.unusable(path, f"ban file is unreadable: {e.strerror}")
    except SystemFault as e:
        return bans.unusable(path, e.message.removeprefix("glexec: "))
    except ConfigError as e:
        return bans.unusable(path, e.message)
