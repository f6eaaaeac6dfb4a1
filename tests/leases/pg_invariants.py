"""Invariants of the PostgreSQL lease store, checked by SQL on the database itself (the
crash, restart and cross-node tests): whatever the clients did or where they died."""
import json

from glexec_py.effects.pgclient import Connection, from_bytea

CHECKS = {
    # every lease on an account of its own pool, in the same state
    "lease_without_account": "SELECT l.account FROM lease l LEFT JOIN pool_account p ON "
                             "p.account = l.account AND p.pool = l.pool AND p.state = l.state "
                             "WHERE p.account IS NULL",
    # an account that is not free has its lease (no half-made grant, no half-done release)
    "busy_account_without_lease": "SELECT p.account FROM pool_account p LEFT JOIN lease l ON "
                                  "l.account = p.account WHERE p.state <> 'free' AND l.id IS NULL",
    "free_account_with_lease": "SELECT p.account FROM pool_account p JOIN lease l ON "
                               "l.account = p.account WHERE p.state = 'free'",
    "account_with_two_leases": "SELECT account FROM lease GROUP BY account HAVING count(*) > 1",
    "identity_with_two_accounts": "SELECT owner FROM lease GROUP BY pool, owner, groups, mapcount "
                                  "HAVING count(*) > 1",
    "lease_never_used": "SELECT l.id FROM lease l WHERE NOT EXISTS "
                        "(SELECT 1 FROM lease_use u WHERE u.lease_id = l.id)",
    "draining_without_time": "SELECT id FROM lease WHERE (state = 'draining') <> (drained_at IS NOT NULL)",
}


def check(conninfo):
    """Assert every invariant; return {(owner key tuple, groups tuple, mapcount): account}."""
    with Connection(conninfo, 5, 10) as db:
        bad = {name: db.query(sql) for name, sql in CHECKS.items()}
        assert not any(bad.values()), {k: v for k, v in bad.items() if v}
        rows = db.query("SELECT owner, groups, mapcount, account, name FROM lease")
    out = {}
    for owner, groups, mapcount, account, name in rows:
        from_bytea(name)
        key = (tuple(json.loads(owner)), tuple(json.loads(groups)), int(mapcount))
        assert key not in out
        out[key] = account
    return out
