-- Seed for the PostgreSQL source tests: 20 valid records and 4 that a
-- gateway must skip (logged with their key, counted), plus one override.
INSERT INTO icpgate_records (domain, state, filing_number, subject, subject_type, province, upstream, rectify_deadline, updated_at)
SELECT 'filed' || i || '.cn', 'filed', '京ICP备10206937号-' || i, '某某科技有限公司', 'enterprise', '京', '', NULL, '2026-11-01T08:00:00Z'
FROM generate_series(1, 16) AS i;
INSERT INTO icpgate_records (domain, state, filing_number, rectify_deadline) VALUES
    ('xn--fsqu00a.xn--fiqs8s', 'changing', '京ICP备09051301号-2', NULL),
    ('rectifying.com.cn', 'rectifying', '沪ICP备2026012345号-1', '2099-12-31T00:00:00+08:00'),
    ('noaccess.cn', 'no_access', '', NULL),
    ('black.cn', 'blacklisted', '', NULL);
-- Invalid rows.
INSERT INTO icpgate_records (domain, state, filing_number, rectify_deadline) VALUES
    ('bad-number.cn', 'filed', '京ICP备123号', NULL),          -- malformed filing number
    ('www.subdomain.cn', 'filed', '京ICP备10206937号-1', NULL), -- not a registrable domain
    ('no deadline.cn', 'no_access', '', NULL),                 -- not a host name
    ('late.cn', 'rectifying', '沪ICP备2026012345号-1', NULL);  -- rectifying without a deadline
INSERT INTO icpgate_overrides (host, scope, action, reason, ticket, who) VALUES
    ('denied.filed1.cn', 'exact', 'deny', 'abuse', 'T-1', 'ops');
