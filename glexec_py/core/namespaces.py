"""A CA speaks only for its own namespace: IGTF ``<hash>.namespaces`` and Globus
``<hash>.signing_policy`` files, parsed and evaluated.  Pure (text in, values out).

Files (named by the issuing CA's OpenSSL subject hash, next to its ``<hash>.0``):

``.namespaces`` (EUGridPMA "Namespaces Format Specification", EACL syntax)::

    #NAMESPACES-VERSION: 1.0          (optional; any other version is refused)
    TO Issuer "/C=NL/O=Example/CN=Example CA" \\
      PERMIT Subject "/C=NL/O=Example/.*"
    TO Issuer SELF DENY Subject "/C=NL/O=Example/CN=bad.*"

  ``#`` outside a quoted string starts a comment; a line ending in ``\\`` continues on
  the next one; keywords are case-insensitive; one ``TO Issuer`` may carry several
  ``PERMIT|DENY Subject`` clauses.  ``SELF`` is the CA the file is named for.  The issuer
  is a literal one-line DN; the subject is a POSIX extended regular expression matched
  against the whole subject (implicitly anchored).  Supported: literals, ``\\c`` (the
  literal c), ``.``, ``* + ?``, ``( | )``, bracket expressions ``[...]``/``[^...]`` with
  ranges, ``^`` first and ``$`` last.  Refused (the file is unparsable): ``{m,n}``,
  ``[:class:]``, a quantifier with nothing to repeat or after another quantifier,
  non-ASCII bytes.

``.signing_policy`` (Globus CA signing policy)::

    access_id_CA   X509    '/C=NL/O=Example/CN=Example CA'
    pos_rights     globus  CA:sign
    cond_subjects  globus  '"/C=NL/O=Example/*" "/C=NL/O=Other/*"'

  Blocks of exactly these three lines (blank lines and ``#`` comments between them);
  each double-quoted entry is a glob (``*`` any run of characters, ``?`` one) that
  permits; anything else in the file (``neg_rights``, other access ids, unquoted
  values) makes it unparsable.

Matching (as canl/VOMS do): the subject and issuer are compared as OpenSSL one-line
text, ASCII case-insensitively, with the attribute spellings ``Email``/``E`` =
``emailAddress`` and ``USERID`` = ``UID``.  Only rules whose issuer is the issuing CA
(or ``SELF``) apply.  Any matching DENY refuses; otherwise a matching PERMIT allows;
otherwise "no rule permits".  Precedence: the ``.namespaces`` file decides when it has
rules for the issuer; the ``.signing_policy`` only when it has not.  Neither = no
policy for that CA (the engine's ``namespace_policy`` says what that means).

Ambiguity: one-line text is not injective (a value holding ``/``, ``+`` or ``\\`` can
print like another DN's separators or escapes), so a subject with such a value is never
matched as text: ``subject_text`` raises ``Ambiguous`` and the caller refuses it.
"""

MAX_POLICY_FILE = 65536
NAMESPACES, SIGNING_POLICY = "namespaces", "signing_policy"
SELF = None                                 # a rule's issuer for "TO Issuer SELF"
_AMBIGUOUS = frozenset("/+\\")
_ALIASES = (("/email=", "/emailaddress="), ("/e=", "/emailaddress="), ("/userid=", "/uid="))


class PolicyError(ValueError):
    """A policy file that cannot be parsed; ``line`` is 1-based (0 = the whole file)."""

    def __init__(self, line, message):
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.message = message


class Ambiguous(ValueError):
    """A subject whose one-line text could also be read as another DN."""


class Rule:
    """One PERMIT/DENY (a signing_policy pattern is a PERMIT) from ``line`` of a file."""
    __slots__ = ("permit", "issuer", "pattern", "line", "regex")

    def __init__(self, permit, issuer, pattern, line, regex):
        self.permit, self.issuer, self.pattern, self.line, self.regex = permit, issuer, pattern, line, regex

    def describe(self):
        return f"{'PERMIT' if self.permit else 'DENY'} Subject \"{self.pattern}\""


class Policy:
    """The parsed rules of one file (``kind`` NAMESPACES or SIGNING_POLICY)."""
    __slots__ = ("kind", "path", "rules")

    def __init__(self, kind, path, rules):
        self.kind, self.path, self.rules = kind, path, tuple(rules)


class Verdict:
    """permitted; reason "permit", "deny" or "no_rule_permits"; the deciding rule (None
    for no_rule_permits) and the policy it came from."""
    __slots__ = ("permitted", "reason", "rule", "policy")

    def __init__(self, permitted, reason, rule, policy):
        self.permitted, self.reason, self.rule, self.policy = permitted, reason, rule, policy

    def to_audit(self):
        out = {"file": self.policy.path, "kind": self.policy.kind, "decision": self.reason}
        if self.rule is not None:
            out.update(line=self.rule.line, rule=self.rule.describe())
        return out


def normalise(text):
    """The comparison form of a one-line DN (or pattern): ASCII lower case, one spelling
    per attribute alias."""
    out = text.lower()
    for old, new in _ALIASES:
        out = out.replace(old, new)
    return out


def subject_text(oneline, structure):
    """The OpenSSL one-line text ``oneline`` of a subject, checked unambiguous, or
    Ambiguous. OpenSSL 3 writes '/' and '+' inside a value as '\\/' and '\\+', bytes outside
    0x20..0x7E as '\\xHH', and a backslash as itself: text without a backslash is exactly
    its structure. Otherwise ``structure()`` (the parsed DN, core.dn model; only then
    computed) decides: no value may hold '/', '+' or '\\'."""
    if "\\" in oneline:
        for rdn in structure():
            for _, value in rdn:
                if _AMBIGUOUS.intersection(value):
                    raise Ambiguous("a value of the name contains '/', '+' or '\\'")
    return oneline


# -- patterns ---------------------------------------------------------------------------
# Own matcher instead of the re module: `re` costs ~7 ms of imports on every call, and a
# Thompson NFA matches in time linear in the subject whatever the pattern (no backtracking).

class Pattern:
    """A compiled pattern: ``fullmatch(text)`` on normalised (lower-case) text."""
    __slots__ = ("_states", "_start")

    def __init__(self, node):
        self._states = [("match",)]
        self._start = self._build(node, 0)

    def _add(self, state):
        self._states.append(state)
        return len(self._states) - 1

    def _build(self, node, nxt):
        kind = node[0]
        if kind in ("lit", "any", "class"):
            return self._add(("chr", node, nxt))
        if kind == "cat":
            for child in reversed(node[1]):
                nxt = self._build(child, nxt)
            return nxt
        if kind == "alt":
            return self._add(("split", [self._build(c, nxt) for c in node[1]]))
        if kind == "opt":
            return self._add(("split", [self._build(node[1], nxt), nxt]))
        loop = self._add(None)                  # star / plus: a split back into the child
        body = self._build(node[1], loop)
        self._states[loop] = ("split", [body, nxt])
        return loop if kind == "star" else body

    def _closure(self, starts):
        seen, todo = set(), list(starts)
        while todo:
            s = todo.pop()
            if s in seen:
                continue
            seen.add(s)
            if self._states[s][0] == "split":
                todo.extend(self._states[s][1])
        return seen

    def fullmatch(self, text):
        states, cur = self._states, self._closure([self._start])
        for ch in text:
            nxt = []
            for s in cur:
                st = states[s]
                if st[0] == "chr" and _accepts(st[1], ch):
                    nxt.append(st[2])
            if not nxt:
                return False
            cur = self._closure(nxt)
        return 0 in cur


def _accepts(node, ch):
    if node[0] == "lit":
        return ch == node[1]
    if node[0] == "any":
        return True
    inside = any(lo <= ch <= hi for lo, hi in node[1])
    return inside != node[2]


def _bracket(p, i, line):
    """(class node, index after ']') for the bracket expression opening at p[i]."""
    j = i + 1
    neg = j < len(p) and p[j] == "^"
    if neg:
        j += 1
    start = j
    if j < len(p) and p[j] == "]":
        j += 1                                  # a leading ']' is a literal
    while j < len(p) and p[j] != "]":
        if p[j] == "[" and j + 1 < len(p) and p[j + 1] in ":.=":
            raise PolicyError(line, "character classes like [:alpha:] are not supported")
        j += 1
    if j >= len(p):
        raise PolicyError(line, "unterminated bracket expression")
    body, ranges, k = p[start:j], [], 0
    while k < len(body):
        if k + 2 < len(body) and body[k + 1] == "-":
            if body[k] > body[k + 2]:
                raise PolicyError(line, f"bad range {body[k:k + 3]}")
            ranges.append((body[k], body[k + 2]))
            k += 3
        else:
            ranges.append((body[k], body[k]))
            k += 1
    return ("class", tuple(ranges), neg), j + 1


def _parse_ere(p, i, line, depth):
    """(node, index) for the alternation starting at p[i], up to ')' or the end."""
    if depth > 32:
        raise PolicyError(line, "groups nested too deeply")
    branches, items = [], []
    while i < len(p) and p[i] != ")":
        c = p[i]
        if c == "|":
            branches.append(("cat", items))
            items, i = [], i + 1
            continue
        if c in "*+?":
            if not items or items[-1][0] in ("star", "plus", "opt"):
                raise PolicyError(line, f"'{c}' has nothing to repeat")
            items[-1] = ({"*": "star", "+": "plus", "?": "opt"}[c], items[-1])
            i += 1
            continue
        if c == "\\":
            if i + 1 >= len(p):
                raise PolicyError(line, "pattern ends in a lone backslash")
            node, i = ("lit", p[i + 1]), i + 2
        elif c == "[":
            node, i = _bracket(p, i, line)
        elif c == "(":
            node, i = _parse_ere(p, i + 1, line, depth + 1)
            if i >= len(p):
                raise PolicyError(line, "missing ')'")
            i += 1
        elif c == "{":
            raise PolicyError(line, "interval expressions {m,n} are not supported")
        elif c == "^" and i == 0 or c == "$" and i == len(p) - 1:
            i += 1
            continue                            # anchored anyway
        elif c in "^$":
            raise PolicyError(line, f"'{c}' inside a pattern is not supported")
        else:
            node, i = (("any",) if c == "." else ("lit", c)), i + 1
        items.append(node)
    branches.append(("cat", items))
    return (branches[0] if len(branches) == 1 else ("alt", branches)), i


def regex_from_ere(pattern, line=0):
    """Anchored, ASCII case-insensitive matcher of a POSIX ERE (the supported subset in
    the module doc); PolicyError for anything else."""
    p = normalise(pattern)
    node, i = _parse_ere(p, 0, line, 0)
    if i < len(p):
        raise PolicyError(line, "unbalanced ')'")
    return Pattern(node)


def regex_from_glob(pattern, line=0):
    """Anchored, ASCII case-insensitive matcher of a signing_policy glob (* and ?)."""
    return Pattern(("cat", [("star", ("any",)) if c == "*" else ("any",) if c == "?" else ("lit", c)
                            for c in normalise(pattern)]))


# -- files ------------------------------------------------------------------------------

def _ascii_lines(raw):
    if len(raw) > MAX_POLICY_FILE:
        raise PolicyError(0, f"larger than {MAX_POLICY_FILE} bytes")
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as e:
        raise PolicyError(raw[:e.start].count(b"\n") + 1, "not ASCII") from None
    if "\0" in text:
        raise PolicyError(text[:text.index("\0")].count("\n") + 1, "NUL byte")
    return text.replace("\r\n", "\n").split("\n")


def _strip_comment(line, quotes):
    """The line up to a '#' that is outside a quoted string (backslash escapes a char)."""
    q, i = None, 0
    while i < len(line):
        c = line[i]
        if c == "\\":
            i += 2
            continue
        if q:
            if c == q:
                q = None
        elif c in quotes:
            q = c
        elif c == "#":
            return line[:i]
        i += 1
    return line


def _tokens(text, line, quote):
    """Words and quoted strings (("q", content) / ("w", word)) of one logical line."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if c in " \t":
            i += 1
            continue
        if c == quote:
            j = i + 1
            while j < n and text[j] != quote:
                j += 2 if text[j] == "\\" else 1
            if j >= n:
                raise PolicyError(line, "unterminated quoted string")
            out.append(("q", text[i + 1:j]))
            i = j + 1
            if i < n and text[i] not in " \t":
                raise PolicyError(line, "no space after a quoted string")
            continue
        j = i
        while j < n and text[j] not in " \t":
            j += 1
        if quote in text[i:j]:
            raise PolicyError(line, "no space before a quoted string")
        out.append(("w", text[i:j]))
        i = j
    return out


def parse_namespaces(raw, path=""):
    """Policy(NAMESPACES) from the bytes of a ``.namespaces`` file, or PolicyError."""
    rules, logical, first = [], "", 0
    lines = _ascii_lines(raw)
    for number, line in enumerate(lines, 1):
        if line.startswith("#NAMESPACES-VERSION:"):
            if line.split(":", 1)[1].strip() != "1.0":
                raise PolicyError(number, "unsupported #NAMESPACES-VERSION")
            continue
        line = _strip_comment(line, '"').rstrip(" \t")
        if not logical:
            first = number
        if line.endswith("\\") and not line.endswith("\\\\"):
            logical += line[:-1] + " "
            continue
        logical += line
        if logical.strip():
            rules.extend(_namespace_entry(_tokens(logical, first, '"'), first))
        logical = ""
    if logical.strip():
        raise PolicyError(first, "continuation line at the end of the file")
    return Policy(NAMESPACES, path, rules)


def _namespace_entry(toks, line):
    def word(k, expect):
        if k >= len(toks) or toks[k][0] != "w" or toks[k][1].lower() != expect:
            raise PolicyError(line, f"expected {expect.upper()}")

    word(0, "to")
    word(1, "issuer")
    if len(toks) < 3:
        raise PolicyError(line, "expected a quoted issuer or SELF")
    if toks[2][0] == "q":
        issuer = toks[2][1]
        if not issuer.startswith("/") or "\\" in issuer:
            raise PolicyError(line, "issuer must be a one-line DN (/A=B/...)")
    elif toks[2][1].lower() == "self":
        issuer = SELF
    else:
        raise PolicyError(line, "expected a quoted issuer or SELF")
    rules, k = [], 3
    if k >= len(toks):
        raise PolicyError(line, "expected PERMIT or DENY")
    while k < len(toks):
        kind = toks[k][1].lower() if toks[k][0] == "w" else ""
        if kind not in ("permit", "deny"):
            raise PolicyError(line, "expected PERMIT or DENY")
        word(k + 1, "subject")
        if k + 2 >= len(toks) or toks[k + 2][0] != "q":
            raise PolicyError(line, "expected a quoted subject pattern")
        pattern = toks[k + 2][1]
        rules.append(Rule(kind == "permit", issuer, pattern, line, regex_from_ere(pattern, line)))
        k += 3
    return rules


def parse_signing_policy(raw, path=""):
    """Policy(SIGNING_POLICY) from the bytes of a ``.signing_policy`` file, or PolicyError."""
    rules, state, issuer = [], "access", None
    for number, line in enumerate(_ascii_lines(raw), 1):
        line = _strip_comment(line, "'").strip(" \t")
        if not line:
            continue
        toks = _tokens(line, number, "'")
        words = [t[1] for t in toks if t[0] == "w"]
        if state == "access":
            if len(toks) != 3 or words != ["access_id_CA", "X509"] or toks[2][0] != "q":
                raise PolicyError(number, "expected access_id_CA X509 '<CA DN>'")
            issuer = toks[2][1]
            if not issuer.startswith("/") or "\\" in issuer:
                raise PolicyError(number, "CA must be a one-line DN (/A=B/...)")
            state = "rights"
        elif state == "rights":
            if words != ["pos_rights", "globus", "CA:sign"] or len(toks) != 3:
                raise PolicyError(number, "expected pos_rights globus CA:sign")
            state = "subjects"
        else:
            if len(toks) != 3 or words != ["cond_subjects", "globus"] or toks[2][0] != "q":
                raise PolicyError(number, "expected cond_subjects globus '\"<pattern>\" ...'")
            patterns = _tokens(toks[2][1], number, '"')
            if not patterns or any(t[0] != "q" for t in patterns):
                raise PolicyError(number, "cond_subjects must be double-quoted patterns")
            for _, pattern in patterns:
                if "\\" in pattern:
                    raise PolicyError(number, "backslash in a signing_policy pattern")
                rules.append(Rule(True, issuer, pattern, number, regex_from_glob(pattern, number)))
            state = "access"
    if state != "access":
        raise PolicyError(0, "incomplete access_id_CA block at the end of the file")
    return Policy(SIGNING_POLICY, path, rules)


# -- decisions --------------------------------------------------------------------------

def applicable(policy, ca_text):
    """The rules of ``policy`` that speak about the CA whose one-line subject is
    ``ca_text`` (SELF: the CA the file is named for, i.e. this one)."""
    if policy is None:
        return ()
    ca = normalise(ca_text)
    return tuple(r for r in policy.rules if r.issuer is SELF or normalise(r.issuer) == ca)


def evaluate(policies, ca_text, subject):
    """Verdict for ``subject`` (one-line text from ``subject_text``) issued by the CA
    ``ca_text``; ``policies`` = (namespaces Policy or None, signing_policy Policy or None).
    None when neither file has a rule for this CA."""
    for policy in policies:
        rules = applicable(policy, ca_text)
        if not rules:
            continue
        text = normalise(subject)
        for rule in rules:
            if not rule.permit and rule.regex.fullmatch(text):
                return Verdict(False, "deny", rule, policy)
        for rule in rules:
            if rule.permit and rule.regex.fullmatch(text):
                return Verdict(True, "permit", rule, policy)
        return Verdict(False, "no_rule_permits", None, policy)
    return None
