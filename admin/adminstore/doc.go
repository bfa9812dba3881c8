// Package adminstore keeps the control plane's state: overrides (the
// support whitelist and the ops denylist), the append-only audit log and
// the access tokens of support staff. It implements admin.Backend and
// admin.TokenStore twice:
//
//   - file mode (one gateway): Bolt, a bbolt file for overrides and audit,
//     and TokenFile, a JSON Lines token file that `icpgate token create`
//     (another process) writes while the gateway runs;
//   - PostgreSQL mode (every gateway on one filing database): Postgres,
//     both interfaces on the tables of migration 0002 (package pgschema).
//     An override stored here reaches every gateway's registry within a
//     second through the existing change trigger and NOTIFY.
//
// Every mutation and its audit entry are one transaction: a change is
// never unaudited, and a failed change leaves no "ok" entry behind. The
// backends fill in the entry's ID, At (when zero), Target (the override ID,
// when empty), Outcome ("ok", when empty), Before and After (the override
// as admin.Override.JSON shows it at the entry's time).
//
// Times are stored with microsecond precision (PostgreSQL's), so both
// backends return exactly what they stored.
//
// Errors: admin.ErrNotFound and admin.ErrConflict as the interfaces say;
// ErrUnavailable (wrapped) when the database cannot be reached (the API
// answers 503); ErrCorrupt (wrapped, naming the file) when a bbolt or
// token file fails its checks; ErrNameTaken when a live token has the
// name; registry.ErrInvalidOverride (wrapped, naming the field) for an
// override the registry would refuse.
//
// Usage:
//
//	b, err := adminstore.OpenBolt("data/admin.db") // file mode
//	...
//	defer b.Close()
//	tokens, err := adminstore.OpenTokenFile("data/tokens.jsonl")
//	...
//	srv := admin.New(admin.Config{Backend: b, Tokens: tokens, ...}, ...)
//
//	pg, err := adminstore.OpenPostgres(ctx, dsn) // PostgreSQL mode: both
//	...
//	defer pg.Close()
//	srv := admin.New(admin.Config{Backend: pg, Tokens: pg, ...}, ...)
package adminstore
