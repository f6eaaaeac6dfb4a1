"""atheris target: glexec_py.core.config.parse_config (strict glexec.yaml loader).

Oracles (beyond "no crash"):
  * parse_config raises nothing but ConfigError (a RecursionError, yaml error or
    TypeError escaping is a finding);
  * all or nothing: the result is a complete Config (every section of SCHEMA present with
    every key), never a partial one;
  * the engine's cache round trip is exact: config_from_plain(config_to_plain(c)) == c and
    survives marshal (what the engine caches);
  * parsing is deterministic (a second parse gives an equal Config);
  * every site tool's section parser (glexec_tools.front.SECTIONS: prune, sweep, leases,
    backmap) raises nothing but ConfigError on the same bytes, and refuses a file the
    engine refuses (a tool never runs on a configuration the engine would not load).
"""
import marshal
import os
import sys

import atheris

import _common
from _common import check

with atheris.instrument_imports(include=["glexec_py", "glexec_tools"]):
    import yaml  # noqa: F401  (not instrumented: keep the coverage on our validator)
    from glexec_py.core import config
    from glexec_py.errors import ConfigError
    from importlib import import_module
    from glexec_tools import front
    SECTION_PARSERS = [import_module(m).parse_section for m in front.SECTIONS.values()]


def TestOneInput(data):
    ok, cfg = _common.only(ConfigError, config.parse_config, data, "fuzz.yaml")
    for parse_section in SECTION_PARSERS:
        tool_ok, _ = _common.only(ConfigError, parse_section, data, "fuzz.yaml")
        check(ok or not tool_ok, f"{parse_section.__module__} accepts a file the engine refuses")
    if not ok:
        return
    check(type(cfg) is config.Config, f"not a Config: {type(cfg)}")
    plain = config.config_to_plain(cfg)
    for name, keys in config.SCHEMA:
        check(set(plain[name]) == {k for k, _, _ in keys}, f"section {name} incomplete")
    back = config.config_from_plain(marshal.loads(marshal.dumps(plain)))
    check(back == cfg, "config_from_plain(config_to_plain(c)) != c")
    check(config.parse_config(data, "fuzz.yaml") == cfg, "parse not deterministic")


def seeds():
    out = []
    tmpl = os.path.join(_common.REPO, "policy", "glexec.yaml.in")
    with open(tmpl, "rb") as f:
        text = f.read()
        for key, value in ((b"@CONFDIR@", b"/etc/glexec-py"), (b"@LOGDIR@", b"/var/log/glexec-py"),
                           (b"@STATEDIR@", b"/var/lib/glexec-py")):
            text = text.replace(key, value)
        out.append(text)
    import glob
    for p in glob.glob(os.path.join(_common.BASE, "prefix-*", "etc", "glexec-py", "glexec.yaml"))[:3]:
        with open(p, "rb") as f:
            out.append(f.read())
    out += [b"", b"a: &x 1\nb: *x\n", b"callers: {users: [pilot]}\n", b"- [[[[[[[[[[]]]]]]]]]]\n"]
    return out


if __name__ == "__main__":
    _common.seed(sys.argv, seeds)
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
