package proxy

import (
	"time"

	"github.com/icpgate/icpgate/internal/blockid"
)

// The request ID of a blocked request is self-describing (package
// blockid): when, which node, which reason and a tag of the host, so that
// support can answer the ID a visitor brings from the block page
// (GET /v1/requests/{id}, `icpgate explain --request-id`) with no record
// of the block kept anywhere, whatever the block rate. Passing requests
// keep their 16-hex IDs (requestIDs): those go to origins, whose logs
// find them.

// blockIDLen is the length of a blocked request's ID.
const blockIDLen = blockid.Len

// appendBlockID appends the ID of a block of host decided d at t on node
// to dst, allocating nothing. The host tag is of the host as decided: the
// Decider's normalised host and registrable domain, else (an invalid
// name) the host as received.
func appendBlockID(dst []byte, node string, d *Decision, host string, t time.Time) []byte {
	if d.Host != "" {
		host = d.Host
	}
	return blockid.Append(dst, blockid.New(t, blockid.NodeTag(node), d.Reason, host, d.Domain))
}
