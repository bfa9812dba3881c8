package main

import (
	"testing"

	"github.com/icpgate/icpgate/proxy"
	"github.com/icpgate/icpgate/registry"
)

// TestDecisionOutcomes: the data plane is told every reason the registry
// decides with, each with only the verdicts it can carry.
func TestDecisionOutcomes(t *testing.T) {
	got := map[proxy.Outcome]bool{}
	for _, o := range decisionOutcomes() {
		got[o] = true
	}
	for _, r := range registry.Reasons() {
		if !got[proxy.Outcome{Reason: string(r), Pass: true}] && !got[proxy.Outcome{Reason: string(r), Pass: false}] {
			t.Errorf("reason %s missing", r)
		}
	}
	for o, want := range map[proxy.Outcome]bool{
		{Reason: "filed", Pass: true}:      true,
		{Reason: "filed", Pass: false}:     false,
		{Reason: "unfiled", Pass: false}:   true,
		{Reason: "unfiled", Pass: true}:    false,
		{Reason: "ip_access", Pass: true}:  true,
		{Reason: "ip_access", Pass: false}: true,
	} {
		if got[o] != want {
			t.Errorf("%+v: got %v, want %v", o, got[o], want)
		}
	}
}
