"""The pool-lease store glexec.yaml selects (``mapping.lease_store``): the node's gridmapdir
or the site's PostgreSQL database.  Both objects answer the same calls (``acquire``,
``created``, ``adopted``, ``rollback``, ``release``, ``drain``, ``leases``,
``hold_unleased``) and are context managers."""
import os

from glexec_py.errors import SystemFault


def node_name(pg):
    """This node's name for the lease database: ``postgresql.node`` or the host name."""
    return pg.node or os.uname().nodename


def open_store(cfg):
    """Runs as: root.  The configured store, opened (a directory fd or a database
    connection); ``SystemFault`` (202) if it cannot be opened."""
    mapping = cfg.mapping
    if mapping.lease_store == "postgresql":
        from glexec_py.effects.pgleases import PgLeaseStore, read_conninfo
        pg = cfg.postgresql
        return PgLeaseStore(read_conninfo(pg.conninfo_file), node=node_name(pg),
                            connect_timeout=pg.connect_timeout, timeout=pg.timeout_ms / 1000)
    from glexec_py.effects.gridmapdir import GridmapDir
    if not mapping.gridmapdir:
        raise SystemFault("gridmapdir", "glexec: the gridmapfile names a pool but mapping.gridmapdir is not set")
    return GridmapDir(mapping.gridmapdir, lock_timeout=mapping.lock_timeout,
                      sync="grant" if mapping.lease_metadata_sync else "none")
