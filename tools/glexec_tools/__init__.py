"""Site tools of glexec-py (glexec-backmap, ...).  Installed next to ``glexec_py`` in
``PREFIX/lib/glexec-py/``; each tool is a core planner plus effects, started by a launcher
in ``PREFIX/bin``."""
