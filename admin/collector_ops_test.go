package admin

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/icpgate/icpgate/registry"
)

// TestReloadStateCollector drives a real FileSource through a good, a bad
// and a fixed registry file and reads the gauge from a real /metrics
// scrape over loopback.
func TestReloadStateCollector(t *testing.T) {
	good, err := os.ReadFile("testdata/registry.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "registry.jsonl")
	reg := registry.New(registry.Options{})
	src := registry.NewFileSource(path, reg, nil)
	pr := prometheus.NewRegistry()
	pr.MustRegister(NewReloadStateCollector(src.Stats))
	s := New(Config{Address: "127.0.0.1:0"}, reg, pr, nil, nil)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	url := "http://" + s.Addr().String() + "/metrics"

	steps := []struct {
		name    string
		content string
		wantErr bool
		want    string
	}{
		{"first load", string(good), false, "0"},
		{"bad row", string(good) + "{\"domain\":\"x.cn\",\"state\":\"nonsense\"}\n", true, "1"},
		{"fixed", string(good), false, "0"},
	}
	for _, st := range steps {
		if err := os.WriteFile(path, []byte(st.content), 0o644); err != nil {
			t.Fatal(err)
		}
		err := src.Load()
		if (err != nil) != st.wantErr {
			t.Fatalf("%s: load error %v, want error %v", st.name, err, st.wantErr)
		}
		_, body := get(t, "GET", url)
		if got := sampleValue(body, "icpgate_registry_last_reload_failed"); got != st.want {
			t.Errorf("%s: got %q, want %q", st.name, got, st.want)
		}
	}
}

func TestReloadStateCollectorNil(t *testing.T) {
	c := NewReloadStateCollector(nil)
	problems, err := testutil.CollectAndLint(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
	if got := testutil.ToFloat64(c); got != 0 {
		t.Errorf("got %v, want 0", got)
	}
}

// sampleValue returns the value of the unlabelled sample name in a text
// exposition, or "" when it is absent.
func sampleValue(body, name string) string {
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	return ""
}
