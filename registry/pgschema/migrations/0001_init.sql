-- icpgate filing database schema, version 1.
-- Every object is prefixed icpgate_ so the schema can live beside the
-- filing team's own tables.

-- Domain records: one row per registrable domain (A-label, lower case), the
-- fields of DESIGN.md "Registry file".
CREATE TABLE icpgate_records (
    domain           text PRIMARY KEY CHECK (domain <> '' AND domain = lower(domain)),
    state            text NOT NULL CHECK (state IN ('filed', 'changing', 'access_pending',
                         'rectifying', 'no_access', 'filing_pending', 'cancelled',
                         'access_revoked', 'blacklisted')),
    filing_number    text NOT NULL DEFAULT '',
    subject          text NOT NULL DEFAULT '',
    subject_type     text NOT NULL DEFAULT '',
    province         text NOT NULL DEFAULT '',
    upstream         text NOT NULL DEFAULT '',
    rectify_deadline timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- Overrides: the support whitelist and the ops denylist.
CREATE TABLE icpgate_overrides (
    id      bigserial PRIMARY KEY,
    host    text NOT NULL CHECK (host <> ''),
    scope   text NOT NULL CHECK (scope IN ('exact', 'domain')),
    action  text NOT NULL CHECK (action IN ('allow', 'deny')),
    expires timestamptz CHECK (action = 'deny' OR expires IS NOT NULL),
    reason  text NOT NULL DEFAULT '',
    ticket  text NOT NULL DEFAULT '',
    who     text NOT NULL DEFAULT '',
    created timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX icpgate_overrides_host ON icpgate_overrides (host);

-- Audit: who changed what, when (imports, overrides, confirmations).
CREATE TABLE icpgate_audit (
    id     bigserial PRIMARY KEY,
    at     timestamptz NOT NULL DEFAULT now(),
    who    text NOT NULL,
    action text NOT NULL,
    target text NOT NULL DEFAULT '',
    detail jsonb
);

-- The change sequence. icpgate_change_seq holds the last number handed
-- out; the triggers below bump it once per statement. Bumping one row
-- locks it until the writing transaction ends, so numbers are handed out
-- in commit order and without gaps (a rolled-back transaction rolls its
-- numbers back too): a gateway that has seen change N has seen every
-- change before it, and a gap in what it reads means history it needs was
-- pruned. The price is that writers of records and overrides take turns,
-- which a filing database (a few thousand changes a day, bulk imports in
-- one transaction) does not notice.
CREATE TABLE icpgate_change_seq (
    one  boolean PRIMARY KEY DEFAULT true CHECK (one),
    last bigint NOT NULL DEFAULT 0
);
INSERT INTO icpgate_change_seq DEFAULT VALUES;

-- One row per changed domain (kind 'r') or per overrides statement (kind
-- 'o', domain ''). The row says only that something changed: a gateway
-- reads the current row of icpgate_records (absent: deleted).
CREATE TABLE icpgate_changes (
    seq        bigint PRIMARY KEY,
    kind       "char" NOT NULL CHECK (kind IN ('r', 'o')),
    op         "char" NOT NULL CHECK (op IN ('I', 'U', 'D')),
    domain     text NOT NULL,
    changed_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Operator confirmations of large deletions: a gateway refuses a sync that
-- would remove more than its max_delete_fraction of the records until a
-- row here covers the change sequence number the sync reaches
-- (icpgate db confirm-deletes).
CREATE TABLE icpgate_delete_confirmations (
    up_to_seq bigint NOT NULL,
    who       text NOT NULL,
    at        timestamptz NOT NULL DEFAULT now()
);

-- icpgate_log_changes records the domains in the transition table of one
-- statement under consecutive sequence numbers and wakes the gateways.
CREATE FUNCTION icpgate_log_changes(op "char", domains text[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    n    bigint := coalesce(array_length(domains, 1), 0);
    top bigint;
BEGIN
    IF n = 0 THEN
        RETURN;
    END IF;
    UPDATE icpgate_change_seq SET last = icpgate_change_seq.last + n RETURNING icpgate_change_seq.last INTO top;
    INSERT INTO icpgate_changes (seq, kind, op, domain)
        SELECT top - n + d.i, 'r', op, d.domain
        FROM unnest(domains) WITH ORDINALITY AS d(domain, i);
    PERFORM pg_notify('icpgate_changes', top::text);
END
$$;

CREATE FUNCTION icpgate_records_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM icpgate_log_changes('I', (SELECT array_agg(domain) FROM new_rows));
    RETURN NULL;
END
$$;

CREATE FUNCTION icpgate_records_updated() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- A renamed domain is a change of the old name (now absent) and of the
    -- new one.
    PERFORM icpgate_log_changes('U', (SELECT array_agg(domain) FROM
        (SELECT domain FROM new_rows UNION SELECT domain FROM old_rows) d));
    RETURN NULL;
END
$$;

CREATE FUNCTION icpgate_records_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM icpgate_log_changes('D', (SELECT array_agg(domain) FROM old_rows));
    RETURN NULL;
END
$$;

CREATE TRIGGER icpgate_records_ins AFTER INSERT ON icpgate_records
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION icpgate_records_inserted();
CREATE TRIGGER icpgate_records_upd AFTER UPDATE ON icpgate_records
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION icpgate_records_updated();
CREATE TRIGGER icpgate_records_del AFTER DELETE ON icpgate_records
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION icpgate_records_deleted();

-- TRUNCATE bypasses row triggers: refuse it rather than lose changes.
CREATE FUNCTION icpgate_refuse_truncate() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'icpgate: TRUNCATE of % is not tracked by the change sequence; use DELETE', TG_TABLE_NAME;
END
$$;
CREATE TRIGGER icpgate_records_trunc BEFORE TRUNCATE ON icpgate_records
    FOR EACH STATEMENT EXECUTE FUNCTION icpgate_refuse_truncate();
CREATE TRIGGER icpgate_overrides_trunc BEFORE TRUNCATE ON icpgate_overrides
    FOR EACH STATEMENT EXECUTE FUNCTION icpgate_refuse_truncate();

-- Any change to the overrides: one change row (the gateways re-read the
-- whole, small, table).
CREATE FUNCTION icpgate_overrides_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    top bigint;
BEGIN
    UPDATE icpgate_change_seq SET last = icpgate_change_seq.last + 1 RETURNING icpgate_change_seq.last INTO top;
    INSERT INTO icpgate_changes (seq, kind, op, domain) VALUES (top, 'o', left(TG_OP, 1), '');
    PERFORM pg_notify('icpgate_changes', top::text);
    RETURN NULL;
END
$$;
CREATE TRIGGER icpgate_overrides_chg AFTER INSERT OR UPDATE OR DELETE ON icpgate_overrides
    FOR EACH STATEMENT EXECUTE FUNCTION icpgate_overrides_changed();

-- Identity of this database: a gateway whose local store came from another
-- database (a restore, a different environment) reloads in full.
CREATE TABLE icpgate_meta (
    one         boolean PRIMARY KEY DEFAULT true CHECK (one),
    database_id uuid NOT NULL DEFAULT gen_random_uuid(),
    created     timestamptz NOT NULL DEFAULT now()
);
INSERT INTO icpgate_meta DEFAULT VALUES;
