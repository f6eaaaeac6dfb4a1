-- glexec-py site-wide lease store, schema version 1 (docs/leases.md, "PostgreSQL backend").
-- Installed by `glexec-leases db init`; the engine refuses any other version (202).
-- The bijection identity <-> account is enforced here, not only in code:
--   * lease.account is UNIQUE                          (one lease per account)
--   * UNIQUE (pool, owner, groups, mapcount)            (one account per identity and request)
--   * lease (account, pool, state) references pool_account (account, pool, state): a lease
--     exists only on a pool account of its own pool that is leased or draining
--   * a deferred constraint trigger: an account that is not free has its lease
-- Byte strings the engine does not interpret (lease names, DN text) are bytea.

CREATE TABLE glexec_schema (
    version integer PRIMARY KEY
);
INSERT INTO glexec_schema VALUES (1);

CREATE TABLE pool_account (
    account  text PRIMARY KEY CHECK (account ~ '^[A-Za-z0-9_][A-Za-z0-9._-]{0,254}$'),
    pool     text NOT NULL CHECK (pool ~ '^[!-.0-~]{1,255}$'),
    position integer NOT NULL CHECK (position >= 0),   -- allocation order within the pool
    state    text NOT NULL DEFAULT 'free' CHECK (state IN ('free', 'leased', 'draining')),
    UNIQUE (pool, position),
    UNIQUE (account, pool, state)
);
CREATE INDEX pool_account_free ON pool_account (pool, position) WHERE state = 'free';

CREATE TABLE lease (
    id        bigserial PRIMARY KEY,
    account   text NOT NULL UNIQUE,
    pool      text NOT NULL,
    state     text NOT NULL CHECK (state IN ('leased', 'draining')),
    name      bytea NOT NULL UNIQUE CHECK (octet_length(name) BETWEEN 1 AND 255),
    owner     text NOT NULL,       -- canonical owner key as JSON: ["x509", dn] / ["jwt", iss, sub]
    groups    text NOT NULL,       -- JSON list of group names
    mapcount  integer NOT NULL CHECK (mapcount >= 0),
    dn        bytea,               -- the LCMAPS input text (oneline DN or token key)
    caller    bigint,              -- uid of the glexec caller that made the lease
    made_by   text NOT NULL,       -- glexec-py | migrated
    node      text NOT NULL,       -- node that made the lease
    since     timestamptz NOT NULL DEFAULT now(),
    last_use  timestamptz NOT NULL DEFAULT now(),
    uses      bigint NOT NULL DEFAULT 1,
    drained_at timestamptz,
    UNIQUE (pool, owner, groups, mapcount),
    -- checked at commit: drain and release change both rows in one transaction
    FOREIGN KEY (account, pool, state) REFERENCES pool_account (account, pool, state)
        DEFERRABLE INITIALLY DEFERRED,
    CHECK ((state = 'draining') = (drained_at IS NOT NULL))
);
CREATE INDEX lease_caller ON lease (pool, caller) WHERE state = 'leased';

-- The nodes where a lease was used (granted or reused), and when last.
CREATE TABLE lease_use (
    lease_id  bigint NOT NULL REFERENCES lease (id) ON DELETE CASCADE,
    node      text NOT NULL,
    first_use timestamptz NOT NULL DEFAULT now(),
    last_use  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (lease_id, node)
);

-- prune-users ("no processes") and glexec-sweep ("no files") confirmations per account and
-- node; observed_at is on the database's clock (the node's record time plus its measured
-- offset).  A draining lease may be released once every node in lease_use confirmed both
-- after drained_at + grace.
CREATE TABLE confirmation (
    account     text NOT NULL REFERENCES pool_account (account) ON DELETE CASCADE,
    node        text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('prune', 'sweep')),
    observed_at timestamptz NOT NULL,
    evidence    text NOT NULL,       -- the node's state record, JSON
    PRIMARY KEY (account, node, kind)
);

CREATE FUNCTION glexec_account_has_lease() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM pool_account p WHERE p.account = NEW.account AND p.state <> 'free'
               AND NOT EXISTS (SELECT 1 FROM lease l WHERE l.account = p.account)) THEN
        RAISE EXCEPTION 'pool account % is % without a lease', NEW.account,
            (SELECT state FROM pool_account WHERE account = NEW.account)
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION glexec_lease_gone() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM pool_account p WHERE p.account = OLD.account AND p.state <> 'free'
               AND NOT EXISTS (SELECT 1 FROM lease l WHERE l.account = p.account)) THEN
        RAISE EXCEPTION 'lease of % removed but the account is not free', OLD.account
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER pool_account_state AFTER INSERT OR UPDATE ON pool_account
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION glexec_account_has_lease();
CREATE CONSTRAINT TRIGGER lease_removed AFTER DELETE ON lease
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION glexec_lease_gone();

-- Only the glexec role needs these rights (the site creates the role; see docs/leases.md).
