"""One site tool's section of glexec.yaml.  Pure: works on the text.

Every tool reads the one configuration file: the engine's sections (validated by
``glexec_py.core.config.parse_config``, whose values give the tool its defaults: state
directory, audit file, gridmapdir, min_uid, the gridmapfile's pools) and its own optional
top-level section (``prune:``, ``sweep:``, ``leases:``, ``backmap:``), validated here as
strictly as the engine's: unknown or duplicate keys, wrong types -> ``ConfigError(file,
line, what)``.

``load(text, filename, name, walk)`` -> ``walk(main, checker, node)``: ``main`` is the
engine's ``Config``, ``node`` the section's YAML mapping node or None when the file has no
such section (every section is optional), ``checker`` a ``Checker`` for its values.
"""
from glexec_py.core.text import clipped as _safe
from glexec_py.errors import ConfigError

_T = "tag:yaml.org,2002:"

# Keys that older separate files (prune.yaml, sweep.yaml) carried and that glexec.yaml sets
# once for every tool: key -> where it is now.
SHARED_KEYS = {"state_dir": "the top-level 'state_dir'", "audit_file": "'audit.file'",
               "syslog": "'audit.syslog'", "gridmapdir": "'mapping.gridmapdir'",
               "min_uid": "'mapping.min_uid'"}


class Checker:
    """Typed values of one section's YAML nodes, each error with its line."""

    def __init__(self, filename, section, loader, yaml):
        self.filename, self.section, self.loader, self.yaml = filename, section, loader, yaml

    def err(self, node, what):
        line = node if isinstance(node, int) else node.start_mark.line + 1
        return ConfigError(self.filename, line, what)

    def scalar(self, node, tag):
        return isinstance(node, self.yaml.ScalarNode) and node.tag == _T + tag

    def entries(self, node, known):
        """{key: value node} of the section mapping ``node`` (None: {}); refuses a
        non-mapping, odd or duplicate keys, keys not in ``known`` (a shared key gets a
        message saying where it is set now)."""
        if node is None or self.scalar(node, "null"):
            return {}
        if not isinstance(node, self.yaml.MappingNode):
            raise self.err(node, f"section '{self.section}' must be a mapping")
        out = {}
        for kn, vn in node.value:
            if not self.scalar(kn, "str"):
                raise self.err(kn, f"keys in '{self.section}' must be plain names")
            key = kn.value
            if key in out:
                raise self.err(kn, f"duplicate key '{_safe(key)}' in '{self.section}'")
            if key not in known:
                if key in SHARED_KEYS:
                    raise self.err(kn, f"'{key}' is not set per tool: glexec.yaml's "
                                       f"{SHARED_KEYS[key]} is used by every tool")
                raise self.err(kn, f"unknown key '{_safe(key)}' in '{self.section}' "
                                   f"(known: {', '.join(sorted(known))})")
            out[key] = vn
        return out

    def integer(self, node, key, lo, hi):
        if not self.scalar(node, "int"):
            raise self.err(node, f"'{self.section}.{key}' must be an integer")
        try:
            v = self.loader.construct_yaml_int(node)
        except ValueError:
            v = None
        if v is None or not lo <= v <= hi:
            raise self.err(node, f"'{self.section}.{key}' must be an integer between {lo} and {hi}")
        return v

    def boolean(self, node, key):
        if not self.scalar(node, "bool"):
            raise self.err(node, f"'{self.section}.{key}' must be a boolean (true/false)")
        return self.loader.construct_yaml_bool(node)

    def abspath(self, node, key):
        if not self.scalar(node, "str") or not node.value.startswith("/") \
                or "\0" in node.value or "\n" in node.value:
            raise self.err(node, f"'{self.section}.{key}' must be an absolute path")
        return node.value

    def plain(self, node):
        """The node as plain values (str/int/bool/None, lists, mappings with string keys;
        duplicate keys refused), for schemas validated on plain values."""
        if isinstance(node, self.yaml.MappingNode):
            out = {}
            for kn, vn in node.value:
                if not self.scalar(kn, "str"):
                    raise self.err(kn, "keys must be plain names")
                if kn.value in out:
                    raise self.err(kn, f"duplicate key '{_safe(kn.value)}'")
                out[kn.value] = self.plain(vn)
            return out
        if isinstance(node, self.yaml.SequenceNode):
            return [self.plain(item) for item in node.value]
        return self.loader.construct_object(node)


def load(text, filename, name, walk):
    """The engine's configuration and the tool section ``name`` of glexec.yaml ``text``,
    through ``walk(main, checker, node)``.  ``ConfigError`` on any problem in either."""
    from glexec_py.core.config import TOOL_SECTIONS, parse_config
    from glexec_py.core.strictyaml import load as load_yaml
    assert name in TOOL_SECTIONS, name
    main = parse_config(text, filename)

    def section(root, loader, yaml):
        node = None
        if isinstance(root, yaml.MappingNode):
            for kn, vn in root.value:
                if isinstance(kn, yaml.ScalarNode) and kn.value == name:
                    node = vn
        return walk(main, Checker(filename, name, loader, yaml), node)

    return load_yaml(text, filename, section)


def old_file_hint(text, tool, section):
    """The one line for a pre-glexec.yaml tool file (prune.yaml, sweep.yaml) given as
    ``--config``: its keys now live in glexec.yaml's ``section``.  None if ``text`` does not
    look like one (it has the engine's required sections)."""
    head = text[:65536] if isinstance(text, str) else bytes(text[:65536]).decode("utf-8", "replace")
    tops = {line.split(":", 1)[0].strip() for line in head.splitlines()
            if line[:1].isalpha() and ":" in line}
    if tops & {"credentials", "mapping", "audit"}:
        return None
    if tops & {"pool_accounts", "uid_ranges", "daemons", "roots", "pool", "job_cgroups",
               "audit_file"}:
        return (f"this is an old {tool} file: its keys now go in the '{section}:' section of "
                f"glexec.yaml (state_dir, audit_file, gridmapdir and min_uid come from "
                f"glexec.yaml's own settings)")
    return None


def present(text, name):
    """Whether glexec.yaml ``text`` (bytes) has a top-level ``name:`` key (a line starting
    with it): a tool whose section is absent can use the engine's cached configuration
    instead of importing YAML.  Errs towards True (then the file is parsed in full)."""
    data = bytes(text)
    key = name.encode() + b":"
    return data.startswith(key) or (b"\n" + key) in data or (b"\n" + name.encode() + b" ") in data
