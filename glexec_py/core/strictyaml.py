"""The one strict YAML front end of every configuration file (glexec.yaml, prune.yaml,
sweep.yaml).  Pure: works on the text.

``load(text, filename, walk)`` composes the node tree of a single YAML document, refusing
anchors, aliases and explicit tags, and returns ``walk(root, loader, yaml)`` (root is None
for an empty document).  What the keys and values must be is each file's own schema,
walked over the nodes (which keep their line numbers for the error messages); ``walk`` may
use ``loader.construct_yaml_int`` / ``construct_yaml_bool`` / ``construct_object`` for
YAML's own scalar rules.  Every failure, in the YAML or in the walk, is one
``ConfigError(filename, line, what)``: text that is not UTF-8, a syntax error, an
unacceptable character, nesting too deep.
"""
from glexec_py.core.text import clipped as safe
from glexec_py.errors import ConfigError

TAG = "tag:yaml.org,2002:"

_LOADER = None


class _Refuse(Exception):
    def __init__(self, line, what):
        super().__init__(what)
        self.line = line
        self.what = what


def _loader_class(yaml):
    global _LOADER
    if _LOADER is None:
        class StrictLoader(yaml.SafeLoader):
            def compose_node(self, parent, index):
                ev = self.peek_event()
                line = ev.start_mark.line + 1
                if isinstance(ev, yaml.AliasEvent) or ev.anchor is not None:
                    raise _Refuse(line, "anchors and aliases are not allowed")
                if getattr(ev, "tag", None) is not None:
                    raise _Refuse(line, "explicit tags are not allowed")
                return super().compose_node(parent, index)
        _LOADER = StrictLoader
    return _LOADER


def load(text, filename, walk):
    import yaml

    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as e:
            line = bytes(text)[:e.start].count(b"\n") + 1
            raise ConfigError(filename, line, "the file is not valid UTF-8") from None
    try:
        loader = _loader_class(yaml)(text)
        try:
            root = loader.get_single_node()
        finally:
            loader.dispose()
        return walk(root, loader, yaml)
    except _Refuse as e:
        raise ConfigError(filename, e.line, e.what) from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else None
        what = ", ".join(x for x in (e.context, e.problem) if x) or "invalid YAML"
        raise ConfigError(filename, line, "YAML syntax error: " + safe(what, 200)) from None
    except yaml.reader.ReaderError as e:
        line = text[:e.position].count("\n") + 1 if isinstance(e.position, int) else None
        char = e.character
        code = char if isinstance(char, int) else (ord(char) if isinstance(char, str) and
                                                   len(char) == 1 else 0)
        raise ConfigError(filename, line, "unacceptable character #x%04x in the file" % code
                          ) from None
    except yaml.YAMLError as e:
        raise ConfigError(filename, None, "YAML error: " + safe(str(e), 200)) from None
    except RecursionError:
        raise ConfigError(filename, None, "the YAML is nested too deeply") from None
