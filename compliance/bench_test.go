package compliance

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/icpgate/icpgate/registry"
)

// fleetPage is a home page of about 30 KB, like a small company site's,
// with its footer at the end.
func fleetPage() string {
	var b strings.Builder
	b.WriteString("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>示例科技</title><style>body{font:14px sans-serif}</style>" +
		"<script>var analytics = {id: 12345};</script></head><body><nav><a href=\"/\">首页</a> <a href=\"/about\">关于我们</a></nav>\n")
	for b.Len() < 30<<10 {
		b.WriteString("<div class=\"item\"><h3>产品介绍</h3><p>我们提供优质的云计算与网站建设服务，欢迎垂询。Lorem ipsum dolor sit amet.</p><img src=\"a.png\" alt=\"产品\"></div>\n")
	}
	b.WriteString("<footer>©2024 示例科技有限公司 版权所有 <a href=\"https://beian.miit.gov.cn/\" target=\"_blank\">" + filed + "</a></footer></body></html>\n")
	return b.String()
}

// BenchmarkFooterPass10k checks 10,000 domains (fleet00000.test ...)
// against one nginx serving the same 30 KB page for each (gzip), 32 at a
// time, and reports the pass's duration and the process's peak RSS. Run
// it alone: go test -run '^$' -bench FooterPass10k -benchtime 1x ./compliance
func BenchmarkFooterPass10k(b *testing.B) {
	const domains, concurrency = 10000, 32
	dir := b.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "fleet"), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "fleet", "index.html"), []byte(fleetPage()), 0o644); err != nil {
		b.Fatal(err)
	}
	httpUp, _ := startNginx(b, dir)
	opts := FooterOptions{HTTPUpstream: httpUp}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		sem := make(chan struct{}, concurrency)
		var wg sync.WaitGroup
		var mu sync.Mutex // guards bad
		bad := map[FooterStatus]int{}
		for i := range domains {
			d := fmt.Sprintf("fleet%05d.test", i)
			rec := &registry.Record{Domain: d, State: registry.StateFiled, FilingNumber: filed}
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				if r := CheckFooter(context.Background(), d, rec, opts); r.Status != FooterOK {
					mu.Lock()
					bad[r.Status]++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if len(bad) > 0 {
			b.Fatalf("not ok: %v", bad)
		}
		b.ReportMetric(time.Since(start).Seconds(), "s/pass")
	}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err == nil {
		b.ReportMetric(float64(ru.Maxrss)/1024, "peak-RSS-MiB")
	}
}
