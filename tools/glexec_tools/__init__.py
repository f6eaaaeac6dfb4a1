"""Site tools of glexec-py (glexec-backmap, glexec-leases, ...).  Installed next to
``glexec_py`` in ``PREFIX/lib/glexec-py/``; each tool is a slice (``<tool>/plan.py`` pure,
``apply.py`` effects, ``cli.py``) behind the shared ``front``, started by a launcher in
``PREFIX/sbin``."""
