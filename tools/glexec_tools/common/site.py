"""What the site's mapping policy says that several tools need.

``gridmap_pools(path)``: the pools of the gridmapfile (``.prefix`` mappings, as LCMAPS
poolaccount reads them), the default scope of prune-users and glexec-sweep.
"""
import os


def gridmap_pools(path):
    """Runs as: root.  The pool names (".prefix", without duplicates, in file order) the
    gridmapfile at ``path`` maps to; () for a missing file (nothing is mapped to a pool).
    ConfigError for a file that does not parse; OSError for one that cannot be read."""
    from glexec_py.core import gridmap
    try:
        with open(path, "rb") as f:
            data = f.read(64 << 20)
    except FileNotFoundError:
        return ()
    out = []
    for line in gridmap.parse_gridmap(data, path):
        for m in line.mappings:
            name = os.fsdecode(m)
            if name.startswith(".") and len(name) > 1 and name not in out:
                out.append(name)
    return tuple(out)
