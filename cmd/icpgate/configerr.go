package main

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// YAML decoding errors speak Go ("field cach_size not found in type
// main.RegistryConfig", "cannot unmarshal !!str `lots` into int"). The
// people who edit the config are operators, so a config that does not
// decode is walked again here, node by node against the Config type, and
// every problem is told by its line, its key path and what is wanted.

// maxConfigProblems caps the problems listed for one file: past a few
// dozen, the file is probably not an icpgate config at all.
const maxConfigProblems = 20

var durationType = reflect.TypeFor[time.Duration]()

// configProblems lists what is wrong with the YAML document data as a
// value of type t, at most maxConfigProblems of them. It returns nil when
// it finds nothing (the caller then reports the decoder's own error).
func configProblems(data []byte, t reflect.Type) []string {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return []string{strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	var w configWalker
	if len(doc.Content) > 0 {
		w.walk(doc.Content[0], t, "")
	}
	if w.more > 0 {
		w.problems = append(w.problems, fmt.Sprintf("and %d more not listed", w.more))
	}
	return w.problems
}

type configWalker struct {
	problems []string
	more     int // problems past maxConfigProblems, counted only
}

func (w *configWalker) add(n *yaml.Node, path, format string, args ...any) {
	if len(w.problems) == maxConfigProblems {
		w.more++
		return
	}
	msg := fmt.Sprintf(format, args...)
	if path != "" {
		msg = path + ": " + msg
	}
	w.problems = append(w.problems, fmt.Sprintf("line %d: %s", n.Line, msg))
}

// walk checks node n as a value of type t at key path path.
func (w *configWalker) walk(n *yaml.Node, t reflect.Type, path string) {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // an empty value leaves the default
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == durationType {
		if n.Kind != yaml.ScalarNode {
			w.add(n, path, "want a duration such as 300ms, 5s or 2m, got %s", describe(n))
		} else if n.Tag == "!!int" {
			w.add(n, path, "want a duration such as 300ms, 5s or 2m, got %q: a number needs its unit", n.Value)
		} else if _, err := time.ParseDuration(n.Value); err != nil {
			w.add(n, path, "want a duration such as 300ms, 5s or 2m, got %q", n.Value)
		}
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			w.add(n, path, "want a section of key: value lines, got %s", describe(n))
			return
		}
		keys := yamlKeys(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			f, ok := keys[k.Value]
			if !ok {
				w.add(k, join(path, k.Value), "unknown key%s", suggest(k.Value, keys))
				continue
			}
			w.walk(v, f.Type, join(path, k.Value))
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			w.add(n, path, "want a list (lines starting with \"- \", or [a, b]), got %s", describe(n))
			return
		}
		for i, e := range n.Content {
			w.walk(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			w.add(n, path, "want a section of key: value lines, got %s", describe(n))
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			w.walk(n.Content[i+1], t.Elem(), join(path, n.Content[i].Value))
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
			w.add(n, path, "want a whole number, got %s", describe(n))
		}
	case reflect.Float32, reflect.Float64:
		if n.Kind != yaml.ScalarNode || (n.Tag != "!!int" && n.Tag != "!!float") {
			w.add(n, path, "want a number, got %s", describe(n))
		}
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
			w.add(n, path, "want true or false, got %s", describe(n))
		}
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			w.add(n, path, "want a single value, got %s", describe(n))
		}
	}
}

// describe names what node n is, for "got ..." in a message.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a section of key: value lines"
	case yaml.SequenceNode:
		return "a list"
	}
	return strconv.Quote(n.Value)
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// yamlKeys maps the YAML keys of struct type t to their fields.
func yamlKeys(t reflect.Type) map[string]reflect.StructField {
	keys := make(map[string]reflect.StructField, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		keys[name] = f
	}
	return keys
}

// suggest is " (did you mean X?)" for the known key closest to key, or a
// list of the known keys when none is close.
func suggest(key string, keys map[string]reflect.StructField) string {
	names := make([]string, 0, len(keys))
	for k := range keys {
		names = append(names, k)
	}
	slices.Sort(names)
	best, bestD := "", 3 // at most two edits away
	for _, k := range names {
		if d := editDistance(strings.ToLower(key), k); d < bestD {
			best, bestD = k, d
		}
	}
	if best != "" {
		return fmt.Sprintf(" (did you mean %s?)", best)
	}
	return "; the keys here are " + strings.Join(names, ", ")
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// errConfigProblems joins problems into one error, one per line.
func errConfigProblems(problems []string) error {
	if len(problems) == 1 {
		return errors.New(problems[0])
	}
	return fmt.Errorf("%d problems:\n  %s", len(problems), strings.Join(problems, "\n  "))
}
