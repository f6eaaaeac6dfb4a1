"""The three parsers of glexec-import: glexec.conf (INI quirks), lcmaps.db (the LCMAPS
policy language), lcas.db; and the report's file:line for each item."""
import pytest
from hypothesis import given, settings, strategies as st

from glexec_tools.importer import plan as P, policy, sources
from glexec_tools.importer.report import Report

# every key of reference glexec-interface.md section 6, with the values sites really wrote
ALL_KEYS = {
    "linger": "yes", "user_identity_switch_by": "lcmaps", "use_lcas": "no",
    "user_white_list": "pilot,.plt", "group_white_list": "pilotgrp",
    "omission_private_key_white_list": "tomcat", "preserve_env_variables": "no",
    "create_target_proxy": "yes", "target_lock_mechanism": "fcntl", "lock_mechanism": "flock",
    "input_lock_mechanism": "disabled", "log_destination": "syslog",
    "log_file": "/var/log/glexec/glexec_log", "log_file_group": "root", "log_level": "1",
    "silent_logging": "no", "syslog_facility": "LOG_DAEMON", "diff_syslog_levels": "no",
    "pedantic_security_checks": "no", "prohibit_exec_via_symlink": "no", "certdir": "",
    "vomsdir": "", "backlog_path": "", "lcas_libdir": "/usr/lib64/lcas",
    "lcas_db_file": "/etc/lcas/lcas-glexec.db", "lcas_log_file": "/var/log/glexec/lcas_lcmaps.log",
    "lcas_debug_level": "0", "lcas_log_level": "1", "lcmaps_libdir": "/usr/lib64/lcmaps",
    "lcmaps_db_file": "/etc/lcmaps/lcmaps-glexec.db",
    "lcmaps_log_file": "/var/log/glexec/lcas_lcmaps.log", "lcmaps_debug_level": "0",
    "lcmaps_log_level": "1", "lcmaps_voms_verification": "yes",
    "lcmaps_get_account_policy": "glexec_get_account",
    "lcmaps_verify_account_policy": "glexec_verify_account",
    "epilogue": "/usr/libexec/epilogue", "epilogue_user": "epi", "epilogue_group": "epi",
    "epilogue_timeout": "300",
}
DB = """path = /usr/lib64/lcmaps
verify_proxy = "lcmaps_verify_proxy.mod" " -certdir /etc/grid-security/certificates"
localaccount = "lcmaps_localaccount.mod" " -gridmap /etc/grid-security/grid-mapfile"
poolaccount = "lcmaps_poolaccount.mod" " -gridmap /etc/grid-security/grid-mapfile"
              " -gridmapdir /etc/grid-security/gridmapdir"
good = "lcmaps_dummy_good.mod"
glexec_get_account:
verify_proxy -> localaccount
localaccount -> good | poolaccount
glexec_verify_account:
verify_proxy -> good
"""


def conf_text(values):
    return "[glexec]\n" + "".join(f"{k} = {v}\n" for k, v in values.items())


def run(conf, db=DB, lcas=None):
    return P.translate("/etc/glexec.conf", conf, "/etc/lcmaps.db", db,
                       "/etc/lcas/lcas.db" if lcas is not None else None, lcas,
                       state_dir="/var/lib/glexec-py", audit_file="/var/log/glexec-py/audit.jsonl")


def by_item(result, item):
    return [f for f in result.findings if f.item == item]


# --- glexec.conf -----------------------------------------------------------------------

def test_every_section_6_key_is_accounted_for_at_its_line():
    r = run(conf_text(ALL_KEYS))
    assert r.yaml_text is not None, r.errors
    for n, key in enumerate(ALL_KEYS, start=2):
        found = [f for f in by_item(r, key) if f.file == "/etc/glexec.conf"]
        assert found, f"{key} not in the report"
        assert all(f.line == n for f in found), (key, found)
        assert not any("not a gLExec 0.9 key" in f.why for f in found), found
    assert not r.errors


def test_unknown_key_is_reported_not_fatal():
    r = run(conf_text({"linger": "yes", "glexec_turbo": "on"}))
    f, = by_item(r, "glexec_turbo")
    assert (f.line, f.level, f.status) == (3, "warning", "not_translated")
    assert r.yaml_text is not None and r.exit_code == 1


@pytest.mark.parametrize("value", ["no", "yes", "NO", "", "none"])
def test_preserve_env_placeholders_mean_nothing_extra(value):
    r = run(conf_text({"preserve_env_variables": value}))
    assert "preserve_env: []" in r.yaml_text
    assert not r.warnings or all(f.item != "preserve_env_variables" for f in r.warnings)


def test_preserve_env_names_kept_and_unsafe_ones_reported():
    r = run(conf_text({"preserve_env_variables": "TZ,LANG LD_PRELOAD, MALLOC_CHECK_,HOME,1BAD"}))
    assert 'preserve_env: ["TZ", "LANG"]' in r.yaml_text
    w, = [f for f in r.warnings if f.item == "preserve_env_variables"]
    assert all(n in w.why for n in ("LD_PRELOAD", "MALLOC_CHECK_", "HOME", "1BAD"))


def test_ini_quirks():
    text = ("# comment\n; another\n[other]\nlinger = no\n[glexec]\r\n"
            "  LINGER   =   no   # trailing\n"
            "create_target_proxy = \"no\"\n"
            "this line has no equals sign\n"
            "user_white_list = a\nuser_white_list = b\n")
    rep = Report()
    conf = sources.parse_glexec_conf(text, "g.conf", rep)
    assert conf["linger"] == sources.ConfValue("no", 6)
    assert conf["create_target_proxy"].value == "no"
    assert conf["user_white_list"] == sources.ConfValue("b", 10)
    lines = {(f.line, f.status) for f in rep.findings}
    assert (3, "not_needed") in lines          # [other] ignored, as gLExec does
    assert (4, "not_translated") in lines      # its key too
    assert (8, "not_translated") in lines      # no '='
    assert (10, "differs") in lines            # set twice


def test_linger_no_and_lists():
    r = run(conf_text({"linger": "no", "user_white_list": "pilot, .plt ,pool*",
                       "group_white_list": "g1,g2", "create_target_proxy": "no"}))
    y = r.yaml_text
    assert "linger: false" in y and "create: false" in y
    assert 'users: ["pilot", ".plt", ".pool"]' in y and 'groups: ["g1", "g2"]' in y
    assert any(f.status == "stricter" and "pool*" in f.why for f in r.warnings)


def test_wildcard_white_list_is_not_translated_to_anyone():
    r = run(conf_text({"user_white_list": "*"}))
    assert "users: []" in r.yaml_text
    assert any("'*' (anyone)" in f.why for f in r.warnings)


@pytest.mark.parametrize("value,ok", [("syslog", True), ("file", True), ("console", False)])
def test_log_destination(value, ok):
    r = run(conf_text({"log_destination": value}))
    f = by_item(r, "log_destination")[0]
    assert (f.level == "info") == ok
    assert ("syslog: false" in r.yaml_text) == (value == "file")


def test_bad_yes_no_value_keeps_the_default_and_warns():
    r = run(conf_text({"linger": "sometimes"}))
    assert "linger: true" in r.yaml_text
    assert by_item(r, "linger")[0].level == "warning"


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("[]=#; \t\nabcglexec_yesno,.*/\"'\r")), max_size=300))
def test_any_ini_text_gives_a_plan_never_an_exception(text):
    r = run(text)
    assert r.yaml_text is not None or r.errors
    if r.yaml_text is not None:
        from glexec_py.core.config import parse_config
        parse_config(r.yaml_text, "x")


# --- lcmaps.db -------------------------------------------------------------------------

def test_db_syntax_comments_continuation_quoting_chains():
    db = sources.parse_lcmaps_db(
        '# top comment\npath = "/usr/lib/lcmaps"\n'
        'a = "lcmaps_localaccount.mod"   # after a value\n'
        '    "-gridmap /x/grid-mapfile"\n'
        '    " -odd \\"quoted\\" arg"\n'
        'alias = a\n'
        'p1:\n~alias -> lcmaps_dummy_bad.mod\n'
        'p2 :\nalias -> b | c\n')
    assert db.path == ("/usr/lib/lcmaps", 2)
    assert db.variables["a"].value == 'lcmaps_localaccount.mod -gridmap /x/grid-mapfile  -odd "quoted" arg'
    assert db.variables["a"].line == 3
    assert [p.name for p in db.policies] == ["p1", "p2"]
    assert db.policies[0].rules[0] == sources.Rule("alias", None, "lcmaps_dummy_bad.mod", 8)
    assert db.policies[1].rules[0] == sources.Rule("alias", "b", "c", 10)
    inst = sources.resolve_state(db, "alias")
    assert (inst.module, inst.args, inst.line) == ("localaccount",
                                                   ("-gridmap", "/x/grid-mapfile", "-odd", '"quoted"', "arg"), 3)
    assert sources.resolve_state(db, "lcmaps_dummy_bad.mod").module == "dummy_bad"


@pytest.mark.parametrize("text,line,what", [
    ('a = "unterminated\n', 1, "unterminated string"),
    ('p:\na\n', 2, "a state needs a rule"),
    ('a -> b\n', 1, "outside any policy"),
    ('p:\na -> b\na -> c\n', 3, "on the left of two rules"),
    ('p:\na -> b\nb -> a\n', 1, "loop"),
    ('a = "x.mod"\na = "y.mod"\n', 2, "defined twice"),
    ('p:\n', 1, "no rules"),
    ('a = "x" $\n', 1, "unexpected character"),
])
def test_db_syntax_errors_have_lines(text, line, what):
    with pytest.raises(sources.DbSyntaxError) as e:
        sources.parse_lcmaps_db(text)
    assert e.value.line == line and what in e.value.what


def test_db_syntax_error_is_reported_at_its_line_and_blocks_output():
    r = run(conf_text({}), db='x = "lcmaps_localaccount.mod"\np:\nx\n')
    e, = r.errors
    assert (e.file, e.line) == ("/etc/lcmaps.db", 3) and r.yaml_text is None and r.exit_code == 1


def test_unknown_module_in_the_policy_is_refused_with_its_line():
    db = DB.replace('good = "lcmaps_dummy_good.mod"', 'good = "lcmaps_magic.mod -x"')
    r = run(conf_text({"lcmaps_get_account_policy": "glexec_get_account"}), db=db)
    e, = r.errors
    assert (e.line, e.item, e.status) == (6, "good", "refused") and "unknown plugin" in e.why


def test_unused_unknown_module_is_only_noted():
    db = DB + 'odd = "lcmaps_magic.mod"\n'
    r = run(conf_text({"lcmaps_get_account_policy": "glexec_get_account"}), db=db)
    assert r.yaml_text is not None
    f, = by_item(r, "odd")
    assert (f.line, f.level) == (12, "info")


def test_named_policy_missing_is_an_error():
    r = run(conf_text({"lcmaps_get_account_policy": "nosuch"}))
    e, = r.errors
    assert e.item == "lcmaps_get_account_policy" and e.line == 2 and "nosuch" in e.why


def test_policy_order_is_derived_and_explained():
    r = run(conf_text({"lcmaps_get_account_policy": "glexec_get_account"}))
    assert 'order: ["local", "pool"]' in r.yaml_text
    assert r.policies["glexec_get_account"][-1].endswith("mapping.order ['local', 'pool']")
    other, = by_item(r, "policy glexec_verify_account")
    assert other.status == "not_needed" and other.line == 10


def test_a_policy_no_single_order_can_express_is_refused():
    db = ('l = "lcmaps_localaccount.mod -gridmap /g"\n'
          'p = "lcmaps_poolaccount.mod -gridmap /g -gridmapdir /d"\n'
          'g = "lcmaps_voms_localgroup.mod -groupmapfile /gm"\n'
          'v = "lcmaps_voms_localaccount.mod -gridmap /g -use_voms_gid"\n'
          'x:\ng -> l | p\n')
    r = run(conf_text({}), db=db)
    e, = [f for f in r.errors if f.item == "policy x"]
    assert "no single glexec-py order" in e.why and e.line == 5


def test_two_account_plugins_on_one_path_are_refused():
    db = ('l = "lcmaps_localaccount.mod -gridmap /g"\n'
          'p = "lcmaps_poolaccount.mod -gridmap /g -gridmapdir /d"\n'
          'x:\nl -> p\n')
    r = run(conf_text({}), db=db)
    assert any("two accounts on one path" in f.why for f in r.errors)


def test_two_gridmapfiles_are_refused():
    db = ('l = "lcmaps_localaccount.mod -gridmap /etc/a"\n'
          'v = "lcmaps_voms_localaccount.mod -gridmap /etc/b"\n'
          'x:\nv -> good | l\ngood = "lcmaps_dummy_good.mod"\n')
    r = run(conf_text({}), db=db)
    assert any("glexec-py reads one gridmapfile" in f.why for f in r.errors)


def test_voms_poolaccount_without_groups_is_refused():
    db = ('v = "lcmaps_voms_poolaccount.mod -gridmap /g -gridmapdir /d"\n'
          'x:\nv -> good\ngood = "lcmaps_dummy_good.mod"\n')
    r = run(conf_text({}), db=db)
    e, = r.errors
    assert "no primary gid" in e.why and e.line == 1
    ok = run(conf_text({}), db=db.replace("/d", "/d --add-primary-gid-from-mapped-account"))
    assert ok.yaml_text is not None


def test_same_module_twice_with_other_args_is_refused():
    db = ('a = "lcmaps_localaccount.mod -gridmap /g"\nb = "lcmaps_localaccount.mod -gridmap /h"\n'
          'x:\na -> b\n')
    r = run(conf_text({}), db=db)
    assert any("two argument lists" in f.why for f in r.errors)


def test_relative_option_paths_are_under_grid_security():
    db = ('l = "lcmaps_localaccount.mod -gridmap grid-mapfile"\n'
          'b = "lcmaps_ban_dn.mod -banmapfile ban_dn.db"\nx:\nb -> l\n')
    r = run(conf_text({}), db=db)
    assert 'gridmapfile: "/etc/grid-security/grid-mapfile"' in r.yaml_text
    assert 'dn_files: ["/etc/grid-security/ban_dn.db"]' in r.yaml_text


def test_no_policy_name_means_every_policy_in_file_order():
    db = DB.replace("glexec_verify_account:\nverify_proxy -> good\n",
                    'pa:\nverify_proxy -> poolaccount\n')
    r = run(conf_text({}), db=db)
    assert 'order: ["local", "pool"]' in r.yaml_text
    assert any("tries every policy in file order" in f.why for f in r.findings)


def test_ban_missing_from_a_later_policy_is_reported_stricter():
    db = ('b = "lcmaps_ban_dn.mod -banmapfile /etc/ban"\nl = "lcmaps_localaccount.mod -gridmap /g"\n'
          'p = "lcmaps_poolaccount.mod -gridmap /g -gridmapdir /d"\n'
          'one:\nb -> l\ntwo:\np -> lcmaps_dummy_good.mod\n')
    r = run(conf_text({}), db=db)
    w, = [f for f in r.warnings if f.item == "policy two"]
    assert w.status == "stricter" and w.line == 6 and "ban_dn" in w.why


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["localaccount", "poolaccount", "voms_localaccount"]),
                min_size=1, max_size=3, unique=True))
def test_a_fall_through_chain_becomes_its_order(chain):
    """'a -> good | b', 'b -> good | c', ...: glexec-py's order is the chain."""
    args = {"localaccount": "-gridmap /g", "poolaccount": "-gridmap /g -gridmapdir /d",
            "voms_localaccount": "-gridmap /g"}
    lines = [f'{m} = "lcmaps_{m}.mod {args[m]}"' for m in chain] + ['good = "lcmaps_dummy_good.mod"', "x:"]
    for a, b in zip(chain, chain[1:] + [None]):
        lines.append(f"{a} -> good" + (f" | {b}" if b else ""))
    r = run(conf_text({}), db="\n".join(lines) + "\n")
    assert r.yaml_text is not None, r.errors
    want = "[" + ", ".join(f'"{policy.SOURCE_OF[m]}"' for m in chain) + "]"
    assert f"order: {want}" in r.yaml_text


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(list('abl:->|~="# \n.\\') + ["lcmaps_localaccount.mod",
                                                                "-gridmap /g", "path"]),
                max_size=60).map("".join))
def test_any_db_text_gives_a_plan_never_an_exception(text):
    r = run(conf_text({}), db=text)
    assert r.yaml_text is not None or r.errors


# --- lcas.db ---------------------------------------------------------------------------

def test_lcas_userban_becomes_a_global_dn_ban_and_others_are_refused():
    conf = conf_text({"use_lcas": "yes", "lcmaps_get_account_policy": "glexec_get_account"})
    r = run(conf, lcas='# c\npluginname=lcas_userban.mod,pluginargs=ban_users.db\n')
    assert 'dn_files: ["/etc/lcas/ban_users.db"]' in r.yaml_text
    f, = by_item(r, "lcas_userban.mod")
    assert f.line == 2 and f.status == "translated"
    r = run(conf, lcas='pluginname="/usr/lib64/lcas/lcas_userallow.mod",pluginargs="allowed"\n'
                       'garbage\n')
    assert r.yaml_text is None
    assert {(e.line, e.status) for e in r.errors} == {(1, "refused"), (2, "refused")}


def test_use_lcas_no_ignores_lcas_db():
    conf = conf_text({"use_lcas": "no"})
    r = run(conf, lcas="pluginname=lcas_userallow.mod,pluginargs=x\n")
    assert r.yaml_text is not None


# --- referenced files ------------------------------------------------------------------

def test_ban_file_glexec_py_cannot_use_is_an_error_at_its_line():
    db = ('b = "lcmaps_ban_dn.mod -banmapfile /etc/ban"\nl = "lcmaps_localaccount.mod -gridmap /g"\n'
          'x:\nb -> l\n')
    files = {"/etc/ban": b'"/DC=x/CN=Ok"\n/DC=x/CN=Jane Doe\n', "/g": b'"/DC=x/CN=Ok" ok\n'}
    r = P.translate("/etc/glexec.conf", "[glexec]\n", "/etc/lcmaps.db", db, files=files)
    e, = r.errors
    assert (e.file, e.line) == ("/etc/ban", 2) and "unquoted" in e.why
    files["/etc/ban"] = None
    r = P.translate("/etc/glexec.conf", "[glexec]\n", "/etc/lcmaps.db", db, files=files)
    assert r.yaml_text is not None and any(f.file == "/etc/ban" for f in r.warnings)


# --- gLExec's epilogue (refused, docs/epilogue.md) and the tracking plugin (monitor lines) ----

def test_epilogue_is_reported_with_what_replaces_it_and_tracking_becomes_monitor_lines():
    """An epilogue has no glexec-py equivalent: every epilogue key is a warning naming the
    site tools that replace it, and nothing about it reaches the YAML (the loader would
    refuse an 'epilogue' section). The LCMAPS tracking plugin becomes audit.monitor_lines."""
    from glexec_py.core.config import EPILOGUE_REFUSED, parse_config
    conf = conf_text({"epilogue": "/usr/libexec/epi", "epilogue_user": "epi",
                      "epilogue_group": "epigrp", "epilogue_timeout": "120",
                      "lcmaps_get_account_policy": "glexec_get_account"})
    db = DB.replace('good = "lcmaps_dummy_good.mod"',
                    'good = "lcmaps_glexec_tracking.mod -exec /usr/sbin/glexec_monitor"')
    r = run(conf, db=db)
    for key in ("epilogue", "epilogue_user", "epilogue_group", "epilogue_timeout"):
        f, = by_item(r, key)
        assert f.level == "warning" and f.why == EPILOGUE_REFUSED
    assert r.yaml_text is not None and "epilogue" not in r.yaml_text
    assert parse_config(r.yaml_text.encode(), "imported.yaml").audit.monitor_lines is True
    r = run(conf_text({"epilogue": "", "epilogue_timeout": "120"}))
    assert {f.level for f in r.findings if f.item.startswith("epilogue")} == {"info"}


def test_ca_dir_without_namespace_files_is_warned():
    db = ('v = "lcmaps_verify_proxy.mod -certdir /etc/ca"\nl = "lcmaps_localaccount.mod -gridmap /g"\n'
          'x:\nv -> l\n')
    files = {"/g": b"", "/etc/ca": ("0123abcd.0", "0123abcd.r0", "89abcdef.0", "89abcdef.namespaces")}
    r = P.translate("/etc/glexec.conf", "[glexec]\n", "/etc/lcmaps.db", db, files=files)
    w, = [f for f in r.warnings if f.file == "/etc/ca"]
    assert "1 CA(s) (0123abcd)" in w.why and "namespace_policy" in w.why
    files["/etc/ca"] = ("89abcdef.0", "89abcdef.signing_policy")
    r = P.translate("/etc/glexec.conf", "[glexec]\n", "/etc/lcmaps.db", db, files=files)
    assert not [f for f in r.warnings if f.file == "/etc/ca"]


def test_plugin_options_two_word_ttl_and_values():
    assert sources.plugin_options(["--max-proxy-level-ttl=L", "1d-00:00", "-certdir", "/c", "--X", "-y"]) == [
        ("--max-proxy-level-ttl", "L 1d-00:00"), ("-certdir", "/c"), ("--x", None), ("-y", None)]
    assert sources.plugin_options(["stray"]) == [(None, "stray")]
