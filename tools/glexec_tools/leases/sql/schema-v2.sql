-- glexec-py site-wide lease store, schema version 2: the upgrade from version 1
-- (docs/leases.md, "PostgreSQL backend"; applied by `glexec-leases db-init`, after
-- schema-v1.sql on a new database).  Engines of both versions work on it.
--
-- lease_history: every lease that ended (released, expired, rolled back, moved back to a
-- gridmapdir), written by the database itself in the same transaction that removed the
-- lease, so no code path can end a lease without leaving its history.  It is the
-- back-map's second source (glexec-backmap --site): who held which account, on which
-- nodes, from when to when.  Rows are never changed or removed by glexec (a trigger
-- refuses UPDATE and DELETE; retention is the database owner's business).
--
-- lease.since is now the instant of the insert, not of the transaction's start: a new
-- lease is inserted only after the previous one of its account was removed and committed,
-- so the history's spans of one account never overlap.

CREATE TABLE lease_history (
    id         bigserial PRIMARY KEY,
    lease_id   bigint NOT NULL,
    account    text NOT NULL,
    pool       text NOT NULL,
    name       bytea NOT NULL,
    owner      text NOT NULL,
    groups     text NOT NULL,
    mapcount   integer NOT NULL,
    dn         bytea,
    caller     bigint,
    made_by    text NOT NULL,
    node       text NOT NULL,
    since      timestamptz NOT NULL,
    last_use   timestamptz NOT NULL,
    drained_at timestamptz,
    ended      timestamptz NOT NULL,
    ended_by   text NOT NULL,         -- release | rollback | migrated (glexec.lease_end)
    nodes      text NOT NULL,         -- JSON {node: [first use, last use]}, Unix seconds
    CHECK (since <= ended)
);
CREATE INDEX lease_history_account ON lease_history (account, since);
CREATE INDEX lease_history_ended ON lease_history (ended);

CREATE FUNCTION glexec_lease_ended() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO lease_history (lease_id, account, pool, name, owner, groups, mapcount, dn,
        caller, made_by, node, since, last_use, drained_at, ended, ended_by, nodes)
    VALUES (OLD.id, OLD.account, OLD.pool, OLD.name, OLD.owner, OLD.groups, OLD.mapcount,
        OLD.dn, OLD.caller, OLD.made_by, OLD.node, OLD.since, OLD.last_use, OLD.drained_at,
        greatest(clock_timestamp(), OLD.since),
        coalesce(nullif(current_setting('glexec.lease_end', true), ''), 'release'),
        (SELECT coalesce(json_object_agg(u.node, json_build_array(
             extract(epoch FROM u.first_use), extract(epoch FROM u.last_use))), '{}')::text
         FROM lease_use u WHERE u.lease_id = OLD.id));
    RETURN OLD;
END $$;

-- BEFORE: the lease's lease_use rows (removed by the cascade) are still there to read.
CREATE TRIGGER lease_ended BEFORE DELETE ON lease
    FOR EACH ROW EXECUTE FUNCTION glexec_lease_ended();

CREATE FUNCTION glexec_history_kept() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'lease_history is append-only'
        USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER lease_history_kept BEFORE UPDATE OR DELETE ON lease_history
    FOR EACH ROW EXECUTE FUNCTION glexec_history_kept();

ALTER TABLE lease ALTER COLUMN since SET DEFAULT clock_timestamp();

INSERT INTO glexec_schema VALUES (2);
