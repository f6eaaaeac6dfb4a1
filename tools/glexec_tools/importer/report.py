"""glexec-import's report: one ``Finding`` per key, module, option or policy, with
``file:line``, a level (info / warning / error) and why.  Pure."""
from dataclasses import dataclass

INFO, WARNING, ERROR = "info", "warning", "error"
_LEVELS = (INFO, WARNING, ERROR)


@dataclass(frozen=True)
class Finding:
    """One line of the report: where, what, how it was handled, why."""
    file: str
    line: int          # 0 = the file as a whole
    item: str          # the key, module, option or policy
    level: str         # info | warning | error
    status: str        # translated | not_needed | not_translated | stricter | differs | refused
    why: str

    def where(self):
        return f"{self.file}:{self.line}" if self.line else self.file

    def to_json(self):
        return {"file": self.file, "line": self.line, "item": self.item, "level": self.level,
                "status": self.status, "why": self.why}


class Report:
    """Collects findings in the order the translation makes them."""

    def __init__(self):
        self.findings = []

    def add(self, file, line, item, level, status, why):
        assert level in _LEVELS
        self.findings.append(Finding(file, line, item, level, status, why))


