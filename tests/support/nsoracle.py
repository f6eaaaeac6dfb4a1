"""An independent model of CA namespace patterns, for property tests and the fuzz target.

A pattern is a list of tokens; ``render_ere``/``render_glob`` write it in the syntax of
``.namespaces`` / ``.signing_policy`` files, ``matches`` decides it by plain recursion
(no regular-expression engine), ASCII case-insensitively, over the whole subject.

``check_file`` holds the oracles on a policy file's bytes (shared by fuzz/fuzz_namespaces.py
and the bounded hypothesis run in tests/core/test_namespaces.py).

Tokens: ("lit", c) | ("any",) | ("star",) = any run | ("class", chars, negated) |
("opt", c) = c or nothing | ("plus", c) = one or more c. Glob patterns use only lit, any
and star. Characters come from ``ALPHABET`` (no attribute aliases like /e= can form).
"""
from functools import lru_cache

from glexec_py.core import namespaces as ns

ALPHABET = "aBc/=.-1 xYz"
CLASS_CHARS = "aBcxYz1"
_ERE_SPECIAL = set("\\.[]()*+?{}|^$")


def render_ere(tokens):
    out = []
    for t in tokens:
        if t[0] == "lit":
            out.append("\\" + t[1] if t[1] in _ERE_SPECIAL else t[1])
        elif t[0] == "any":
            out.append(".")
        elif t[0] == "star":
            out.append(".*")
        elif t[0] == "class":
            out.append("[" + ("^" if t[2] else "") + t[1] + "]")
        elif t[0] == "opt":
            out.append(("\\" + t[1] if t[1] in _ERE_SPECIAL else t[1]) + "?")
        else:
            out.append(("\\" + t[1] if t[1] in _ERE_SPECIAL else t[1]) + "+")
    return "".join(out)


def render_glob(tokens):
    return "".join({"lit": lambda t: t[1], "any": lambda t: "?", "star": lambda t: "*"}[t[0]](t)
                   for t in tokens)


def matches(tokens, subject):
    toks, s = tuple(tokens), subject.lower()

    def same(a, b):
        return a.lower() == b

    @lru_cache(maxsize=None)
    def go(i, j):
        if i == len(toks):
            return j == len(s)
        t = toks[i]
        if t[0] == "star":
            return any(go(i + 1, k) for k in range(j, len(s) + 1))
        if t[0] == "opt":
            return go(i + 1, j) or (j < len(s) and same(t[1], s[j]) and go(i + 1, j + 1))
        if t[0] == "plus":
            k = j
            while k < len(s) and same(t[1], s[k]):
                k += 1
                if go(i + 1, k):
                    return True
            return False
        if j == len(s):
            return False
        if t[0] == "lit":
            ok = same(t[1], s[j])
        elif t[0] == "any":
            ok = True
        else:
            ok = (s[j] in t[1].lower()) != t[2]
        return ok and go(i + 1, j + 1)

    return go(0, 0)


CA = "/DC=org/DC=A/CN=A CA"
SUBJECTS = ("/DC=org/DC=A/CN=Alice", "/DC=org/DC=AB/CN=x", "/dc=ORG/dc=a/OU=Robots/CN=r", "")


def _verdict_consistent(policy, subject):
    v = ns.evaluate((policy, None), CA, subject)
    rules = ns.applicable(policy, CA)
    if not rules:
        assert v is None, "a verdict without applicable rules"
        return
    text = ns.normalise(subject)
    denies = [r for r in rules if not r.permit and r.regex.fullmatch(text)]
    permits = [r for r in rules if r.permit and r.regex.fullmatch(text)]
    want = "deny" if denies else "permit" if permits else "no_rule_permits"
    assert v.reason == want and v.permitted == (want == "permit"), f"verdict {v.reason} for {subject!r}, want {want}"
    assert (v.rule is None) == (want == "no_rule_permits"), "rule presence does not fit the verdict"
    assert v.rule is None or v.rule.regex.fullmatch(text), "the deciding rule does not match"


def check_file(raw):
    """The parsers on ``raw``: only PolicyError, with a line inside the file; all or
    nothing; verdicts consistent (DENY wins, PERMIT names a matching permit rule); a parsed
    .namespaces re-written one rule per line parses to the same rules."""
    nlines = raw.count(b"\n") + 1
    for parse in (ns.parse_namespaces, ns.parse_signing_policy):
        try:
            policy = parse(raw)
        except ns.PolicyError as e:
            assert 0 <= e.line <= nlines, f"error line {e.line} outside the file"
            continue
        assert all(1 <= r.line <= nlines for r in policy.rules), "rule line outside the file"
        for s in SUBJECTS + tuple(r.pattern for r in policy.rules[:2]):
            _verdict_consistent(policy, s)
        if parse is ns.parse_namespaces:
            lines = []
            for r in policy.rules:
                who = "SELF" if r.issuer is ns.SELF else f'"{r.issuer}"'
                lines.append(f'TO Issuer {who} {"PERMIT" if r.permit else "DENY"} Subject "{r.pattern}"')
            again = ns.parse_namespaces("\n".join(lines).encode())
            assert [(r.issuer, r.permit, r.pattern) for r in again.rules] == \
                [(r.issuer, r.permit, r.pattern) for r in policy.rules], "rewritten file parses differently"
