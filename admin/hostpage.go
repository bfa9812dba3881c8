package admin

import (
	"html/template"
	"net/http"
	"strings"
)

// A browser that opens the console under a name the admin listener does
// not accept (the DNS-rebinding guard, checkHost) gets this page instead of
// the API's JSON error: someone who typed a new name for the gateway into
// the address bar needs to know which setting to change, in Chinese and
// in English. API clients (anything not asking for text/html) keep the
// JSON body of docs/admin-api.md.

// hostPage is the 421 page; .Host is the Host as sent, cut and quoted.
var hostPage = template.Must(template.New("host").Parse(`<!doctype html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>无法通过这个地址打开控制台 · This address cannot open the console</title>
<style>
body { font: 16px/1.6 system-ui, -apple-system, "PingFang SC", "Microsoft YaHei", "Noto Sans CJK SC", sans-serif; color: #1f2328; max-width: 44rem; margin: 3rem auto; padding: 0 1.25rem; }
h1 { font-size: 1.4rem; margin-bottom: .25rem; }
h2 { font-size: 1.1rem; margin-top: 2.5rem; border-top: 1px solid #d0d7de; padding-top: 1.5rem; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: #f6f8fa; border-radius: 4px; }
code { padding: .1rem .3rem; }
pre { padding: .75rem 1rem; overflow-x: auto; }
.host { font-weight: 600; word-break: break-all; }
.muted { color: #59636e; font-size: .9rem; }
</style>
</head>
<body>
<main>
<section lang="zh-CN" id="host-zh">
<h1>无法通过这个地址打开控制台</h1>
<p>你打开的地址是 <code class="host">{{.Host}}</code>，但它不在本网关允许的管理地址中，所以网关没有显示控制台。这是为了防止其他网站借用浏览器冒充你操作白名单。</p>
<p><strong>怎么办：</strong>请使用管理员提供的控制台地址打开；<code>localhost</code> 和 IP 地址（如 <code>http://127.0.0.1:9090/</code>）总是可以打开。</p>
<p>如果这个地址是新启用的，请运维把它加入配置文件的 <code>admin.hosts</code>，然后重启网关：</p>
<pre>admin:
  hosts: [{{.Name}}]</pre>
</section>
<section lang="en" id="host-en">
<h2>This address cannot open the console</h2>
<p>You opened <code class="host">{{.Host}}</code>, which is not one of this gateway's admin names, so the console is not shown. This keeps other web sites from using your browser to change the whitelist.</p>
<p><strong>What to do:</strong> open the console at the address your administrator gave you; <code>localhost</code> and IP addresses (such as <code>http://127.0.0.1:9090/</code>) always work.</p>
<p>If this is a new name for the gateway, ask ops to add it to <code>admin.hosts</code> in the config file and restart the gateway (config above).</p>
</section>
<p class="muted">421 Misdirected Request · icpgate</p>
</main>
</body>
</html>
`))

// wantsHTML reports whether r is a browser navigation: a GET or HEAD
// whose Accept names text/html.
func wantsHTML(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		mt, _, _ := strings.Cut(part, ";")
		if strings.EqualFold(strings.TrimSpace(mt), "text/html") {
			return true
		}
	}
	return false
}

// writeHostPage writes the 421 page for a request whose Host is refused.
func writeHostPage(w http.ResponseWriter, r *http.Request) {
	host := r.Host
	if len(host) > 100 {
		host = host[:100] + "..."
	}
	name := strings.ToLower(host)
	if i := strings.LastIndexByte(name, ':'); i >= 0 && !strings.Contains(name[i:], "]") {
		name = name[:i] // the port; admin.hosts holds names
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(http.StatusMisdirectedRequest)
	if r.Method == http.MethodHead {
		return
	}
	// The template escapes Host, which is whatever the client sent.
	hostPage.Execute(w, struct{ Host, Name string }{host, name})
}
