// Package registry decides whether traffic for a requested host may pass,
// from the provider's registry of ICP filings.
//
// A decision follows DESIGN.md ("The decision"): normalise the name
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
// (LoadFile, fixed format of DESIGN.md "Registry file") and reloads it when
// it changes, keeping the previous snapshot when the new file has a bad
// row.
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
