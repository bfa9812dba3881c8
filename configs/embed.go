// Package configs holds the files an operator copies (sample config,
// sample registry, systemd unit) and embeds the two the gateway falls back
// to when it runs without -config:
//
//	cfg := configs.Config           // icpgate.yaml
//	records := configs.RegistrySample // registry.sample.jsonl
//
// It imports nothing; the embedded bytes must not be modified.
package configs

import _ "embed" // for go:embed

// Config is configs/icpgate.yaml, the default configuration used when no
// -config is given. Its registry.file names registry.sample.jsonl, which is
// then read from RegistrySample instead of the file system.
//
//go:embed icpgate.yaml
var Config []byte

// ConfigName is the name Config is embedded under, used in error messages.
const ConfigName = "icpgate.yaml"

// RegistrySample is configs/registry.sample.jsonl, the sample filing
// registry with one domain per state.
//
//go:embed registry.sample.jsonl
var RegistrySample []byte

// RegistrySampleName is the registry.file value that refers to
// RegistrySample in the embedded config.
const RegistrySampleName = "registry.sample.jsonl"
