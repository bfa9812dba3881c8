// Package docs embeds the operator documentation, so that every gateway
// serves the runbook of its own release from its admin listener (/docs/):
// alert links then work where the project's public repository cannot be
// reached.
package docs

import "embed"

// FS holds the documentation pages (*.md) of this directory.
//
//go:embed *.md
var FS embed.FS
