"""Strict YAML configuration (glexec.yaml).  Pure: works on the text.

``parse_config(text, filename)`` composes the YAML node tree with PyYAML's SafeLoader
(imported lazily, only here) and validates it against ``SCHEMA`` itself, so every error
carries ``file:line``.  Refused outright: anchors, aliases, explicit tags, duplicate keys,
unknown keys/sections, wrongly typed values (a value's *resolved* tag must be the expected
one: ``linger: "yes"`` is a string, not a boolean).

The engine caches ``marshal.dumps(config_to_plain(cfg))`` and rebuilds with
``config_from_plain`` (no yaml import, no re-validation beyond the shape).
"""

from glexec_py.errors import ConfigError, SystemFault

_REQ = ("required",)     # sentinel default

_FORBIDDEN_GROUPS = ("root", "sudo", "adm", "disk", "docker", "shadow", "wheel", "staff",
                     "lxd", "kvm", "libvirt")
FACILITIES = ("LOG_DAEMON", "LOG_AUTH", "LOG_AUTHPRIV", "LOG_USER", "LOG_LOCAL0",
              "LOG_LOCAL1", "LOG_LOCAL2", "LOG_LOCAL3", "LOG_LOCAL4", "LOG_LOCAL5",
              "LOG_LOCAL6", "LOG_LOCAL7")
# local: the gridmapfile's first non-dot account for the DN (LCMAPS localaccount);
# pool: a lease on the gridmapfile's ".pool" in the gridmapdir (LCMAPS poolaccount).
# voms_local / voms_pool: the same for the first FQAN (in AC order) that has such a line
# (LCMAPS voms_localaccount / voms_poolaccount).  With a mapping.groupmapfile, a voms_*
# mapping first runs the LCMAPS voms_localgroup rules (FQAN -> group: the first FQAN's
# group is the payload's primary gid, later ones secondary; nothing from the account) and
# voms_pool leases carry the group names (DN:primary:secondary..., as voms_poolaccount).
MAPPING_SOURCES = ("voms_local", "voms_pool", "local", "pool")
GLEXEC_SET_VARS = ("HOME", "USER", "LOGNAME", "PATH", "X509_USER_PROXY")
NEVER_PRESERVED_PREFIXES = ("MALLOC_", "LD_")
ID_MAX = 4294967294

# section -> ((key, kind, default), ...); kind is a string or a tuple (kind, args...).
SCHEMA = (
    ("callers", (
        ("users", "callers", ()),
        ("groups", "callers", ()),
        ("omission_private_key", "callers", ()),
    )),
    ("credentials", (
        ("ca_dir", "abspath", _REQ),
        ("max_file_size", ("int", 1, 1048576), 65536),
        ("x509_user_proxy_fallback", "bool", False),
        # proxy policy, as LCMAPS verify-proxy's options (0 = no limit)
        ("crl_expired_ok", "bool", False),                # accept an expired CRL (its revocations apply)
        ("allow_limited_proxy", "bool", True),
        ("require_limited_proxy", "bool", False),
        ("max_proxy_lifetime", ("int", 0, 10 ** 9), 0),   # seconds, notAfter - notBefore of any proxy
        ("min_proxy_remaining", ("int", 0, 10 ** 9), 0),  # seconds left until the chain expires
        ("allow_legacy_proxy", "bool", True),             # GT2 / GT3 proxies
        ("legacy_proxy_max_levels", ("int", 1, 16), 1),   # 1 = as LCMAPS on OpenSSL 3
        ("vomsdir", "optpath", ""),            # VOMS .lsc files; "" = ignore VOMS attributes
        ("voms_mode", "vomsmode", "lcmaps"),   # lcmaps: a bad AC drops all FQANs; strict: refuse
        ("voms_skew", ("int", 0, 3600), 300),  # seconds of clock skew for AC validity
        # IGTF <hash>.namespaces / .signing_policy of every CA that issued a certificate of
        # the chain: require (a CA without a policy file is refused), optional (enforced
        # where present), ignore (not read, as LCMAPS; not "off": YAML reads that as false)
        ("namespace_policy", "nspolicy", "require"),
    )),
    ("mapping", (
        ("gridmapfile", "abspath", _REQ),
        ("gridmapdir", "optpath", ""),          # pool leases (LCMAPS format); "" = no pools
        # where pool leases live: "gridmapdir" (this node, LCMAPS format) or "postgresql"
        # (one lease authority for many nodes: the postgresql section; docs/leases.md)
        ("lease_store", "leasestore", "gridmapdir"),
        ("order", "sources", ("voms_local", "voms_pool", "local", "pool")),  # tried in this order
        ("lock_timeout", ("int", 1, 3600), 30),   # seconds to wait for the gridmapdir lock
        # LCMAPS voms_localgroup: FQAN -> group name (grid-mapfile syntax, wildcards);
        # "" = off (voms_* mappings then use the account's groups, leases are DN-only)
        ("groupmapfile", "optpath", ""),
        ("groupmap_min", ("int", 0, 65536), 0),   # -mapmin N: at least N FQANs must map
        ("groupmap_all", "bool", False),          # -mapall: every FQAN must map to a group
        # voms_pool lease names include the secondary groups (False = LCMAPS
        # voms_poolaccount -do_not_use_secondary_gids: primary group(s) only)
        ("lease_secondary_groups", "bool", True),
        # LCMAPS -max_mappings_per_credential: the caller's GLEXEC_MAPCOUNT (1..this)
        # selects a separate lease ":mapcount=NNNN" per value; unset = the plain lease
        ("max_mappings_per_credential", ("int", 1, 9999), 1),
        # fsync each lease's metadata record. Off by default: the lease (a hard link) is as
        # durable as LCMAPS makes it, and lost metadata is a finding `glexec-leases repair` fixes.
        ("lease_metadata_sync", "bool", False),
        # live leases (state "leased") one caller uid may hold in one pool: a number
        # (0 = unlimited) or "N%" of the pool's entries (at least 1); reuse never counts
        ("max_leases_per_caller", "quota", "50%"),
        ("min_uid", ("int", 1, ID_MAX), 1000),
        ("max_uid", ("int", 1, ID_MAX), ID_MAX),
        ("forbidden_groups", "names", _FORBIDDEN_GROUPS),
    )),
    # The PostgreSQL lease store (mapping.lease_store: postgresql).  The conninfo (libpq,
    # may hold a password) lives in a root-only file, never in this one.
    ("postgresql", (
        ("conninfo_file", "optpath", ""),
        ("connect_timeout", ("int", 1, 60), 2),      # seconds; then 202
        ("timeout_ms", ("int", 10, 60000), 2000),    # per statement (client and server); then 202
        ("node", "nodename", ""),                    # this node's name; "" = the host name
    )),
    ("audit", (
        ("file", "abspath", _REQ),
        ("syslog", "bool", True),
        ("syslog_facility", "facility", "LOG_DAEMON"),
        # the OSG tracking monitor's `glexec.mon[<pid>#<pid>]: Started/Used DN/Used VO/
        # Used FQAN/Terminated` syslog lines, which Gratia's gLExec probe reads
        ("monitor_lines", "bool", False),
        # Ship every record off the node too (auditlog.ship: one "glexec-audit" syslog
        # message carrying the exact record line, host, boot id, seq and its hash, for the
        # site collector; packaging/rsyslog/).  Best effort: the file stays authoritative.
        ("ship", "bool", False),
        ("ship_socket", "abspath", "/dev/log"),
        # records carry DNs: authpriv is the facility Debian's rsyslog keeps private
        ("ship_facility", "facility", "LOG_AUTHPRIV"),
    )),
    ("payload", (
        ("linger", "bool", True),
        ("preserve_env", "envnames", ()),
        ("path", "pathvar", "/usr/local/bin:/usr/bin:/bin"),
        ("keep_caller_groups", "gidranges", ()),
        ("no_new_privs", "bool", False),
        # seccomp filter: ioctl TIOCSTI/TIOCLINUX fail (EPERM) in the payload, which keeps the
        # pilot's session and therefore its terminal (docs/internals.md, "Payload guards")
        ("tty_guard", "bool", True),
    )),
    # The target account through PAM: account management (expired, pam_access-denied ...
    # -> 203) and a session (pam_limits) around the payload; never authentication.
    # /etc/pam.d/<service> must exist (root-owned, not writable by others) and must not
    # use pam_systemd, else 202.
    ("pam", (
        ("enabled", "bool", True),
        ("service", "pamservice", "glexec"),
    )),
    ("target_proxy", (
        ("create", "bool", True),
        ("default_dir", "abspath", "/tmp"),
    )),
    # Global bans, checked before any mapping. Files use LCAS/LCMAPS ban syntax (one quoted
    # DN or FQAN per line); a missing, unsafe or unparsable file means: deny everyone.
    ("bans", (
        ("dn_files", "abspaths", ()),
        ("ca_files", "abspaths", ()),
        ("fqan_files", "abspaths", ()),
        ("dn", "strings", ()),
        ("ca", "strings", ()),
        ("fqan", "strings", ()),
        ("fingerprint", "strings", ()),
        ("token", "strings", ()),      # "<issuer>" or "<issuer> <subject>"
        # bytes per ban file; a larger file is a broken ban source (deny everyone)
        ("max_file_size", ("int", 1, 1 << 30), 4 << 20),
    )),
)
_TOP_SCALARS = (("state_dir", "abspath", _REQ),)
# The site tools' sections (glexec_tools.<tool>.plan.parse_section validates each, with its
# own file:line errors): the engine only knows their names, and never walks their contents.
TOOL_SECTIONS = ("backmap", "job", "leases", "prune", "sweep")
# gLExec's epilogue is deliberately not offered (docs/epilogue.md).
EPILOGUE_REFUSED = ("'epilogue' is not supported: glexec-py runs no program after the payload; the site "
                    "tools clean up instead (glexec-sweep, prune-users, glexec-leases expire): see docs/epilogue.md")
_SECTION_NAMES = tuple(s for s, _ in SCHEMA)

_T = "tag:yaml.org,2002:"


class Section:
    """Read-only attribute access to one config section."""

    __slots__ = ("_name", "_values")

    def __init__(self, name, values):
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_values", values)

    def __getattr__(self, key):
        try:
            return self._values[key]
        except KeyError:
            raise AttributeError(f"config section {self._name!r} has no key {key!r}") from None

    def __setattr__(self, key, value):
        raise AttributeError("config is read-only")

    def configured(self, ignore=()):
        """True if any key of this section (but ``ignore``) has a non-empty value (e.g.
        any ban source)."""
        return any(v for k, v in self._values.items() if k not in ignore)

    def __eq__(self, other):
        if type(other) is not Section:
            return NotImplemented
        return self._name == other._name and self._values == other._values

    __hash__ = None

    def __repr__(self):
        return f"Section({self._name!r}, {self._values!r})"


class Config:
    """The validated configuration: ``cfg.payload.linger``, ``cfg.state_dir`` ...
    ``cfg.tokens`` is the plain ``tokens:`` section (validated by core.tokens.TokenPolicy)
    or None when tokens are not accepted."""

    __slots__ = _SECTION_NAMES + ("state_dir", "tokens")

    def __init__(self, sections, state_dir, tokens=None):
        for name in _SECTION_NAMES:
            object.__setattr__(self, name, Section(name, sections[name]))
        object.__setattr__(self, "state_dir", state_dir)
        object.__setattr__(self, "tokens", tokens)

    def __setattr__(self, key, value):
        raise AttributeError("config is read-only")

    def configured(self):
        """True if any key of this section has a non-empty value (e.g. any ban source)."""
        return any(self._values.values())

    def __eq__(self, other):
        if type(other) is not Config:
            return NotImplemented
        return config_to_plain(self) == config_to_plain(other)

    __hash__ = None

    def __repr__(self):
        return f"Config({config_to_plain(self)!r})"


def config_to_plain(cfg):
    """Plain dict/tuple/str/int/bool only (marshal-able)."""
    d = {name: dict(getattr(cfg, name)._values) for name in _SECTION_NAMES}
    d["state_dir"] = cfg.state_dir
    d["tokens"] = cfg.tokens
    return d


def _bad_cache():
    return SystemFault("config", "glexec: the cached configuration is unusable",
                       where="config cache")


def config_from_plain(d):
    """Rebuild a ``Config`` from ``config_to_plain`` output; only the shape is checked
    (``SystemFault`` if it does not match this version's schema)."""
    if type(d) is not dict or len(d) != len(SCHEMA) + 2:
        raise _bad_cache()
    sections = {}
    for name, keys in SCHEMA:
        sec = d.get(name)
        if type(sec) is not dict or len(sec) != len(keys):
            raise _bad_cache()
        values = {}
        for key, _kind, _default in keys:
            if key not in sec:
                raise _bad_cache()
            v = sec[key]
            if type(v) is list:
                v = tuple(tuple(x) if type(x) is list else x for x in v)
            values[key] = v
        sections[name] = values
    state_dir, tokens = d.get("state_dir"), d.get("tokens")
    if type(state_dir) is not str or not (tokens is None or type(tokens) is dict):
        raise _bad_cache()
    return Config(sections, state_dir, tokens)


def gid_kept(cfg, gid):
    """True if ``gid`` is listed in ``payload.keep_caller_groups`` (a gid or a range)."""
    for lo, hi in cfg.payload.keep_caller_groups:
        if lo <= gid <= hi:
            return True
    return False


# --- parsing -------------------------------------------------------------------------

def _safe(s, limit=80):
    """Error-message text (``core.text.clipped``), imported only when a message is made:
    the engine loads this module on every call."""
    from glexec_py.core.text import clipped
    return clipped(s, limit)


def _show(node):
    cls = type(node).__name__
    if cls == "MappingNode":
        return "a mapping"
    if cls == "SequenceNode":
        return "a list"
    if node.tag == _T + "null":
        return "null"
    return "'" + _safe(node.value) + "'"


class _Parser:
    def __init__(self, filename, loader, yaml):
        self.filename = filename
        self.loader = loader
        self.yaml = yaml

    def err(self, node_or_line, what):
        line = node_or_line if isinstance(node_or_line, int) else node_or_line.start_mark.line + 1
        return ConfigError(self.filename, line, what)

    # scalar helpers
    def scalar(self, node, tag):
        return isinstance(node, self.yaml.ScalarNode) and node.tag == _T + tag

    def string(self, node, key, what="a string"):
        if not self.scalar(node, "str"):
            raise self.err(node, f"'{key}' must be {what}, not {_show(node)}")
        if "\0" in node.value:
            raise self.err(node, f"'{key}' must not contain a NUL character")
        return node.value

    def mapping(self, node, where):
        """Key nodes -> (key, key_node, value_node), refusing duplicates and odd keys."""
        out = {}
        for knode, vnode in node.value:
            if not isinstance(knode, self.yaml.ScalarNode):
                raise self.err(knode, f"keys in {where} must be plain names, not {_show(knode)}")
            key = knode.value
            if key in out:
                raise self.err(knode, f"duplicate key '{_safe(key)}' in {where}")
            out[key] = (knode, vnode)
        return out

    def str_list(self, node, key, check):
        if not isinstance(node, self.yaml.SequenceNode):
            raise self.err(node, f"'{key}' must be a list, not {_show(node)}")
        out = []
        for item in node.value:
            if not self.scalar(item, "str"):
                raise self.err(item, f"each entry of '{key}' must be a string, not {_show(item)}")
            v = item.value
            problem = check(v)
            if problem:
                raise self.err(item, problem)
            out.append(v)
        return tuple(out)

    # kinds
    def value(self, kind, node, key, section):
        if type(kind) is tuple:
            _, lo, hi = kind
            if not self.scalar(node, "int"):
                raise self.err(node, f"'{key}' must be an integer, not {_show(node)}")
            try:
                v = self.loader.construct_yaml_int(node)
            except ValueError:
                raise self.err(node, f"'{key}' must be an integer between {lo} and {hi}") from None
            if not lo <= v <= hi:
                raise self.err(node, f"'{key}' must be an integer between {lo} and {hi}, "
                                     f"not {_show(node)}")
            return v
        if kind == "bool":
            if not self.scalar(node, "bool"):
                raise self.err(node, f"'{key}' must be a boolean, not {_show(node)}")
            return self.loader.construct_yaml_bool(node)
        if kind == "abspath":
            v = self.string(node, key, "an absolute path")
            if not v.startswith("/"):
                raise self.err(node, f"'{key}' must be an absolute path, not {_show(node)}")
            return v
        if kind == "facility":
            v = self.string(node, key, "a syslog facility")
            if v not in FACILITIES:
                raise self.err(node, f"'{key}' must be one of {', '.join(FACILITIES)}, "
                                     f"not {_show(node)}")
            return v
        if kind == "pathvar":
            v = self.string(node, key)
            if not v or any(not p.startswith("/") for p in v.split(":")):
                raise self.err(node, f"'{key}' must be a colon-separated list of absolute "
                                     f"directories, not {_show(node)}")
            return v
        if kind == "nspolicy":
            v = self.string(node, key)
            if v not in ("require", "optional", "ignore"):
                raise self.err(node, f"'{key}' must be 'require', 'optional' or 'ignore', not {_show(node)}")
            return v
        if kind == "leasestore":
            v = self.string(node, key)
            if v not in ("gridmapdir", "postgresql"):
                raise self.err(node, f"'{key}' must be 'gridmapdir' or 'postgresql', not {_show(node)}")
            return v
        if kind == "nodename":
            v = self.string(node, key, "a node name")
            if v and not (len(v) <= 255 and v.isascii() and v.isprintable() and " " not in v):
                raise self.err(node, f"'{key}' must be a node name (printable ASCII, no spaces), "
                                     f"not {_show(node)}")
            return v
        if kind == "vomsmode":
            v = self.string(node, key)
            if v not in ("lcmaps", "strict"):
                raise self.err(node, f"'{key}' must be 'lcmaps' or 'strict', not {_show(node)}")
            return v
        if kind == "pamservice":
            v = self.string(node, key, "a PAM service name")
            if not (v and len(v) <= 64 and v.isascii() and v[0].isalnum()
                    and v.replace("-", "a").replace("_", "a").replace(".", "a").isalnum()):
                raise self.err(node, f"'{key}' must be a PAM service name ([A-Za-z0-9._-], "
                                     f"first a letter or digit), not {_show(node)}")
            return v
        if kind == "quota":
            if self.scalar(node, "int"):
                return self.value(("int", 0, ID_MAX), node, key, section)
            v = self.string(node, key, "a number or a percentage")
            pct = v[:-1]
            if not (v.endswith("%") and pct.isascii() and pct.isdigit() and 1 <= int(pct) <= 100):
                raise self.err(node, f"'{key}' must be a number (0 = unlimited) or a percentage "
                                     f"'1%'..'100%', not {_show(node)}")
            return f"{int(pct)}%"
        if kind == "optpath":
            v = self.string(node, key, "an absolute path")
            if v and not v.startswith("/"):
                raise self.err(node, f"'{key}' must be an absolute path, not {_show(node)}")
            return v
        if kind == "sources":
            out = self.str_list(node, key, lambda v: None if v in MAPPING_SOURCES else
                                f"unknown mapping source {_show_str(v)} in '{key}' "
                                f"(known: {', '.join(MAPPING_SOURCES)})")
            if not out:
                raise self.err(node, f"'{key}' must name at least one mapping source")
            if len(set(out)) != len(out):
                raise self.err(node, f"'{key}' names a mapping source twice")
            return out
        if kind == "abspaths":
            return self.str_list(node, key, lambda v: None if v.startswith("/") and "\0" not in v
                                 else f"each entry of '{key}' must be an absolute path")
        if kind == "strings":
            return self.str_list(node, key, lambda v: None if v and "\0" not in v and "\n" not in v
                                 else f"entries of '{key}' must be non-empty single-line strings")
        if kind == "names":
            return self.str_list(node, key, lambda v: _name_problem(v, key, pool=False))
        if kind == "callers":
            return self.str_list(node, key, lambda v: _name_problem(v, f"{section}.{key}",
                                                                    pool=True))
        if kind == "envnames":
            return self.str_list(node, key, _env_problem)
        if kind == "gidranges":
            return self.gidranges(node, key)
        raise AssertionError(kind)

    def gidranges(self, node, key):
        if not isinstance(node, self.yaml.SequenceNode):
            raise self.err(node, f"'{key}' must be a list, not {_show(node)}")
        out = []
        for item in node.value:
            if self.scalar(item, "int"):
                try:
                    lo = hi = self.loader.construct_yaml_int(item)
                except ValueError:
                    lo = hi = -1
            elif self.scalar(item, "str"):
                a, dash, b = item.value.partition("-")
                if not (dash and _digits(a) and _digits(b)):
                    raise self.err(item, f"each entry of '{key}' must be a gid or a range "
                                         f"'low-high', not {_show(item)}")
                lo, hi = int(a), int(b)
                if lo > hi:
                    raise self.err(item, f"range {_show(item)} in '{key}' is empty (low > high)")
            else:
                raise self.err(item, f"each entry of '{key}' must be a gid or a range "
                                     f"'low-high', not {_show(item)}")
            if lo == 0:
                raise self.err(item, f"gid 0 (root) can never be kept ('{key}')")
            if not (1 <= lo and hi <= ID_MAX):
                raise self.err(item, f"gids in '{key}' must be between 1 and {ID_MAX}, "
                                     f"not {_show(item)}")
            out.append((lo, hi))
        return tuple(out)

    def section(self, name, keys, knode, vnode):
        if vnode is None or (self.scalar(vnode, "null")):
            entries = {}
            where_line = knode if knode is not None else 1
        elif isinstance(vnode, self.yaml.MappingNode):
            entries = self.mapping(vnode, f"'{name}'")
            where_line = knode
        else:
            raise self.err(vnode, f"section '{name}' must be a mapping, not {_show(vnode)}")
        known = {k for k, _, _ in keys}
        for key, (kn, _vn) in entries.items():
            if key not in known:
                raise self.err(kn, f"unknown key '{_safe(key)}' in '{name}'")
        values = {}
        lines = {}
        for key, kind, default in keys:
            if key in entries:
                kn, vn = entries[key]
                values[key] = self.value(kind, vn, key, name)
                lines[key] = vn
            elif default is _REQ:
                if knode is None:
                    raise self.err(where_line, f"missing required section '{name}'")
                raise self.err(where_line, f"missing required key '{key}' in '{name}'")
            else:
                values[key] = default
        return values, lines

    def document(self, root):
        if root is None or self.scalar(root, "null"):
            top = {}
        elif isinstance(root, self.yaml.MappingNode):
            top = self.mapping(root, "the top level")
        else:
            raise self.err(root, f"the configuration must be a mapping, not {_show(root)}")
        for key, (kn, _vn) in top.items():
            if key == "epilogue":
                raise self.err(kn, EPILOGUE_REFUSED)
            if key not in _SECTION_NAMES and key not in ("state_dir", "tokens") \
                    and key not in TOOL_SECTIONS:
                raise self.err(kn, f"unknown section '{_safe(key)}'")
        sections = {}
        for name, keys in SCHEMA:
            knode, vnode = top.get(name, (None, None))
            values, lines = self.section(name, keys, knode, vnode)
            sections[name] = values
            if name == "credentials" and values["require_limited_proxy"] and not values["allow_limited_proxy"]:
                raise self.err(lines.get("require_limited_proxy"),
                               "'require_limited_proxy' contradicts 'allow_limited_proxy: false'")
            if name == "postgresql" and sections["mapping"]["lease_store"] == "postgresql" \
                    and not values["conninfo_file"]:
                raise self.err(lines.get("conninfo_file") or knode or 1,
                               "'mapping.lease_store: postgresql' needs 'postgresql.conninfo_file'")
            if name == "mapping" and values["min_uid"] > values["max_uid"]:
                where = lines.get("max_uid") or lines.get("min_uid")
                raise self.err(where, f"'max_uid' ({values['max_uid']}) must not be below "
                                      f"'min_uid' ({values['min_uid']})")
        if "state_dir" not in top:
            raise self.err(1, "missing required key 'state_dir'")
        state_dir = self.value("abspath", top["state_dir"][1], "state_dir", "")
        tokens = self.tokens(*top["tokens"]) if "tokens" in top else None
        return Config(sections, state_dir, tokens)

    def tokens(self, knode, vnode):
        """The `tokens:` section: shapes checked here (with lines), meaning by TokenPolicy."""
        from glexec_py.core.tokens import TokenPolicy
        plain = self.plain(vnode, "tokens")
        try:
            TokenPolicy(plain, "tokens")
        except ConfigError as e:
            raise self.err(knode, e.what) from None
        return plain

    def plain(self, node, where):
        if isinstance(node, self.yaml.MappingNode):
            return {k: self.plain(vn, f"{where}.{k}") for k, (kn, vn) in self.mapping(node, f"'{where}'").items()}
        if isinstance(node, self.yaml.SequenceNode):
            return [self.plain(item, where) for item in node.value]
        value = self.loader.construct_object(node)
        if value is not None and type(value) not in (str, int, bool):
            raise self.err(node, f"'{where}' must hold strings, numbers and booleans, not {_show(node)}")
        return value


def _digits(s):
    return s.isascii() and s.isdigit() and len(s) <= 10


def _name_problem(v, where, pool):
    if "*" in v:
        return (f"'*' is not accepted in {where} ({_show_str(v)}): there are no wildcards, "
                "list account/group names or '.prefix' for pool accounts")
    if v == "" or (pool and v == "."):
        return f"empty name in {where}"
    for ch in v:
        if ord(ch) < 0x20 or ord(ch) == 0x7F or ch == ":":
            return f"invalid name {_show_str(v)} in {where}"
    return None


def _show_str(v):
    return "'" + _safe(v) + "'"


def _env_problem(v):
    ok = bool(v) and v.isascii() and not v[0].isdigit() and (v.replace("_", "a").isalnum())
    if not ok:
        return f"{_show_str(v)} in 'preserve_env' is not a valid environment variable name"
    if v.startswith(NEVER_PRESERVED_PREFIXES):
        return f"{_show_str(v)} in 'preserve_env' can never be preserved (MALLOC_*/LD_*)"
    if v in GLEXEC_SET_VARS:
        return (f"{_show_str(v)} in 'preserve_env' can never be preserved "
                "(glexec sets it for the payload)")
    return None


def parse_config(text, filename):
    """Parse and validate glexec.yaml text; ``ConfigError(filename, line, what)`` on any
    problem (a complete ``Config`` or an error, never a partial result).  A gLExec
    glexec.conf given by mistake is named as such (checked only once the YAML failed)."""
    from glexec_py.core.strictyaml import load   # not on the engine's cached-config path
    try:
        return load(text, filename, lambda root, loader, yaml: _Parser(filename, loader, yaml).document(root))
    except ConfigError:
        line = glexec_ini_line(text)
        if line:
            raise ConfigError(filename, line, "this is a gLExec INI file (glexec.conf); convert it "
                                              "with glexec-import") from None
        raise


def glexec_ini_line(text):
    """The line of the ``[glexec]`` section header when ``text`` reads as gLExec's INI
    glexec.conf (that header first, but for comments, and only ``key = value`` lines in
    it), else 0."""
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8", "replace")
    header, section = 0, None
    for lineno, raw in enumerate(text.split("\n"), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
            if not header:
                if section != "glexec":
                    return 0
                header = lineno
            continue
        if not header:
            return 0
        if section == "glexec":
            key, eq, _ = line.partition("=")
            key = key.strip()
            if not (eq and key and key.replace("_", "a").isalnum()):
                return 0
    return header
