"""Config for this issue's gLExec features: `epilogue:` is refused with the reason and
where to look (docs/epilogue.md); `audit.monitor_lines` is a boolean, off by default."""
import pytest

from glexec_py.core.config import parse_config
from glexec_py.errors import ConfigError

BASE = """\
credentials:
  ca_dir: /etc/grid-security/certificates
mapping:
  gridmapfile: /etc/glexec-py/grid-mapfile
audit:
  file: /var/log/glexec-py/audit.jsonl
state_dir: /var/lib/glexec-py
"""


@pytest.mark.parametrize("section", [
    "epilogue:\n  command: /usr/libexec/cleanup\n  user: root\n  group: root\n  timeout: 300\n",
    "epilogue: {}\n", "epilogue:\n"])
def test_epilogue_is_an_explicit_error(section):
    with pytest.raises(ConfigError) as e:
        parse_config(BASE + section, "glexec.yaml")
    text = str(e.value)
    assert "glexec.yaml:8:" in text and "'epilogue' is not supported" in text
    assert "glexec-sweep" in text and "docs/epilogue.md" in text


def test_monitor_lines():
    assert parse_config(BASE, "glexec.yaml").audit.monitor_lines is False
    cfg = parse_config(BASE.replace("audit:\n", "audit:\n  monitor_lines: true\n"), "glexec.yaml")
    assert cfg.audit.monitor_lines is True
    with pytest.raises(ConfigError, match="'monitor_lines' must be a boolean"):
        parse_config(BASE.replace("audit:\n", "audit:\n  monitor_lines: 1\n"), "glexec.yaml")
