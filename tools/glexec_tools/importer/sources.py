"""The parsers of glexec-import's inputs.  Pure: texts in, values out.

* ``parse_glexec_conf``: gLExec's INI file (only ``[glexec]`` is read, as gLExec does);
  quirks are reported, never fatal;
* ``parse_lcmaps_db``: the LCMAPS policy language (shared/reference/lcmaps-semantics.md
  section 3): ``path = dir``, variables ``name = "plugin.mod args" "more args"`` or
  ``name = other``, policies ``name:`` with rules ``a -> b``, ``a -> b | c``, ``~a -> c``;
  ``DbSyntaxError(line, what)`` wherever LCMAPS would refuse the file;
* ``resolve_state`` / ``module_name`` / ``plugin_options``: what plugin a state runs, with
  which options.
"""
import re
from dataclasses import dataclass, field

from glexec_tools.importer.report import INFO, WARNING


def _clip(s, n=80):
    s = "".join(c if c.isprintable() else "?" for c in str(s))
    return s if len(s) <= n else s[:n - 3] + "..."


# --- glexec.conf ------------------------------------------------------------------------

@dataclass(frozen=True)
class ConfValue:
    value: str
    line: int


_INI_SECTION = re.compile(r"^\[\s*([^\]]*?)\s*\]$")
_INI_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


def parse_glexec_conf(text, filename, report):
    """``{key: ConfValue}`` of the ``[glexec]`` section (other sections are ignored, as
    gLExec does).  ``#``/``;`` comment lines, ``key = value`` with any whitespace, a trailing
    `` # comment`` and one pair of surrounding quotes are removed (each reported)."""
    out = {}
    section = None
    saw_glexec = False
    for lineno, raw in enumerate(text.split("\n"), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        m = _INI_SECTION.match(line)
        if m:
            section = m.group(1)
            if section == "glexec":
                saw_glexec = True
            else:
                report.add(filename, lineno, f"[{section}]", INFO, "not_needed",
                           "gLExec reads only the [glexec] section; this section is ignored")
            continue
        if section != "glexec":
            report.add(filename, lineno, _clip(line), WARNING, "not_translated",
                       "outside the [glexec] section: gLExec ignores it, so does the importer")
            continue
        key, eq, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not eq or not _INI_KEY.match(key):
            report.add(filename, lineno, _clip(line), WARNING, "not_translated",
                       "not a 'key = value' line; ignored")
            continue
        m = re.search(r"\s[#;]", value)
        if m:
            report.add(filename, lineno, key, INFO, "translated",
                       f"trailing comment {_clip(value[m.start():].strip())!r} removed from the value")
            value = value[:m.start()].rstrip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        if key != key.lower():
            report.add(filename, lineno, key, INFO, "translated", "key read in lower case")
            key = key.lower()
        if key in out:
            report.add(filename, lineno, key, WARNING, "differs",
                       f"set again (first at line {out[key].line}); the last value is used")
        out[key] = ConfValue(value, lineno)
    if not saw_glexec and text.strip():
        report.add(filename, 0, "[glexec]", WARNING, "not_translated",
                   "no [glexec] section: gLExec would run with its compiled-in defaults")
    return out


# --- lcmaps.db ---------------------------------------------------------------------------

class DbSyntaxError(Exception):
    def __init__(self, line, what):
        super().__init__(what)
        self.line, self.what = line, what


@dataclass(frozen=True)
class Variable:
    name: str
    value: str          # strings joined with one space, or a term
    is_term: bool
    line: int


@dataclass(frozen=True)
class Rule:
    state: str
    on_success: object   # state name, or None (the policy ends: success)
    on_failure: object   # state name, or None (the policy ends: failure)
    line: int


@dataclass
class Policy:
    name: str
    line: int
    rules: list = field(default_factory=list)


@dataclass
class LcmapsDb:
    path: object = None                   # (value, line) of the first 'path =' or None
    variables: dict = field(default_factory=dict)
    policies: list = field(default_factory=list)


_TERM = re.compile(r"[A-Za-z0-9_./]+")
_MAX_DB_TOKENS = 200000


def _tokens(text):
    """(kind, value, line): term, label, string, '->', '~', '=', '|', path."""
    i, n, line, count = 0, len(text), 1, 0
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
            i += 1
            continue
        if c in " \t\r\f\v":
            i += 1
            continue
        if c == "#":
            while i < n and text[i] != "\n":
                i += 1
            continue
        count += 1
        if count > _MAX_DB_TOKENS:
            raise DbSyntaxError(line, "too many tokens")
        if c == '"':
            j, buf = i + 1, []
            while True:
                if j >= n or text[j] == "\n":
                    raise DbSyntaxError(line, "unterminated string (a string cannot span lines)")
                if text[j] == "\\" and j + 1 < n and text[j + 1] == '"':
                    buf.append('"')
                    j += 2
                    continue
                if text[j] == '"':
                    break
                buf.append(text[j])
                j += 1
            yield ("string", "".join(buf), line)
            i = j + 1
            continue
        if text.startswith("->", i):
            yield ("->", "->", line)
            i += 2
            continue
        if c in "~=|":
            yield (c, c, line)
            i += 1
            continue
        m = _TERM.match(text, i)
        if not m:
            raise DbSyntaxError(line, f"unexpected character {c!r}")
        word = m.group(0)
        i = m.end()
        j = i
        while j < n and text[j] in " \t":
            j += 1
        if j < n and text[j] == ":":
            yield ("label", word, line)
            i = j + 1
        elif word == "path":
            yield ("path", word, line)
        else:
            yield ("term", word, line)


def parse_lcmaps_db(text):
    """The variables and policies of an lcmaps.db; ``DbSyntaxError(line, what)`` where the
    LCMAPS parser would refuse the file (section 3 of lcmaps-semantics.md)."""
    db = LcmapsDb()
    toks = list(_tokens(text))
    k, n = 0, len(toks)
    current = None

    def peek(off=0):
        return toks[k + off] if k + off < n else (None, None, toks[-1][2] if toks else 1)

    while k < n:
        kind, value, line = toks[k]
        if kind == "path":
            if peek(1)[0] != "=" or peek(2)[0] not in ("term", "string"):
                raise DbSyntaxError(line, "'path' must be followed by '= <directory>'")
            if db.path is None:
                db.path = (peek(2)[1], line)
            k += 3
            continue
        if kind == "label":
            if any(p.name == value for p in db.policies):
                raise DbSyntaxError(line, f"policy {value!r} is defined twice")
            if value in db.variables:
                raise DbSyntaxError(line, f"{value!r} is both a variable and a policy")
            current = Policy(value, line)
            db.policies.append(current)
            k += 1
            continue
        if kind == "term" and peek(1)[0] == "=":
            if current is not None and current.rules:
                pass  # LCMAPS allows definitions anywhere; they are global
            k += 2
            parts = []
            if peek()[0] == "term":
                var = Variable(value, peek()[1], True, line)
                k += 1
            else:
                while peek()[0] == "string":
                    parts.append(peek()[1])
                    k += 1
                if not parts:
                    raise DbSyntaxError(line, f"variable {value!r} has no value")
                var = Variable(value, " ".join(parts), False, line)
            if value in db.variables:
                raise DbSyntaxError(line, f"variable {value!r} is defined twice "
                                          f"(first at line {db.variables[value].line})")
            db.variables[value] = var
            continue
        negated = kind == "~"
        if negated:
            k += 1
            kind, value, line = peek()
        if kind == "term" and peek(1)[0] == "->" and peek(2)[0] == "term":
            if current is None:
                raise DbSyntaxError(line, "a rule outside any policy (no 'name:' before it)")
            target = peek(2)[1]
            k += 3
            other = None
            if peek()[0] == "|":
                if peek(1)[0] != "term":
                    raise DbSyntaxError(line, "'|' must be followed by a state")
                other = peek(1)[1]
                k += 2
            if negated:
                if other is not None:
                    raise DbSyntaxError(line, "'~a -> b | c' is not valid")
                rule = Rule(value, None, target, line)
            else:
                rule = Rule(value, target, other, line)
            if any(r.state == value for r in current.rules):
                raise DbSyntaxError(line, f"state {value!r} is on the left of two rules in "
                                          f"policy {current.name!r}")
            if any(p.name == value for p in db.policies):
                raise DbSyntaxError(line, f"a rule may not start at a policy name ({value!r})")
            current.rules.append(rule)
            continue
        if kind == "term":
            raise DbSyntaxError(line, f"{value!r} alone: a state needs a rule "
                                      "(e.g. 'plugin -> good')")
        raise DbSyntaxError(line, f"unexpected {value!r}")
    names = {p.name for p in db.policies}
    for p in db.policies:
        if not p.rules:
            raise DbSyntaxError(p.line, f"policy {p.name!r} has no rules")
        for r in p.rules:
            if r.on_success in names or r.on_failure in names:
                raise DbSyntaxError(r.line, "a rule may not lead to a policy")
        _check_acyclic(p)
    return db


def _check_acyclic(policy):
    """LCMAPS refuses a policy whose rules loop (iterative depth-first search)."""
    edges = {r.state: [s for s in (r.on_success, r.on_failure) if s] for r in policy.rules}
    done, on_path = set(), set()
    for start in edges:
        if start in done:
            continue
        stack = [(start, iter(edges.get(start, ())))]
        on_path.add(start)
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                stack.pop()
                on_path.discard(node)
                done.add(node)
            elif nxt in on_path:
                raise DbSyntaxError(policy.line, f"policy {policy.name!r} has a loop through {nxt!r}")
            elif nxt not in done:
                on_path.add(nxt)
                stack.append((nxt, iter(edges.get(nxt, ()))))


def module_name(word):
    """``lcmaps_voms_poolaccount.mod`` (or a path, or ``liblcmaps_x.so``) -> ``voms_poolaccount``."""
    base = word.rsplit("/", 1)[-1]
    for suffix in (".mod", ".so"):
        if base.endswith(suffix):
            base = base[:-len(suffix)]
    for prefix in ("liblcmaps_", "lcmaps_"):
        if base.startswith(prefix):
            base = base[len(prefix):]
            break
    return {"bandn": "ban_dn", "banfqan": "ban_fqan", "posix": "posix_enf",
            "verifyproxy": "verify_proxy", "glexectracking": "glexec_tracking"}.get(base, base)


@dataclass
class Instance:
    """A state resolved to its plugin: ``module`` (short name), ``args``, where defined."""
    state: str
    module: str
    word: str
    args: tuple
    line: int


def resolve_state(db, state):
    """The plugin behind a state: variables followed (chains allowed), a bare state names a
    module itself.  ``DbSyntaxError`` on a cycle."""
    seen, name = set(), state
    while name in db.variables:
        if name in seen:
            raise DbSyntaxError(db.variables[name].line, f"variable cycle through {name!r}")
        seen.add(name)
        var = db.variables[name]
        if var.is_term:
            name = var.value
            continue
        words = var.value.split()
        if not words:
            raise DbSyntaxError(var.line, f"variable {name!r} names no plugin")
        return Instance(state, module_name(words[0]), words[0], tuple(words[1:]), var.line)
    return Instance(state, module_name(name), name, (), 0)


_TWO_WORD_OPTIONS = ("--max-proxy-level-ttl",)    # --max-proxy-level-ttl=L 1d-00:00


def plugin_options(args):
    """[(option lower-cased, value or None)]: ``-opt value``, ``--opt=value``; a word not
    starting with '-' is the value of the option before it."""
    out = []
    for w in args:
        if w.startswith("-"):
            name, eq, value = w.partition("=")
            out.append([name.lower(), value if eq else None])
        elif out and (out[-1][1] is None or out[-1][0] in _TWO_WORD_OPTIONS and " " not in out[-1][1]):
            out[-1][1] = w if out[-1][1] is None else out[-1][1] + " " + w
        else:
            out.append([None, w])
    return [tuple(o) for o in out]
