import os
import sys

# Make the package importable however pytest is started (python3 -m pytest adds the cwd).
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)
