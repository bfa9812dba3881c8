// Package registry decides whether traffic for a requested host may pass,
// from the provider's registry of ICP filings.
//
// A decision follows the filing rules: normalise the name
// (Normalize), treat an empty name or IP literal by the ip_access policy,
// find the registrable domain (RegistrableDomain, ICANN section of the
// Public Suffix List only), apply support/ops overrides (deny beats allow;
// an allow never opens a blacklisted domain; expired overrides never
// apply), then the record's state. Decide is that table as one pure
// function of (host, *Snapshot, now, Policy); every Decision can explain
// itself (Decision.Explain).
//
// A Snapshot is an immutable set of records and overrides, validated when
// built (NewSnapshot, Builder). A Registry serves decisions from the
// current snapshot, read through an atomic pointer, with a per-host 2Q
// cache in front that a flood of one-hit names cannot flush; Swap installs
// a new snapshot and drops only the cached hosts whose registrable domain
// changed. Cached decisions also lapse on their own when an override
// expires or a rectification deadline passes.
//
// Sources feed the Registry: FileSource loads a JSON Lines or CSV file
// (LoadFile, the fixed format of docs/configuration.md "Registry file") and reloads it when
// it changes, keeping the previous snapshot when the new file has a bad
// row. PostgresSource follows the filing database (schema in package
// pgschema): a streamed full load, then the change sequence, woken by
// LISTEN/NOTIFY with polling as a fallback, reconnecting with backoff,
// refusing a mass deletion until an operator confirms it. Store (bbolt)
// keeps its last good snapshot and cursor, so a node serves at once after
// a restart, with or without the database:
//
//	store, err := registry.OpenStore("data/icpgate.db", log) // damaged: discarded
//	src, err := registry.NewPostgresSource(reg, registry.PostgresOptions{DSN: dsn, Store: store, Logger: log})
//	src.LoadStore() // serve the last good snapshot now
//	go src.Run(ctx) // catch up and follow; src.Stats() for metrics and /readyz
//
// Usage:
//
//	reg := registry.New(registry.Options{Logger: log})
//	src := registry.NewFileSource("configs/registry.sample.jsonl", reg, log)
//	if err := src.Load(); err != nil {
//		return err // path:line: reason
//	}
//	go src.Run(ctx) // reload on change until ctx is done
//
//	d := reg.Decide(sni) // safe for concurrent use; sni may alias a buffer
//	if d.Verdict == registry.Block {
//		// block with d.Reason; d.Explain() says why
//	}
//
// Overrides from the control plane are combined with the loaded records
// without re-reading them:
//
//	err := reg.Update(func(old *registry.Snapshot) (*registry.Snapshot, error) {
//		return old.WithOverrides(overrides)
//	})
package registry
