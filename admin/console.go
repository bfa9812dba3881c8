package admin

import (
	"embed"
	"io/fs"
	"net/http"
)

// consoleFS holds the support console's assets: plain HTML, CSS and
// JavaScript, embedded so the binary serves them with no build step.
//
//go:embed console
var consoleFS embed.FS

// consoleHandler serves the console under /console/ and redirects / to
// it, with headers that keep it from being framed or loading anything
// from elsewhere.
func consoleHandler() http.Handler {
	sub, err := fs.Sub(consoleFS, "console")
	if err != nil {
		panic(err) // the embed directive guarantees the directory
	}
	files := http.StripPrefix("/console/", http.FileServer(http.FS(sub)))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		if r.URL.Path == "/" {
			http.Redirect(w, r, "/console/", http.StatusFound)
			return
		}
		files.ServeHTTP(w, r)
	})
}
