"""glexec-import: a gLExec site's glexec.conf + lcmaps.db + lcas.db -> one glexec.yaml.

``plan`` is the pure translation (texts in, YAML text and a report out); ``cli`` reads the
files, writes the result atomically and prints the report."""
