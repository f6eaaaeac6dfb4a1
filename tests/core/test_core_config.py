import marshal
import subprocess
import sys

import pytest
from hypothesis import given, settings, strategies as st, HealthCheck

from glexec_py.core.config import (Config, config_from_plain, config_to_plain, gid_kept,
                                   parse_config)
from glexec_py.errors import ConfigError, SystemFault

F = "glexec.yaml"
BASE = """\
credentials:
  ca_dir: /etc/grid-security/certificates
mapping:
  gridmapfile: /etc/grid-security/grid-mapfile
audit:
  file: /var/log/glexec-py/audit.jsonl
state_dir: /var/lib/glexec-py
"""   # 7 lines; appended text starts on line 8

FULL = """\
callers:
  users: [pilot, .glidein]
  groups:
    - pilots
  omission_private_key: [condor]
credentials:
  ca_dir: /etc/grid-security/certificates
  max_file_size: 1048576
  x509_user_proxy_fallback: yes
mapping:
  gridmapfile: /etc/grid-security/grid-mapfile
  min_uid: 5000
  max_uid: 5999
  forbidden_groups: [root, wheel]
audit:
  file: /var/log/a.jsonl
  syslog: false
  syslog_facility: LOG_LOCAL3
payload:
  linger: no
  preserve_env: [TZ, LANG, GLEXEC_X]
  path: /usr/bin:/bin
  keep_caller_groups: [40000, "60000-60099"]
  no_new_privs: true
target_proxy:
  create: False
  default_dir: /var/tmp
state_dir: /var/lib/glexec-py
"""


def err(text, filename=F):
    with pytest.raises(ConfigError) as ei:
        parse_config(text, filename)
    e = ei.value
    assert e.exit_code == 202 and e.reason == "config"
    assert "\n" not in e.message and e.message.isascii()
    return e.message


def test_defaults():
    c = parse_config(BASE, F)
    assert c.callers.users == () and c.callers.groups == () and c.callers.omission_private_key == ()
    assert c.credentials.ca_dir == "/etc/grid-security/certificates"
    assert c.credentials.max_file_size == 65536
    assert c.credentials.x509_user_proxy_fallback is False
    assert c.mapping.min_uid == 1000 and c.mapping.max_uid == 4294967294
    assert c.mapping.forbidden_groups == ("root", "sudo", "adm", "disk", "docker", "shadow",
                                          "wheel", "staff", "lxd", "kvm", "libvirt")
    assert c.audit.syslog is True and c.audit.syslog_facility == "LOG_DAEMON"
    assert c.payload.linger is True and c.payload.preserve_env == ()
    assert c.payload.path == "/usr/local/bin:/usr/bin:/bin"
    assert c.payload.keep_caller_groups == () and c.payload.no_new_privs is False
    assert c.target_proxy.create is True and c.target_proxy.default_dir == "/tmp"
    assert c.state_dir == "/var/lib/glexec-py"


def test_full():
    c = parse_config(FULL, F)
    assert c.callers.users == ("pilot", ".glidein") and c.callers.groups == ("pilots",)
    assert c.credentials.x509_user_proxy_fallback is True
    assert (c.mapping.min_uid, c.mapping.max_uid) == (5000, 5999)
    assert c.audit.syslog is False and c.audit.syslog_facility == "LOG_LOCAL3"
    assert c.payload.linger is False and c.payload.preserve_env == ("TZ", "LANG", "GLEXEC_X")
    assert c.payload.keep_caller_groups == ((40000, 40000), (60000, 60099))
    assert c.target_proxy.create is False


def test_read_only_and_unknown_attribute():
    c = parse_config(BASE, F)
    with pytest.raises(AttributeError):
        c.payload.linger = False
    with pytest.raises(AttributeError):
        c.state_dir = "/x"
    with pytest.raises(AttributeError):
        c.payload.lingr


def test_empty_sections_and_comments():
    c = parse_config("# c\n" + BASE + "payload:\ncallers: {}\n", F)
    assert c.payload.linger is True


def test_plain_round_trip_and_marshal():
    c = parse_config(FULL, F)
    p = config_to_plain(c)
    blob = marshal.dumps(p)
    c2 = config_from_plain(marshal.loads(blob))
    assert c2 == c and config_to_plain(c2) == p
    assert c2.payload.keep_caller_groups == ((40000, 40000), (60000, 60099))
    # lists (e.g. from another serialiser) become tuples
    p2 = config_to_plain(c)
    p2["callers"]["users"] = list(p2["callers"]["users"])
    p2["payload"]["keep_caller_groups"] = [[40000, 40000], [60000, 60099]]
    assert config_from_plain(p2) == c


@pytest.mark.parametrize("mut", [
    lambda p: p.pop("audit"), lambda p: p.pop("state_dir"), lambda p: p["payload"].pop("linger"),
    lambda p: p.__setitem__("extra", {}), lambda p: p["payload"].__setitem__("x", 1),
    lambda p: p.__setitem__("state_dir", 5), lambda p: p.__setitem__("payload", []),
])
def test_from_plain_rejects_other_shapes(mut):
    p = config_to_plain(parse_config(BASE, F))
    mut(p)
    with pytest.raises(SystemFault):
        config_from_plain(p)
    with pytest.raises(SystemFault):
        config_from_plain([])


def test_gid_kept():
    c = parse_config(FULL, F)
    assert gid_kept(c, 40000) and gid_kept(c, 60000) and gid_kept(c, 60099)
    assert not gid_kept(c, 40001) and not gid_kept(c, 60100) and not gid_kept(c, 0)
    assert not gid_kept(parse_config(BASE, F), 40000)


def test_from_plain_does_not_import_yaml():
    code = ("import sys, marshal; sys.path.insert(0, %r)\n"
            "from glexec_py.core import config\n"
            "c = config.config_from_plain(marshal.loads(%r))\n"
            "assert c.payload.linger is False\n"
            "bad = [m for m in ('yaml', 're', 'json', 'enum', 'typing', 'dataclasses') "
            "if m in sys.modules]\n"
            "assert not bad, bad\n") % (".",
                                         marshal.dumps(config_to_plain(parse_config(FULL, F))))
    subprocess.run([sys.executable, "-I", "-S", "-c", code], check=True, cwd=_root())


def _root():
    import os
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_bool_resolution():
    for word, val in (("yes", True), ("no", False), ("True", True), ("off", False)):
        assert parse_config(BASE + f"payload:\n  linger: {word}\n", F).payload.linger is val
    assert err(BASE + 'payload:\n  linger: "yes"\n') == \
        "glexec.yaml:9: 'linger' must be a boolean, not 'yes'"
    assert err(BASE + "payload:\n  linger: 1\n") == \
        "glexec.yaml:9: 'linger' must be a boolean, not '1'"


# --- every error class with its exact file:line -------------------------------------

@pytest.mark.parametrize("text,msg", [
    (BASE + "payload:\n  lingr: yes\n", "glexec.yaml:9: unknown key 'lingr' in 'payload'"),
    (BASE + "payload:\n  linger: maybe\n",
     "glexec.yaml:9: 'linger' must be a boolean, not 'maybe'"),
    (BASE + "payload:\n  linger:\n", "glexec.yaml:9: 'linger' must be a boolean, not null"),
    (BASE.replace("  file: /var/log/glexec-py/audit.jsonl\n", "  syslog: no\n"),
     "glexec.yaml:5: missing required key 'file' in 'audit'"),
    (BASE.replace("  file: /var/log/glexec-py/audit.jsonl\n", ""),
     "glexec.yaml:5: missing required key 'file' in 'audit'"),
    (BASE.replace("audit:\n  file: /var/log/glexec-py/audit.jsonl\n", ""),
     "glexec.yaml:1: missing required section 'audit'"),
    (BASE.replace("state_dir: /var/lib/glexec-py\n", ""),
     "glexec.yaml:1: missing required key 'state_dir'"),
    ("", "glexec.yaml:1: missing required section 'credentials'"),
    (BASE + "payload:\n  linger: yes\n  linger: no\n",
     "glexec.yaml:10: duplicate key 'linger' in 'payload'"),
    (BASE + "state_dir: /x\n", "glexec.yaml:8: duplicate key 'state_dir' in the top level"),
    (BASE + "lingr: 1\n", "glexec.yaml:8: unknown section 'lingr'"),
    (BASE + "payload: [1]\n", "glexec.yaml:8: section 'payload' must be a mapping, not a list"),
    ("- a\n", "glexec.yaml:1: the configuration must be a mapping, not a list"),
    (BASE + "? [a]\n: 1\n", "glexec.yaml:8: keys in the top level must be plain names, not a list"),
    (BASE + "payload:\n  path: &p /bin\n", "glexec.yaml:9: anchors and aliases are not allowed"),
    (BASE + "x: &a 1\ny: *a\n", "glexec.yaml:8: anchors and aliases are not allowed"),
    (BASE + "payload:\n  linger: !!bool yes\n", "glexec.yaml:9: explicit tags are not allowed"),
    (BASE + "payload: !foo\n  linger: yes\n", "glexec.yaml:8: explicit tags are not allowed"),
    (BASE + "payload:\n  linger: yes\n   bad: indent\n",
     "glexec.yaml:10: YAML syntax error: mapping values are not allowed here"),
    (BASE + "payload: {\n", "glexec.yaml:9: YAML syntax error: while parsing a flow node, "
                            "expected the node content, but found '<stream end>'"),
    (BASE + "---\na: 1\n", "glexec.yaml:8: YAML syntax error: expected a single document in the "
                           "stream, but found another document"),
    (BASE + "payload:\n  path: \"\\x01\"\n", None),
    (BASE + "x: \x00\n", "glexec.yaml:8: unacceptable character #x0000 in the file"),
    (BASE + "credentials:\n", "glexec.yaml:8: duplicate key 'credentials' in the top level"),
    (BASE.replace("max", "") + "credentials2: {}\n", "glexec.yaml:8: unknown section 'credentials2'"),
])
def test_errors(text, msg):
    got = err(text)
    if msg is not None:
        assert got == msg


@pytest.mark.parametrize("line,msg", [
    ("credentials:\n  ca_dir: certs\n",
     "glexec.yaml:2: 'ca_dir' must be an absolute path, not 'certs'"),
    ("credentials:\n  ca_dir: 12\n", "glexec.yaml:2: 'ca_dir' must be an absolute path, not '12'"),
    ("credentials:\n  ca_dir: \"/a\\0b\"\n",
     "glexec.yaml:2: 'ca_dir' must not contain a NUL character"),
    ("credentials:\n  ca_dir: /c\n  max_file_size: 0\n",
     "glexec.yaml:3: 'max_file_size' must be an integer between 1 and 1048576, not '0'"),
    ("credentials:\n  ca_dir: /c\n  max_file_size: 1048577\n",
     "glexec.yaml:3: 'max_file_size' must be an integer between 1 and 1048576, not '1048577'"),
    ("credentials:\n  ca_dir: /c\n  max_file_size: 1.5\n",
     "glexec.yaml:3: 'max_file_size' must be an integer, not '1.5'"),
    ("credentials:\n  ca_dir: /c\n  max_file_size: '100'\n",
     "glexec.yaml:3: 'max_file_size' must be an integer, not '100'"),
    ("credentials:\n  ca_dir: /c\n  max_file_size: " + "9" * 5000 + "\n",
     "glexec.yaml:3: 'max_file_size' must be an integer between 1 and 1048576"),
    ("mapping:\n  gridmapfile: /g\n  min_uid: 0\n",
     "glexec.yaml:3: 'min_uid' must be an integer between 1 and 4294967294, not '0'"),
    ("mapping:\n  gridmapfile: /g\n  min_uid: 500\n  max_uid: 499\n",
     "glexec.yaml:4: 'max_uid' (499) must not be below 'min_uid' (500)"),
    ("mapping:\n  gridmapfile: /g\n  min_uid: 4294967294\n  max_uid: 4294967295\n",
     "glexec.yaml:4: 'max_uid' must be an integer between 1 and 4294967294, not '4294967295'"),
    ("mapping:\n  gridmapfile: /g\n  forbidden_groups: root\n",
     "glexec.yaml:3: 'forbidden_groups' must be a list, not 'root'"),
    ("mapping:\n  gridmapfile: /g\n  forbidden_groups: [root, 0]\n",
     "glexec.yaml:3: each entry of 'forbidden_groups' must be a string, not '0'"),
    ("audit:\n  file: /a\n  syslog_facility: LOG_MAIL\n",
     "glexec.yaml:3: 'syslog_facility' must be one of LOG_DAEMON, LOG_AUTH, LOG_AUTHPRIV, "
     "LOG_USER, LOG_LOCAL0, LOG_LOCAL1, LOG_LOCAL2, LOG_LOCAL3, LOG_LOCAL4, LOG_LOCAL5, "
     "LOG_LOCAL6, LOG_LOCAL7, not 'LOG_MAIL'"),
    ("payload:\n  preserve_env: [TZ, LD_PRELOAD]\n",
     "glexec.yaml:2: 'LD_PRELOAD' in 'preserve_env' can never be preserved (MALLOC_*/LD_*)"),
    ("payload:\n  preserve_env:\n    - MALLOC_ARENA_MAX\n",
     "glexec.yaml:3: 'MALLOC_ARENA_MAX' in 'preserve_env' can never be preserved "
     "(MALLOC_*/LD_*)"),
    ("payload:\n  preserve_env: [X509_USER_PROXY]\n",
     "glexec.yaml:2: 'X509_USER_PROXY' in 'preserve_env' can never be preserved "
     "(glexec sets it for the payload)"),
    ("payload:\n  preserve_env: [HOME]\n",
     "glexec.yaml:2: 'HOME' in 'preserve_env' can never be preserved "
     "(glexec sets it for the payload)"),
    ("payload:\n  preserve_env: ['1ABC']\n",
     "glexec.yaml:2: '1ABC' in 'preserve_env' is not a valid environment variable name"),
    ("payload:\n  preserve_env: ['A-B']\n",
     "glexec.yaml:2: 'A-B' in 'preserve_env' is not a valid environment variable name"),
    ("payload:\n  preserve_env: ['\u00c4']\n",
     "glexec.yaml:2: '\\xc4' in 'preserve_env' is not a valid environment variable name"),
    ("payload:\n  preserve_env: no\n", "glexec.yaml:2: 'preserve_env' must be a list, not 'no'"),
    ("payload:\n  path: /bin:.\n",
     "glexec.yaml:2: 'path' must be a colon-separated list of absolute directories, "
     "not '/bin:.'"),
    ("payload:\n  path: '/bin::/usr/bin'\n",
     "glexec.yaml:2: 'path' must be a colon-separated list of absolute directories, "
     "not '/bin::/usr/bin'"),
    ("payload:\n  keep_caller_groups: [0]\n",
     "glexec.yaml:2: gid 0 (root) can never be kept ('keep_caller_groups')"),
    ("payload:\n  keep_caller_groups: ['0-10']\n",
     "glexec.yaml:2: gid 0 (root) can never be kept ('keep_caller_groups')"),
    ("payload:\n  keep_caller_groups: ['10-5']\n",
     "glexec.yaml:2: range '10-5' in 'keep_caller_groups' is empty (low > high)"),
    ("payload:\n  keep_caller_groups: ['5000']\n",
     "glexec.yaml:2: each entry of 'keep_caller_groups' must be a gid or a range 'low-high', "
     "not '5000'"),
    ("payload:\n  keep_caller_groups: [-5]\n",
     "glexec.yaml:2: gids in 'keep_caller_groups' must be between 1 and 4294967294, not '-5'"),
    ("payload:\n  keep_caller_groups: ['1-4294967295']\n",
     "glexec.yaml:2: gids in 'keep_caller_groups' must be between 1 and 4294967294, "
     "not '1-4294967295'"),
    ("payload:\n  keep_caller_groups: [[1]]\n",
     "glexec.yaml:2: each entry of 'keep_caller_groups' must be a gid or a range 'low-high', "
     "not a list"),
    ("callers:\n  users: ['*']\n",
     "glexec.yaml:2: '*' is not accepted in callers.users ('*'): there are no wildcards, list "
     "account/group names or '.prefix' for pool accounts"),
    ("callers:\n  groups:\n    - ok\n    - 'pil*'\n",
     "glexec.yaml:4: '*' is not accepted in callers.groups ('pil*'): there are no wildcards, "
     "list account/group names or '.prefix' for pool accounts"),
    ("callers:\n  users: ['']\n", "glexec.yaml:2: empty name in callers.users"),
    ("callers:\n  users: ['.']\n", "glexec.yaml:2: empty name in callers.users"),
    ("callers:\n  users: [\"a\\nb\"]\n", "glexec.yaml:2: invalid name 'a\\x0ab' in callers.users"),
    ("callers:\n  omission_private_key: [yes]\n",
     "glexec.yaml:2: each entry of 'omission_private_key' must be a string, not 'yes'"),
    ("target_proxy:\n  default_dir: tmp\n",
     "glexec.yaml:2: 'default_dir' must be an absolute path, not 'tmp'"),
    ("state_dir: [a]\n", "glexec.yaml:1: 'state_dir' must be an absolute path, not a list"),
])
def test_value_errors(line, msg):
    # put the snippet first so its line numbers are the ones in msg; BASE supplies the rest
    base = BASE
    for sec in ("credentials", "mapping", "audit"):
        if line.startswith(sec + ":"):
            base = "\n".join(b for b in _drop_section(BASE, sec))
    if line.startswith("state_dir"):
        base = BASE.replace("state_dir: /var/lib/glexec-py\n", "")
    assert err(line + base) == msg


def _drop_section(text, sec):
    out, skip = [], False
    for ln in text.splitlines():
        if ln.startswith(sec + ":"):
            skip = True
            continue
        if skip and ln.startswith("  "):
            continue
        skip = False
        out.append(ln)
    return out + [""]


def test_filename_in_message():
    assert err(BASE + "x: 1\n", "/etc/glexec-py/glexec.yaml") == \
        "/etc/glexec-py/glexec.yaml:8: unknown section 'x'"


def test_bytes_input():
    assert parse_config(BASE.encode(), F) == parse_config(BASE, F)
    assert err(BASE.encode() + b"x: \xff\n") == "glexec.yaml:8: the file is not valid UTF-8"


def test_deep_nesting():
    msg = err("a: " + "[" * 5000 + "]" * 5000 + "\n")
    assert msg.startswith("glexec.yaml")


def test_unknown_key_is_sanitised():
    msg = err(BASE + "payload:\n  \"\\e[31mx\\u202e\": 1\n")
    assert msg == "glexec.yaml:9: unknown key '\\x1b[31mx\\u202e' in 'payload'"


# --- properties ---------------------------------------------------------------------

yamlish = st.text(alphabet=st.sampled_from(list("ab:-[]{},&*!?#|>'\"\n %@`\\\t\x00\x85\ufeff"
                                                "0123456789yesno~.")), max_size=120)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(max_size=200), yamlish, yamlish.map(lambda t: BASE + t)))
def test_prop_only_config_error(text):
    try:
        c = parse_config(text, F)
    except ConfigError as e:
        assert e.filename == F
        assert "\n" not in e.message and e.message.isascii() and e.message.isprintable()
        assert e.line is None or e.line >= 1
    else:
        assert isinstance(c, Config)
        assert config_from_plain(marshal.loads(marshal.dumps(config_to_plain(c)))) == c


keys = st.sampled_from(["linger", "preserve_env", "path", "keep_caller_groups", "no_new_privs",
                        "lingr"])
vals = st.sampled_from(["yes", "no", "maybe", "[TZ]", "[LD_X]", "/bin", "bin", "[1, '2-3']",
                        "['3-2']", "1", "''", "{}"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(keys, vals), max_size=5))
def test_prop_payload_section(pairs):
    text = BASE + "payload:\n" + "".join(f"  {k}: {v}\n" for k, v in pairs)
    try:
        c = parse_config(text, F)
    except ConfigError as e:
        assert e.line is not None and 8 <= e.line <= 8 + len(pairs)
    else:
        names = [k for k, _ in pairs]
        assert len(names) == len(set(names)) and "lingr" not in names
        assert isinstance(c.payload.linger, bool)


def test_bans_section():
    cfg = parse_config(BASE + 'bans:\n  dn_files: [/etc/glexec-py/ban_dn.db]\n  dn: ["/DC=org/CN=Eve"]\n', F)
    assert cfg.bans.dn_files == ("/etc/glexec-py/ban_dn.db",)
    assert cfg.bans.dn == ("/DC=org/CN=Eve",)
    assert parse_config(BASE, F).bans.fqan_files == ()
    assert err(BASE + "bans:\n  dn_files: [ban.db]\n") == \
        "glexec.yaml:9: each entry of 'dn_files' must be an absolute path"
    assert err(BASE + "bans:\n  fqan: ['']\n") == \
        "glexec.yaml:9: entries of 'fqan' must be non-empty single-line strings"
    assert err(BASE + "bans:\n  users: []\n") == "glexec.yaml:9: unknown key 'users' in 'bans'"


def test_tty_guard_default_on_and_strict():
    assert parse_config(BASE, F).payload.tty_guard is True
    assert parse_config(BASE + "payload:\n  tty_guard: false\n", F).payload.tty_guard is False
    assert "tty_guard" in err(BASE + 'payload:\n  tty_guard: "no"\n')


def test_namespace_policy_default_and_values():
    assert parse_config(BASE, F).credentials.namespace_policy == "require"
    for v in ("require", "optional", "ignore"):
        text = BASE.replace("  ca_dir:", f"  namespace_policy: {v}\n  ca_dir:")
        assert parse_config(text, F).credentials.namespace_policy == v
    for bad, shown in (("yes", "must be a string, not 'yes'"), ("off", "must be a string, not 'off'"),
                       ("Require", "must be 'require', 'optional' or 'ignore'"),
                       ("''", "must be 'require', 'optional' or 'ignore'")):
        msg = err(BASE.replace("  ca_dir:", f"  namespace_policy: {bad}\n  ca_dir:"))
        assert msg.startswith("glexec.yaml:2: 'namespace_policy' ") and shown in msg, msg


# --- pam and the per-caller lease limit --------------------------------------------------

def test_pam_defaults_on_with_the_glexec_service():
    cfg = parse_config(BASE, F)
    assert cfg.pam.enabled is True and cfg.pam.service == "glexec"
    assert cfg.mapping.max_leases_per_caller == "50%"


@pytest.mark.parametrize("value", ["gxt-test-ab12", "glexec", "a.b_c-d", "9x"])
def test_pam_service_names(value):
    assert parse_config(BASE + f"pam:\n  service: {value}\n", F).pam.service == value


@pytest.mark.parametrize("value", ['"../sshd"', '"a/b"', '""', '".hidden"', "x" * 65, "1", '"a b"'])
def test_pam_service_name_refused(value):
    with pytest.raises(ConfigError) as e:
        parse_config(BASE + f"pam:\n  service: {value}\n", F)
    assert e.value.line == 9


@pytest.mark.parametrize("value,want", [("0", 0), ("7", 7), ('"25%"', "25%"), ('"100%"', "100%"),
                                        ('"007%"', "7%")])
def test_lease_limit_values(value, want):
    text = BASE.replace("mapping:\n", f"mapping:\n  max_leases_per_caller: {value}\n")
    assert parse_config(text, F).mapping.max_leases_per_caller == want


@pytest.mark.parametrize("value", ['"0%"', '"101%"', '"%"', '"5"', "-1", "true", '"half"', "1.5"])
def test_lease_limit_refused(value):
    text = BASE.replace("mapping:\n", f"mapping:\n  max_leases_per_caller: {value}\n")
    with pytest.raises(ConfigError) as e:
        parse_config(text, F)
    assert e.value.line == 4 and "max_leases_per_caller" in e.value.what


def test_site_tool_sections_are_known_but_not_walked():
    """glexec.yaml holds the site tools' sections (prune, sweep, leases, backmap): the engine
    accepts them without validating their contents (each tool does, strictly), the same
    Config comes out, and an unknown section is still refused."""
    from glexec_py.core.config import TOOL_SECTIONS
    plain = parse_config(BASE, "glexec.yaml")
    tools = "".join(f"{name}:\n  anything: [1, {{x: y}}]\n" for name in TOOL_SECTIONS)
    assert set(TOOL_SECTIONS) == {"backmap", "job", "leases", "prune", "sweep"}
    assert parse_config(BASE + tools, "glexec.yaml") == plain
    with pytest.raises(ConfigError, match="unknown section 'prunes'"):
        parse_config(BASE + tools + "prunes: {}\n", "glexec.yaml")
    with pytest.raises(ConfigError, match="duplicate key 'prune'"):
        parse_config(BASE + "prune: {}\nprune: {}\n", "glexec.yaml")


# --- the lease store and the postgresql section --------------------------------------------

def test_lease_store_defaults_to_the_gridmapdir():
    cfg = parse_config(BASE, F)
    assert cfg.mapping.lease_store == "gridmapdir"
    assert (cfg.postgresql.conninfo_file, cfg.postgresql.connect_timeout, cfg.postgresql.timeout_ms,
            cfg.postgresql.node) == ("", 2, 2000, "")


def test_postgresql_lease_store_needs_a_conninfo_file():
    text = BASE.replace("  gridmapfile:", "  lease_store: postgresql\n  gridmapfile:")
    msg = err(text)
    assert "needs 'postgresql.conninfo_file'" in msg, msg
    cfg = parse_config(text + "postgresql:\n  conninfo_file: /etc/glexec-py/leases.conninfo\n"
                              "  timeout_ms: 500\n  node: wn-001.example.org\n", F)
    assert cfg.mapping.lease_store == "postgresql" and cfg.postgresql.timeout_ms == 500
    assert cfg.postgresql.node == "wn-001.example.org"
    assert config_from_plain(marshal.loads(marshal.dumps(config_to_plain(cfg)))) == cfg


@pytest.mark.parametrize("line,shown", [
    ("  lease_store: sqlite\n", "'lease_store' must be 'gridmapdir' or 'postgresql'"),
    ("postgresql:\n  conninfo_file: leases.conninfo\n", "'conninfo_file' must be an absolute path"),
    ("postgresql:\n  conninfo: host=db password=x\n", "unknown key 'conninfo' in 'postgresql'"),
    ("postgresql:\n  timeout_ms: 0\n", "'timeout_ms' must be an integer between 10 and 60000"),
    ("postgresql:\n  node: two words\n", "'node' must be a node name"),
])
def test_postgresql_section_errors(line, shown):
    text = BASE.replace("  gridmapfile:", line + "  gridmapfile:") if line.startswith("  ") else BASE + line
    assert shown in err(text)
