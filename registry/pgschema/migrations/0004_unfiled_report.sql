-- icpgate filing database schema, version 4: the unfiled-site report of
-- every gateway, so the admin API of any of them answers for all.
--
-- One row per node and domain holding that node's absolute counts, which
-- the node rewrites (every 30 s, only the rows that changed) and the API
-- adds up across nodes when it reads. Absolute counts make a retried write
-- harmless (no double counting), and a domain pushed out of a node's
-- bounded report keeps its row (no hits lost). The key is node and domain,
-- not the reason too: a node counts a domain's blocks under one counter
-- whatever their reason (reason is the last one seen), so a row per
-- reason would count a domain's hits again when its reason changes.
--
-- entered is when the domain entered the node's report (its first_seen
-- there). A later entered is a new count (the domain was pushed out and
-- came back, or the node restarted without report.file): the row's hits
-- so far become base_hits and the new count adds to them.
CREATE TABLE icpgate_unfiled_report (
    node         text NOT NULL,
    domain       text NOT NULL CHECK (domain <> ''),
    reason       text NOT NULL,
    hits         bigint NOT NULL CHECK (hits >= 0),
    hits_error   bigint NOT NULL DEFAULT 0 CHECK (hits_error >= 0),
    base_hits    bigint NOT NULL DEFAULT 0 CHECK (base_hits >= 0),
    base_error   bigint NOT NULL DEFAULT 0 CHECK (base_error >= 0),
    entered      timestamptz NOT NULL,
    first_seen   timestamptz NOT NULL,
    last_seen    timestamptz NOT NULL,
    destinations jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(destinations) = 'array'),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (node, domain)
);
CREATE INDEX icpgate_unfiled_report_domain ON icpgate_unfiled_report (domain);
