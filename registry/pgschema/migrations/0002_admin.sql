-- icpgate filing database schema, version 2: the control plane (admin API)
-- keeps its overrides, audit log and access tokens here, so every gateway
-- on the database shares them (package admin/adminstore).

-- Overrides get a version for optimistic concurrency (the API's ETag and
-- If-Match) and the time of their last change. The registry's source reads
-- neither; it keeps following the table through the statement trigger.
ALTER TABLE icpgate_overrides
    ADD COLUMN version bigint NOT NULL DEFAULT 1 CHECK (version >= 1),
    ADD COLUMN updated timestamptz NOT NULL DEFAULT now();
-- Existing overrides were last changed when they were made. The trigger is
-- off for this one statement: it changes nothing a gateway reads, and it
-- would otherwise log a change (and wake every gateway) for nothing.
ALTER TABLE icpgate_overrides DISABLE TRIGGER icpgate_overrides_chg;
UPDATE icpgate_overrides SET updated = created;
ALTER TABLE icpgate_overrides ENABLE TRIGGER icpgate_overrides_chg;

-- The audit log records every attempt to change the control plane, not
-- only imports: who (and with which role) from where, the request as sent
-- (input, json so it stays byte for byte what was sent, duplicate keys
-- included), the normalised host, the override before and after the
-- change, the outcome and a message. The existing detail (jsonb) stays for
-- structured details (imports, delete confirmations); message is the
-- API's plain-text detail.
ALTER TABLE icpgate_audit
    ADD COLUMN role       text NOT NULL DEFAULT '',
    ADD COLUMN remote     text NOT NULL DEFAULT '',
    ADD COLUMN input      json,
    ADD COLUMN normalized text NOT NULL DEFAULT '',
    ADD COLUMN "before"   jsonb,
    ADD COLUMN "after"    jsonb,
    ADD COLUMN outcome    text NOT NULL DEFAULT 'ok' CHECK (outcome IN ('ok', 'denied', 'rejected')),
    ADD COLUMN message    text NOT NULL DEFAULT '';
CREATE INDEX icpgate_audit_who ON icpgate_audit (who, id);
CREATE INDEX icpgate_audit_target ON icpgate_audit (target, id);
CREATE INDEX icpgate_audit_normalized ON icpgate_audit (normalized, id);

-- The audit log is append-only: no UPDATE, DELETE or TRUNCATE, whatever
-- the row. Statement-level, so even a statement that matches no row is
-- refused (a tool that tries is a bug worth hearing about).
CREATE FUNCTION icpgate_refuse_audit_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'icpgate: icpgate_audit is append-only; % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER icpgate_audit_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON icpgate_audit
    FOR EACH STATEMENT EXECUTE FUNCTION icpgate_refuse_audit_change();

-- Access tokens of support staff: never the secret, only its SHA-256.
-- A name is unique among live (not revoked) tokens.
CREATE TABLE icpgate_tokens (
    id         text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_-]{1,64}$'),
    name       text NOT NULL CHECK (name ~ '^[A-Za-z0-9._@-]{1,64}$'),
    role       text NOT NULL CHECK (role IN ('viewer', 'support', 'admin')),
    hash       bytea NOT NULL UNIQUE CHECK (length(hash) = 32),
    created    timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
CREATE UNIQUE INDEX icpgate_tokens_live_name ON icpgate_tokens (name) WHERE revoked_at IS NULL;
