// Command gen writes the benchmark registry and the equivalent nginx and
// HAProxy maps, so that every gateway under test knows exactly the same names.
//
// Usage:
//
//	go run ./bench/gen -n 1000000 -out /tmp/bench
//
// It writes, into the -out directory:
//
//	registry.jsonl  icpgate registry (JSON Lines, docs/configuration.md "Registry file")
//	nginx.map       lines ".name 1;" for an nginx "map ... { hostnames; }"
//	haproxy.map     lines "name 1" for HAProxy's map_str converter
//	hosts.env       shell assignments FILED_HOST, UNFILED_HOST, NAMES, PASSING
//
// Names are site0000000.cn, site0000001.com, ... under single-label suffixes
// (cn, com, net, top), so "the last two labels" is the registrable domain and
// HAProxy can find it with field(-1,.,2); see bench/README.md. Of every 100
// records, 95 are filed, 2 are changing (pass) and 3 are cancelled (block):
// only the passing ones go into the nginx and HAProxy maps, which is what an
// operator of those proxies would export. Output is deterministic.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// provinces are the 31 mainland abbreviations used for filing numbers.
var provinces = []rune("京津冀晋蒙辽吉黑沪苏浙皖闽赣鲁豫鄂湘粤桂琼渝川黔滇藏陕甘青宁新")

// suffixes are single-label public suffixes; see the package comment.
var suffixes = []string{"cn", "com", "net", "top"}

// record describes row i of the generated registry.
type record struct {
	domain  string
	state   string
	filing  string
	prov    string
	passing bool
}

// row returns the deterministic record number i.
func row(i int) record {
	r := record{
		domain: fmt.Sprintf("site%07d.%s", i, suffixes[i%len(suffixes)]),
		prov:   string(provinces[i%len(provinces)]),
	}
	switch i % 100 {
	case 95, 96:
		r.state, r.passing = "changing", true
	case 97, 98, 99:
		r.state = "cancelled"
	default:
		r.state, r.passing = "filed", true
	}
	// 8-digit subject number, website number 1: 京ICP备10000042号-1.
	r.filing = fmt.Sprintf("%sICP备%08d号-1", r.prov, 10000000+i)
	return r
}

// filedIndex is a passing row near the middle of an n-row registry.
func filedIndex(n int) int { return (n / 2) / 100 * 100 }

// writeAll writes the n-row registry and maps into dir.
func writeAll(dir string, n int) (err error) {
	if n < 1 || n > 10_000_000 {
		return fmt.Errorf("names: want 1..10000000, got %d", n)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating output directory: %w", err)
	}
	var files []*os.File
	open := func(name string) *bufio.Writer {
		f, e := os.Create(filepath.Join(dir, name))
		if e != nil {
			err = errors.Join(err, fmt.Errorf("creating %s: %w", name, e))
			return bufio.NewWriter(io.Discard)
		}
		files = append(files, f)
		return bufio.NewWriterSize(f, 1<<20)
	}
	reg, ngx, hap := open("registry.jsonl"), open("nginx.map"), open("haproxy.map")
	defer func() {
		for _, f := range files {
			err = errors.Join(err, f.Close())
		}
	}()
	if err != nil {
		return err
	}
	passing := 0
	for i := range n {
		r := row(i)
		fmt.Fprintf(reg, `{"domain":%q,"state":%q`, r.domain, r.state)
		if r.state != "cancelled" {
			fmt.Fprintf(reg, `,"filing_number":%q`, r.filing)
		}
		fmt.Fprintf(reg, `,"subject":"测试站点%07d","subject_type":"enterprise","province":%q,"updated_at":"2026-11-01T00:00:00Z"}`+"\n", i, r.prov)
		if r.passing {
			passing++
			fmt.Fprintf(ngx, ".%s 1;\n", r.domain)
			fmt.Fprintf(hap, "%s 1\n", r.domain)
		}
	}
	for _, w := range []*bufio.Writer{reg, ngx, hap} {
		if e := w.Flush(); e != nil {
			return fmt.Errorf("writing: %w", e)
		}
	}
	env := fmt.Sprintf("FILED_HOST=www.%s\nUNFILED_HOST=www.nofiling%07d.cn\nNAMES=%d\nPASSING=%d\n",
		row(filedIndex(n)).domain, filedIndex(n), n, passing)
	if e := os.WriteFile(filepath.Join(dir, "hosts.env"), []byte(env), 0o644); e != nil {
		return fmt.Errorf("writing hosts.env: %w", e)
	}
	return nil
}

func main() {
	n := flag.Int("n", 1_000_000, "number of registry records")
	out := flag.String("out", ".", "output directory")
	flag.Parse()
	if err := writeAll(*out, *n); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}
