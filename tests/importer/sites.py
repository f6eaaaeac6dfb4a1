"""The gLExec site configurations of the golden tests (tests/importer/sites/<site>/), made
concrete under a root directory: ``@ROOT@`` in every file becomes that directory."""
from pathlib import Path

SITES_DIR = Path(__file__).resolve().parent / "sites"
GOLDEN_DIR = Path(__file__).resolve().parent / "golden"
STATE_DIR = "/var/lib/glexec-py"
AUDIT_FILE = "/var/log/glexec-py/audit.jsonl"
SITES = ("osg", "emi", "multi", "refused")


def files_of(site):
    """{file name: template text}."""
    return {p.name: p.read_text() for p in sorted((SITES_DIR / site).iterdir())}


def concrete(site, root):
    """{file name: text} with @ROOT@ replaced by ``root``."""
    return {name: text.replace("@ROOT@", str(root)) for name, text in files_of(site).items()}


def inputs(site, root):
    """(glexec.conf name, text, lcmaps.db name, text, lcas.db name, text) under ``root``,
    as glexec-import reads them (lcas.db only when glexec.conf's use_lcas allows it)."""
    from glexec_tools.importer import plan
    texts = concrete(site, root)
    conf = texts["glexec.conf"]
    db = next(n for n in texts if "lcmaps" in n)
    lcas = next((n for n in texts if "lcas" in n), None)
    if lcas is not None and not plan.uses_lcas(conf):
        lcas = None
    return (f"{root}/glexec.conf", conf, f"{root}/{db}", texts[db],
            f"{root}/{lcas}" if lcas else None, texts[lcas] if lcas else None)


def translate(site, root, files=None):
    from glexec_tools.importer import plan
    return plan.translate(*inputs(site, root), files, state_dir=STATE_DIR, audit_file=AUDIT_FILE)


def report_lines(result, root):
    """The report as stable text: one line per finding, @ROOT@ for the root."""
    return [f"{f.where()}: {f.item}: {f.level} {f.status}: {f.why}".replace(str(root), "@ROOT@")
            for f in result.findings]
