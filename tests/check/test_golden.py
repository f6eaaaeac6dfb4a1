"""The golden decision cases (tests/check/golden/*.yaml -> *.json): each documents one policy
rule by the explanation glexec-check gives.  Update with ``tests/check/golden.py --regen``,
which prints every diff it writes."""
import os

import pytest

from tests.check import golden

CASES = golden.cases()


def test_there_are_cases_and_each_says_which_rule_it_documents():
    assert len(CASES) >= 20
    for path in CASES:
        first = path.read_text().splitlines()[0]
        assert first.startswith("# Rule: "), path.name
        assert path.with_suffix(".json").exists(), f"{path.name}: no expected output (run golden.py --regen)"


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_golden(path):
    if os.geteuid() != 0:
        pytest.skip("the site's files must be root-owned (the engine's trust rules)")
    code, got = golden.run_case(path)
    d = golden.diff(path, got)
    assert not d, "\n" + d
    assert code == (0 if '"decision": "grant"' in got else 1)
