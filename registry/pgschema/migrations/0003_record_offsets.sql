-- icpgate filing database schema, version 3: a record's times keep the
-- time zone offset they were given. timestamptz keeps the instant only, so
-- `icpgate export` wrote 2026-01-31T00:00:00+08:00 back as
-- 2026-01-30T16:00:00Z. The offset is in minutes east of UTC (480 for
-- +08:00, -210 for -03:30); null when the time was given in UTC (Z), is
-- absent, or was written by a tool that does not set it: such a time is
-- exported in UTC, as before. `icpgate import` writes both columns.
ALTER TABLE icpgate_records
    ADD COLUMN rectify_deadline_offset smallint
        CHECK (rectify_deadline_offset BETWEEN -1439 AND 1439),
    ADD COLUMN updated_at_offset smallint
        CHECK (updated_at_offset BETWEEN -1439 AND 1439);
