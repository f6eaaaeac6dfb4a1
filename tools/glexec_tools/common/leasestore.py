"""The lease store a site tool reads: the gridmapdir, or the PostgreSQL lease database when
glexec.yaml says ``mapping.lease_store: postgresql`` (``lease_db``: the ``postgresql:``
section as a dict).  prune-users and glexec-sweep must see the same leases the engine
grants from: a sweep that looked at an empty gridmapdir while the database holds the
leases would treat every leased account as free."""


def lease_db_settings(main):
    """``lease_db`` for a tool section from glexec.yaml's parsed main ``Config``."""
    if main.mapping.lease_store != "postgresql":
        return None
    return dict(main.postgresql._values)


def open_store(gridmapdir, lease_db, *, lock_timeout=None):
    """Runs as: root.  ``PgLeaseStore`` when ``lease_db`` is set, else ``GridmapDir``."""
    if lease_db:
        import os
        from glexec_py.effects.pgleases import PgLeaseStore, read_conninfo
        return PgLeaseStore(read_conninfo(lease_db["conninfo_file"]),
                            node=lease_db.get("node") or os.uname().nodename,
                            connect_timeout=lease_db.get("connect_timeout", 2),
                            timeout=lease_db.get("timeout_ms", 2000) / 1000)
    from glexec_py.effects.gridmapdir import GridmapDir
    return GridmapDir(gridmapdir, lock_timeout=lock_timeout)
