package main

import (
	"reflect"
	"strings"
	"testing"
)

// FuzzConfigProblems: the walker that explains a config that does not
// decode never panics (aliases, odd nesting, any bytes) and never lists an
// empty problem.
func FuzzConfigProblems(f *testing.F) {
	f.Add([]byte(minimal))
	f.Add([]byte(minimal + "limits: {max_conns: lots}\ntimeouts: {idle: [1]}\nregisty: {}\n"))
	f.Add([]byte("listeners:\n  - &a {name: x}\n  - *a\n"))
	f.Add([]byte("a: b: c"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p := configProblems(data, reflect.TypeFor[Config]())
		for _, s := range p {
			if strings.TrimSpace(s) == "" {
				t.Fatalf("empty problem in %q", p)
			}
		}
	})
}
