// Package browsertest drives a real headless Chromium (Debian's
// /usr/bin/chromium) with chromedp, for the support console's end-to-end
// tests. Nothing is simulated: the page runs its own modules under the
// console's CSP, against a real admin API.
//
// Usage:
//
//	b := browsertest.New(t, 1280, 900)
//	b.Do(t, "sign in", chromedp.Navigate(url), chromedp.WaitVisible(chromedp.ID("signin-token")))
//	b.Screenshot(t, "01-signin")
//	if errs := b.PageErrors(); len(errs) > 0 { t.Errorf(...) }
//
// Outside CI (env CI unset) a missing Chromium skips the test; in CI it
// fails it. Screenshots are written only when ICPGATE_SCREENSHOTS names a
// directory.
package browsertest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// StepTimeout bounds each Do: a page that never reaches the awaited state
// fails the test instead of hanging it.
const StepTimeout = 20 * time.Second

// Browser is one headless Chromium with one tab.
type Browser struct {
	// Ctx is the tab's chromedp context.
	Ctx context.Context

	mu   sync.Mutex // guards msgs
	msgs []chromedp.ConsoleMessage
}

// ExecPath returns the Chromium binary: $CHROMIUM when set, else
// chromium on PATH (Debian installs /usr/bin/chromium). It skips the test
// when there is none, unless CI is set, where a missing browser fails it.
func ExecPath(t testing.TB) string {
	t.Helper()
	name := os.Getenv("CHROMIUM")
	if name == "" {
		name = "chromium"
	}
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not installed (CI must install Debian's chromium: see .ci/run)", name)
		}
		t.Skipf("%s not installed (apt-get install chromium)", name)
	}
	return p
}

// New starts Chromium headless with a window of width x height, a fresh
// profile in a temporary directory and no sandbox (the tests run as root
// in CI containers). Cleanup closes the browser and waits for its process
// to exit.
func New(t testing.TB, width, height int) *Browser {
	t.Helper()
	path := ExecPath(t)
	profile := t.TempDir() // removed after the browser has exited (cleanups run last-in first-out)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(width, height),
		chromedp.Flag("lang", "zh-CN"),
		chromedp.Flag("no-proxy-server", true), // loopback only, whatever the environment says
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(allocCtx)
	b := &Browser{Ctx: ctx}
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc() // waits for the browser process to exit
	})
	// Start the browser now, so a broken install fails here, and collect
	// what the page writes to its console from the first navigation on.
	// The browser lives as long as the context of the first Run, so that
	// one carries no timeout; the timer bounds it instead.
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(ctx) }()
	select {
	case err := <-started:
		if err != nil {
			t.Fatalf("starting %s: %v", path, err)
		}
	case <-time.After(StepTimeout):
		cancelTab()
		<-started
		t.Fatalf("%s did not start within %v", path, StepTimeout)
	}
	messages := chromedp.Console(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m, err := range messages {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.msgs = append(b.msgs, m)
			b.mu.Unlock()
		}
	}()
	t.Cleanup(func() { <-done }) // runs first: after cancelTab the loop ends
	t.Cleanup(cancelTab)
	return b
}

// Do runs the steps, each run bounded by StepTimeout, and fails the test
// naming what, with the page's console messages, when one fails.
func (b *Browser) Do(t testing.TB, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.Ctx, StepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.failureScreenshot(t, what)
		t.Fatalf("%s: %v\npage console:\n%s", what, err, b.consoleText())
	}
}

// failureScreenshot saves what the page looked like when a step failed,
// as FAILED-<test>.png, when ICPGATE_SCREENSHOTS is set.
func (b *Browser) failureScreenshot(t testing.TB, what string) {
	dir := os.Getenv("ICPGATE_SCREENSHOTS")
	if dir == "" {
		return
	}
	ctx, cancel := context.WithTimeout(b.Ctx, StepTimeout)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Logf("screenshot after %s failed: %v", what, err)
		return
	}
	name := "FAILED-" + strings.NewReplacer("/", "_", " ", "_").Replace(t.Name()) + ".png"
	if err := os.MkdirAll(dir, 0o755); err == nil {
		os.WriteFile(filepath.Join(dir, name), png, 0o644)
	}
}

// Run runs one action that returns a value, bounded by StepTimeout.
func Run[T any](t testing.TB, b *Browser, what string, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.Ctx, StepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("%s: %v\npage console:\n%s", what, err, b.consoleText())
	}
	return v
}

// Text returns the text of the first element matching the CSS selector,
// waiting for it to be visible.
func (b *Browser) Text(t testing.TB, css string) string {
	t.Helper()
	b.Do(t, "waiting for "+css, chromedp.WaitVisible(chromedp.CSS(css)))
	return Run(t, b, "reading "+css, chromedp.Text(chromedp.CSS(css)))
}

// Screenshot saves the whole page as name.png in $ICPGATE_SCREENSHOTS;
// without it, it does nothing.
func (b *Browser) Screenshot(t testing.TB, name string) {
	t.Helper()
	dir := os.Getenv("ICPGATE_SCREENSHOTS")
	if dir == "" {
		return
	}
	png := Run(t, b, "screenshot "+name, chromedp.FullScreenshot(100))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// PageErrors returns the page's uncaught exceptions, console.error calls
// and browser log errors (a CSP violation is one), leaving out the
// network log's lines about HTTP error statuses, which the console
// provokes on purpose (401, 409, ...) and handles.
func (b *Browser) PageErrors() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, m := range b.msgs {
		if m.Type != chromedp.ConsoleError && m.Type != chromedp.ConsoleException {
			continue
		}
		if m.Source == "network" && strings.Contains(m.Text, "the server responded with a status of") {
			continue
		}
		out = append(out, fmt.Sprintf("%s (%s:%d)", m.String(), m.URL, m.Line+1))
	}
	return out
}

func (b *Browser) consoleText() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var s strings.Builder
	for _, m := range b.msgs {
		fmt.Fprintf(&s, "  %s\n", m.String())
	}
	return s.String()
}
