"""Golden translations: each site of tests/importer/sites/ translates to exactly
golden/<site>.yaml (or to no YAML at all, for 'refused') with exactly the report in
golden/<site>.report -- one line per key, module and policy, with file:line and why.
The YAML loads with glexec_py/core/config.py unchanged.  ``GLEXEC_UPDATE_GOLDEN=1``
rewrites the golden files (review the diff!)."""
import os

import pytest

from glexec_py.core.config import parse_config
from tests.importer import sites as S

ROOT = "/srv/gridsite"        # @ROOT@: the referenced files are not read here
UPDATE = os.environ.get("GLEXEC_UPDATE_GOLDEN") == "1"


def _check(path, text):
    if UPDATE:
        path.write_text(text)
    assert path.read_text() == text, f"{path.name} differs from the translation"


@pytest.mark.parametrize("site", S.SITES)
def test_site_translates_to_its_golden_files(site):
    result = S.translate(site, ROOT)
    report = "\n".join(S.report_lines(result, ROOT)) + "\n"
    _check(S.GOLDEN_DIR / f"{site}.report", report)
    golden_yaml = S.GOLDEN_DIR / f"{site}.yaml"
    if result.yaml_text is None:
        assert site == "refused" and result.errors and not golden_yaml.exists()
        return
    _check(golden_yaml, result.yaml_text.replace(ROOT, "@ROOT@"))
    cfg = parse_config(result.yaml_text, "imported.yaml")
    assert cfg.state_dir == S.STATE_DIR


def test_golden_reports_name_every_line_of_the_inputs():
    """Every non-comment line that carries a key, variable, policy or LCAS plugin shows up
    in the report with its own file:line (nothing is silently dropped)."""
    for site in S.SITES:
        result = S.translate(site, ROOT)
        reported = {(f.file, f.line) for f in result.findings}
        conf, conf_text, db, db_text, lcas, lcas_text = S.inputs(site, ROOT)
        for name, text in ((conf, conf_text), (lcas, lcas_text)):
            if text is None:
                continue
            for n, line in enumerate(text.split("\n"), 1):
                s = line.strip()
                if s and s[0] not in "#;[" and "=" in s:
                    assert (name, n) in reported, f"{site}: {name}:{n} {s!r} not in the report"
        if result.yaml_text is not None:
            from glexec_tools.importer.sources import parse_lcmaps_db
            parsed = parse_lcmaps_db(db_text)
            for var in parsed.variables.values():
                assert (db, var.line) in reported, f"{site}: {db}:{var.line} {var.name} not reported"
