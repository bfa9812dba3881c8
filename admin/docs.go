package admin

import (
	"bytes"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"sort"
	"strings"
	"sync"

	"github.com/yuin/goldmark"
	"github.com/yuin/goldmark/extension"
	"github.com/yuin/goldmark/parser"
)

// The documentation of this release, served read-only at /docs/ (like
// /healthz, without a token: it is the project's public documentation),
// rendered from Markdown once per page. Alerts link their runbook entries
// here (configs/prometheus/alerts.yml), so the links work on networks
// that cannot reach the project's public repository, and always match the
// running version. Heading anchors follow the GitHub convention, so the
// same #anchors work in both places.

var docsMarkdown = goldmark.New(
	goldmark.WithExtensions(extension.GFM),
	goldmark.WithParserOptions(parser.WithAutoHeadingID()),
)

var docsPage = template.Must(template.New("doc").Parse(`<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}} — icpgate</title>
<style>body{font:15px/1.6 system-ui,"PingFang SC","Microsoft YaHei",sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#1f2328}
pre,code{font:13px/1.45 ui-monospace,Menlo,Consolas,monospace;background:#f6f8fa}pre{padding:1rem;overflow:auto}
table{border-collapse:collapse}td,th{border:1px solid #d0d7de;padding:.3rem .6rem;vertical-align:top}
nav{margin-bottom:1.5rem;font-size:13px}</style></head>
<body><nav><a href="/docs/">icpgate docs</a></nav>{{.Body}}</body></html>
`))

// docsServer renders and caches the pages of fsys.
type docsServer struct {
	fsys  fs.FS
	cache sync.Map // page name -> []byte
}

func (d *docsServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, "/docs/")
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'")
	if name == "" {
		d.index(w)
		return
	}
	// Links between pages are written as "operations.md"; both that and
	// "operations" name the page.
	if !strings.HasSuffix(name, ".md") {
		name += ".md"
	}
	if strings.Contains(name, "/") || !fs.ValidPath(name) {
		http.NotFound(w, r)
		return
	}
	if b, ok := d.cache.Load(name); ok {
		d.write(w, b.([]byte))
		return
	}
	src, err := fs.ReadFile(d.fsys, name)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	var body bytes.Buffer
	if err := docsMarkdown.Convert(src, &body); err != nil {
		http.Error(w, "rendering "+name+": "+err.Error(), http.StatusInternalServerError)
		return
	}
	var page bytes.Buffer
	title, _, _ := strings.Cut(strings.TrimPrefix(string(src), "# "), "\n")
	if err := docsPage.Execute(&page, struct {
		Title string
		Body  template.HTML
	}{title, template.HTML(body.String())}); err != nil { // goldmark escapes raw HTML it does not pass (WithUnsafe is off)
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	d.cache.Store(name, page.Bytes())
	d.write(w, page.Bytes())
}

func (d *docsServer) write(w http.ResponseWriter, b []byte) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Write(b)
}

// index lists the pages.
func (d *docsServer) index(w http.ResponseWriter) {
	names, _ := fs.Glob(d.fsys, "*.md")
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("# icpgate documentation\n\n")
	for _, n := range names {
		b.WriteString("- [" + strings.TrimSuffix(n, ".md") + "](" + path.Base(n) + ")\n")
	}
	var body bytes.Buffer
	docsMarkdown.Convert([]byte(b.String()), &body)
	var page bytes.Buffer
	docsPage.Execute(&page, struct {
		Title string
		Body  template.HTML
	}{"documentation", template.HTML(body.String())})
	d.write(w, page.Bytes())
}
