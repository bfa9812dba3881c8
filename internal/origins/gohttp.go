//go:build linux

package origins

import (
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// Go runs a net/http server in this process as an origin. Its log is a
// slice in memory; a request is logged before it is answered, so an
// answer a client has read is always in the log.
func Go(t testing.TB) *Origin {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu      sync.Mutex
		entries []Entry // guarded by mu
	)
	srv := &http.Server{ReadHeaderTimeout: 30 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			n = -1
		}
		status := StatusFor(r.RequestURI)
		id := r.Header.Get("X-Request-Id")
		mu.Lock()
		entries = append(entries, Entry{Origin: "go", Method: r.Method, Target: r.RequestURI, Host: r.Host,
			RequestID: id, XFF: r.Header.Get("X-Forwarded-For"), BodyLen: n, Status: status})
		mu.Unlock()
		saw := strings.Join([]string{"go", id, r.Method, r.Host, r.RequestURI}, "|")
		w.Header().Set(SawHeader, saw)
		if path, _, _ := strings.Cut(r.RequestURI, "?"); strings.HasSuffix(path, ".103") {
			w.Header().Set("Link", "</early>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			w.Header().Del("Link")
		}
		w.WriteHeader(status)
		if status == 200 {
			io.WriteString(w, saw+"\n")
		}
	})}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	return &Origin{Name: "go", Addr: ln.Addr().String(), log: func() ([]Entry, error) {
		mu.Lock()
		defer mu.Unlock()
		return append([]Entry(nil), entries...), nil
	}}
}
