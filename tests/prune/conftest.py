"""prune-users tests: pure planner tests (any user) and real process tests (root, accounts
gxtprune*, uids 47400-47499 only, removed afterwards also on failure)."""
import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
for p in (_ROOT, os.path.join(_ROOT, "tools")):
    if p not in sys.path:
        sys.path.insert(0, p)
