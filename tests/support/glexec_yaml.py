"""The smallest valid glexec.yaml text, for tests of the site tools' sections (each tool
reads the engine's sections for its defaults and its own optional section)."""


def main_text(*, min_uid=1000, gridmapdir="", state_dir="/var/lib/x",
              audit_file="/var/log/x.jsonl"):
    return ("credentials:\n  ca_dir: /etc/grid-security/certificates\n"
            "mapping:\n  gridmapfile: /etc/grid-security/grid-mapfile\n"
            f"  min_uid: {min_uid}\n"
            + (f"  gridmapdir: {gridmapdir}\n" if gridmapdir else "")
            + f"audit:\n  file: {audit_file}\n  syslog: false\n"
            f"state_dir: {state_dir}\n")


def with_section(name, body, **main):
    """glexec.yaml with ``body`` (top-level-style YAML lines, as the old separate files
    had them) as the ``name:`` section; ``body`` None: no section at all."""
    text = main_text(**main)
    if body is None:
        return text
    lines = body.splitlines()
    if not any(line.strip() for line in lines):
        return text + f"{name}:\n"
    return text + f"{name}:\n" + "".join(f"  {line}\n" for line in lines)
