"""The oracle for glexec-import's planner (``importer.plan.translate``), shared by
fuzz/fuzz_importer.py and tests/importer/test_plan_props.py: whatever the three input
texts, the result is a YAML that glexec_py/core/config.py loads, or no YAML and at least
one error saying why; every finding points at a real line of the file it names; the exit
code follows from the findings; the translation is deterministic."""

CONF, DB, LCAS = "/etc/glexec.conf", "/etc/lcmaps.db", "/etc/lcas/lcas.db"


def run(conf, db, lcas):
    from glexec_tools.importer import plan
    return plan.translate(CONF, conf, DB, db, LCAS if lcas is not None else None, lcas,
                          state_dir="/var/lib/glexec-py", audit_file="/var/log/glexec-py/audit.jsonl")


def problems(conf, db, lcas, result):
    from glexec_py.core.config import parse_config
    from glexec_py.errors import ConfigError
    out = []
    if result.yaml_text is None:
        if not result.errors:
            out.append("no YAML and no error saying why")
    else:
        if result.errors:
            out.append("YAML produced despite errors")
        try:
            parse_config(result.yaml_text, "imported.yaml")
        except ConfigError as e:
            out.append(f"the YAML does not load: {e}")
    lines = {CONF: conf, DB: db, LCAS: lcas}
    for f in result.findings:
        if f.level not in ("info", "warning", "error"):
            out.append(f"bad level {f.level!r}")
        text = lines.get(f.file)
        if text is not None and not 0 <= f.line <= text.count("\n") + 1:
            out.append(f"{f.where()} is past the end of the file")
        if "\n" in f.why or "\n" in f.item:
            out.append(f"a report line spans lines: {f.item!r}")
    want = 0 if result.yaml_text is not None and not result.errors and not result.warnings else 1
    if result.exit_code != want:
        out.append(f"exit {result.exit_code}, want {want}")
    again = run(conf, db, lcas)
    if (again.yaml_text, again.findings) != (result.yaml_text, result.findings):
        out.append("not deterministic")
    return out
