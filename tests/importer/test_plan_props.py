"""Property twin of fuzz/fuzz_importer.py: realistic site files with lines dropped,
repeated, swapped between files or garbled still give a loadable glexec.yaml or a report
that says why not, with true file:line references (tests/support/importer_oracle.py)."""
from hypothesis import HealthCheck, given, settings, strategies as st

from tests.importer import sites as S
from tests.support import importer_oracle as O

_TEXTS = {site: S.concrete(site, "/srv/site") for site in S.SITES}
_LINES = sorted({line for files in _TEXTS.values() for text in files.values()
                 for line in text.split("\n")})


def _site_files(site):
    files = _TEXTS[site]
    db = next(n for n in files if "lcmaps" in n)
    lcas = next((n for n in files if "lcas" in n), None)
    return [files["glexec.conf"], files[db], files[lcas] if lcas else None]


@st.composite
def mutated(draw):
    texts = _site_files(draw(st.sampled_from(S.SITES)))
    out = []
    for text in texts:
        if text is None:
            out.append(draw(st.none() | st.just("pluginname=lcas_userban.mod,pluginargs=b.db\n")))
            continue
        lines = text.split("\n")
        for _ in range(draw(st.integers(0, 6))):
            op = draw(st.sampled_from(["drop", "insert", "garble", "swap"]))
            i = draw(st.integers(0, max(0, len(lines) - 1)))
            if op == "drop" and lines:
                del lines[i]
            elif op == "insert":
                lines.insert(i, draw(st.sampled_from(_LINES)))
            elif op == "garble" and lines:
                j = draw(st.integers(0, len(lines[i])))
                lines[i] = lines[i][:j] + draw(st.sampled_from(['"', "|", "->", "~", "=", "[", "*", "\\"])) + lines[i][j:]
            elif op == "swap" and len(lines) > 1:
                k = draw(st.integers(0, len(lines) - 1))
                lines[i], lines[k] = lines[k], lines[i]
        out.append("\n".join(lines))
    return out


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_sites_keep_the_oracle(texts):
    conf, db, lcas = texts
    result = O.run(conf, db, lcas)
    assert O.problems(conf, db, lcas, result) == []


def test_the_unmutated_sites_keep_the_oracle_and_translate():
    for site in S.SITES:
        conf, db, lcas = _site_files(site)
        result = O.run(conf, db, lcas)
        assert O.problems(conf, db, lcas, result) == []
        assert (result.yaml_text is None) == (site == "refused")
