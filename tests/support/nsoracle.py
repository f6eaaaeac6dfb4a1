"""An independent model of CA namespace patterns, for property tests and the fuzz target.

A pattern is a list of tokens; ``render_ere``/``render_glob`` write it in the syntax of
``.namespaces`` / ``.signing_policy`` files, ``matches`` decides it by plain recursion
(no regular-expression engine), ASCII case-insensitively, over the whole subject.

Tokens: ("lit", c) | ("any",) | ("star",) = any run | ("class", chars, negated) |
("opt", c) = c or nothing | ("plus", c) = one or more c. Glob patterns use only lit, any
and star. Characters come from ``ALPHABET`` (no attribute aliases like /e= can form).
"""
from functools import lru_cache

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
