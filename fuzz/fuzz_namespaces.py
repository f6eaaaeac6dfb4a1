"""atheris target: glexec_py.core.namespaces (IGTF .namespaces / Globus .signing_policy).

Oracles (beyond "no crash"):
  * the parsers raise nothing but PolicyError, with a line number inside the file; all or
    nothing (a Policy whose rules all carry a line of the file, or an error);
  * a parsed .namespaces file re-written one rule per line parses to the same rules
    (issuer, verb, pattern) — the continuation/comment handling loses nothing;
  * evaluate never raises, and its verdict is consistent: DENY wins over PERMIT, a PERMIT
    verdict names a permit rule that matches, "no_rule_permits" only when none matches;
  * differential: a pattern built from the input as tokens (tests/support/nsoracle.py)
    matches a subject in the ERE and the glob translation exactly when the independent
    recursive oracle says so.
"""
import sys

import atheris

import _common
from _common import check

with atheris.instrument_imports():
    from glexec_py.core import namespaces as ns

from tests.support import nsoracle  # noqa: E402  (not instrumented: the oracle)

def _tokens(fdp, glob):
    toks = []
    for _ in range(fdp.ConsumeIntInRange(0, 8)):
        k = fdp.ConsumeIntInRange(0, 2 if glob else 5)
        c = nsoracle.ALPHABET[fdp.ConsumeIntInRange(0, len(nsoracle.ALPHABET) - 1)]
        if k == 0:
            toks.append(("lit", c))
        elif k == 1:
            toks.append(("any",))
        elif k == 2:
            toks.append(("star",))
        elif k == 3:
            n = fdp.ConsumeIntInRange(1, 3)
            chars = "".join(nsoracle.CLASS_CHARS[fdp.ConsumeIntInRange(0, len(nsoracle.CLASS_CHARS) - 1)]
                            for _ in range(n))
            toks.append(("class", chars, fdp.ConsumeBool()))
        else:
            toks.append(("opt" if k == 4 else "plus", c))
    return toks


def TestOneInput(data):
    fdp = atheris.FuzzedDataProvider(data)
    raw = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 2048))
    try:
        nsoracle.check_file(raw)
    except AssertionError as e:
        raise _common.OracleViolation(str(e)) from None
    glob = fdp.ConsumeBool()
    toks = _tokens(fdp, glob)
    subject = "".join(nsoracle.ALPHABET[b % len(nsoracle.ALPHABET)] for b in fdp.ConsumeBytes(12))
    rx = ns.regex_from_glob(nsoracle.render_glob(toks)) if glob else ns.regex_from_ere(nsoracle.render_ere(toks))
    check(bool(rx.fullmatch(ns.normalise(subject))) == nsoracle.matches(toks, subject),
          f"matcher disagrees with the oracle: {toks!r} {subject!r}")


def seeds():
    return [
        b'#NAMESPACES-VERSION: 1.0\nTO Issuer "/DC=org/DC=A/CN=A CA" \\\n  PERMIT Subject "/DC=org/DC=A/.*"\n'
        b'TO Issuer SELF DENY Subject "/DC=org/DC=A/OU=Robots/.*" # c\n',
        b"access_id_CA X509 '/DC=org/DC=A/CN=A CA'\npos_rights globus CA:sign\n"
        b"cond_subjects globus '\"/DC=org/DC=A/*\" \"/C=NL/O=?/*\"'\n",
        b'to issuer self permit subject "/DC=org/DC=(A|B)/CN=[^0-9]+x?"\n',
    ]


if __name__ == "__main__":
    _common.seed(sys.argv, seeds)
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
