"""tests/importer: glexec-import (tools/glexec_tools/importer) -- its parsers, report, CLI,
golden translations of realistic gLExec sites, and the side-by-side check that the real
LCMAPS with the old configuration and glexec-py with the imported one map alike."""
import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
for p in (_ROOT, os.path.join(_ROOT, "tools")):
    if p not in sys.path:
        sys.path.insert(0, p)
