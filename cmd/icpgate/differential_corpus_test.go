package main

// The differential harness's corpus (differential_test.go): request
// streams with the requests each was built from.

import (
	"fmt"
	"strconv"
	"strings"
)

// diffReq is one request of a stream as the client means it.
type diffReq struct {
	method, host, target string
	body                 int64 // decoded body length
}

// diffStream is one connection's bytes and the requests they are made of,
// in order. A request hidden in a body is not one of them.
type diffStream struct {
	name string
	raw  string
	reqs []diffReq // nil: not modelled (the evasion suite's inputs)
	// halfClose ends the client's side after raw; otherwise raw's last
	// request carries "Connection: close" (or the gateway closes first).
	halfClose bool
	// refusedBy names the origins that answer a request of the stream
	// with an error of their own (no X-Saw) or cannot parse what the
	// gateway passed: a disagreement, but no request reaching an origin
	// undecided, which is still checked.
	refusedBy []string
}

// diffMsg is one request's bytes and what it means.
type diffMsg struct {
	raw string
	req diffReq
}

// request builds a request with the given fields (raw lines without
// CRLF, Host first unless host is "") and body bytes as sent; decoded is
// the body's length once its framing is undone.
func request(method, target, host string, fields []string, body string, decoded int) diffMsg {
	var b strings.Builder
	b.WriteString(method + " " + target + " HTTP/1.1\r\n")
	if host != "" {
		b.WriteString("Host: " + host + "\r\n")
	}
	for _, f := range fields {
		b.WriteString(f + "\r\n")
	}
	b.WriteString("\r\n" + body)
	return diffMsg{b.String(), diffReq{method, host, target, int64(decoded)}}
}

// lastMsg ends most streams: a filed request that closes the connection,
// answered only when the gateway and the origin stayed in step.
var lastMsg = request("GET", "/last", "filed-demo.cn", []string{"Connection: close"}, "", 0)

// streamOf joins messages into a stream ending with lastMsg.
func streamOf(name string, msgs ...diffMsg) diffStream {
	s := diffStream{name: name}
	for _, m := range append(msgs, lastMsg) {
		s.raw += m.raw
		s.reqs = append(s.reqs, m.req)
	}
	return s
}

// Requests hidden in bodies: for a blocked name (the incident's), and for
// a filed name carrying an X-Request-Id shaped like the gateway's, so a
// smuggled request cannot pass for a decided one.
const (
	smuggledUnfiled = "GET /smuggled HTTP/1.1\r\nHost: unfiled-demo.cn\r\n\r\n"
	smuggledForged  = "GET /smuggled-forged HTTP/1.1\r\nHost: filed-demo.cn\r\nX-Request-Id: 0123456789abcdef\r\n\r\n"
)

// chunk frames data as one chunk followed by the last chunk.
func chunk(data string) string {
	return strconv.FormatInt(int64(len(data)), 16) + "\r\n" + data + "\r\n0\r\n\r\n"
}

// clPost is a POST whose Content-Length body is body, with extra fields
// before (pre) and after (post) the Content-Length field.
func clPost(target string, pre, post []string, body string) diffMsg {
	f := append(append(append([]string(nil), pre...), "Content-Length: "+strconv.Itoa(len(body))), post...)
	return request("POST", target, "filed-demo.cn", f, body, len(body))
}

// tePost is clPost with the body chunked.
func tePost(target string, pre, post []string, data string) diffMsg {
	f := append(append(append([]string(nil), pre...), "Transfer-Encoding: chunked"), post...)
	return request("POST", target, "filed-demo.cn", f, chunk(data), len(data))
}

// connectionStreams: the incident and its relatives — a Connection field
// naming a framing field, Host or anything else, in every spelling and
// place a list allows, on a body that hides a request.
func connectionStreams() []diffStream {
	forms := []struct {
		name   string
		fields func(tok string) []string
	}{
		{"", func(tok string) []string { return []string{"Connection: " + tok} }},
		{"after keep-alive", func(tok string) []string { return []string{"Connection: keep-alive, " + tok} }},
		{"before close", func(tok string) []string { return []string{"Connection: " + tok + ", close"} }},
		{"list without spaces", func(tok string) []string { return []string{"Connection: keep-alive," + tok + ",x-other"} }},
		{"tabs and empty elements", func(tok string) []string { return []string{"Connection:\t, " + tok + " ,\t"} }},
		{"second Connection field", func(tok string) []string { return []string{"Connection: keep-alive", "Connection: " + tok} }},
		{"lower-case field name", func(tok string) []string { return []string{"connection: " + tok} }},
		{"upper-case field name", func(tok string) []string { return []string{"CONNECTION: " + tok} }},
	}
	var out []diffStream
	for _, tok := range []string{"content-length", "Content-Length", "CONTENT-LENGTH", "transfer-encoding", "Transfer-Encoding",
		"TRANSFER-ENCODING", "host", "Host", "te", "keep-alive", "x-unrelated"} {
		te := strings.EqualFold(tok, "transfer-encoding")
		for _, f := range forms {
			name := "Connection: " + tok
			if f.name != "" {
				name += ", " + f.name
			}
			// The Connection field before the framing field, as in the
			// incident, and after it.
			for _, after := range []bool{false, true} {
				pre, post := f.fields(tok), []string(nil)
				n := name
				if after {
					pre, post = nil, pre
					n += ", after the framing field"
				}
				if te {
					out = append(out, streamOf(n+" (chunked body)", tePost("/carrier", pre, post, smuggledUnfiled)))
				} else {
					out = append(out, streamOf(n+" (Content-Length body)", clPost("/carrier", pre, post, smuggledUnfiled)))
				}
				if f.name != "" && !strings.EqualFold(tok, "host") {
					break // every place for the bare form; one for the others
				}
			}
		}
	}
	out = append(out,
		streamOf("Connection: content-length hiding a filed request with a forged X-Request-Id",
			clPost("/carrier", []string{"Connection: content-length"}, nil, smuggledForged)),
		streamOf("Connection: transfer-encoding hiding a filed request with a forged X-Request-Id",
			tePost("/carrier", []string{"Connection: transfer-encoding"}, nil, smuggledForged)),
		streamOf("Connection: content-length, transfer-encoding on a chunked body",
			tePost("/carrier", []string{"Connection: content-length, transfer-encoding"}, nil, smuggledUnfiled)),
		streamOf("Connection: host on a GET",
			request("GET", "/c", "filed-demo.cn", []string{"Connection: host"}, "", 0)),
		streamOf("Connection: host, absolute-form target",
			request("GET", "http://filed-demo.cn/c", "filed-demo.cn", []string{"Connection: host"}, "", 0)),
		streamOf("Proxy-Connection: content-length",
			clPost("/carrier", []string{"Proxy-Connection: content-length"}, nil, smuggledUnfiled)),
	)
	// The absolute-form request's target is sent upstream in origin form.
	out[len(out)-2].reqs[0].target = "/c"
	return out
}

// framingStreams: Content-Length and Transfer-Encoding mutated in name
// case, value whitespace, lists, duplicates, folding and line endings;
// CL.TE, TE.CL and CL.0 shapes.
func framingStreams() []diffStream {
	var out []diffStream
	n := len(smuggledUnfiled)
	cl := func(name string, fields ...string) {
		out = append(out, streamOf("Content-Length "+name,
			request("POST", "/carrier", "filed-demo.cn", fields, smuggledUnfiled, n)))
	}
	for _, name := range []string{"content-length", "CONTENT-LENGTH", "cOnTeNt-LeNgTh"} {
		cl("name "+name, fmt.Sprintf("%s: %d", name, n))
	}
	for _, v := range []string{"%d", " %d", "%d ", "\t%d\t", "0%d", "%d, %d", "%d,%d", "+%d", "%d.0", " %d , %d "} {
		cl(fmt.Sprintf("value %q", v), "Content-Length:"+strings.ReplaceAll(v, "%d", strconv.Itoa(n)))
	}
	cl("twice, same value", fmt.Sprintf("Content-Length: %d", n), fmt.Sprintf("Content-Length: %d", n))
	cl("twice, 0 first", "Content-Length: 0", fmt.Sprintf("Content-Length: %d", n))
	cl("space before colon", fmt.Sprintf("Content-Length : %d", n))
	cl("obs-folded value", fmt.Sprintf("Content-Length:\r\n %d", n))
	cl("line ending in bare LF", fmt.Sprintf("Content-Length: %d\nX-A: b", n))
	cl("after a bare-LF field", fmt.Sprintf("X-A: b\nContent-Length: %d", n))

	body := chunk(smuggledUnfiled)
	te := func(name string, fields ...string) {
		out = append(out, streamOf("Transfer-Encoding "+name,
			request("POST", "/carrier", "filed-demo.cn", fields, body, n)))
	}
	for _, name := range []string{"transfer-encoding", "TRANSFER-ENCODING"} {
		te("name "+name, name+": chunked")
	}
	for _, v := range []string{"Chunked", "CHUNKED", " chunked", "chunked ", "\tchunked", "identity, chunked", "chunked, chunked",
		"gzip, chunked", "chunked, identity", "x-custom", "chunked;q=1", "\"chunked\"", "chunked\x0b"} {
		te(fmt.Sprintf("value %q", v), "Transfer-Encoding:"+v)
	}
	te("twice", "Transfer-Encoding: chunked", "Transfer-Encoding: chunked")
	te("split over two fields", "Transfer-Encoding: gzip", "Transfer-Encoding: chunked")
	te("space before colon", "Transfer-Encoding : chunked")
	te("obs-folded value", "Transfer-Encoding:\r\n chunked")
	te("line ending in bare LF", "Transfer-Encoding: chunked\nX-A: b")
	te("with Content-Length after (CL.TE)", "Transfer-Encoding: chunked", fmt.Sprintf("Content-Length: %d", len(body)))
	te("with Content-Length before (TE.CL)", "Content-Length: 4", "Transfer-Encoding: chunked")
	te("with Content-Length 0", "Content-Length: 0", "Transfer-Encoding: chunked")
	te("Transfer_Encoding (underscore)", "Transfer_Encoding: chunked", fmt.Sprintf("Content-Length: %d", len(body)))
	// The underscore spelling is an ordinary field: the body is framed
	// by Content-Length, whole.
	out[len(out)-1].reqs[0].body = int64(len(body))
	// CL.0: a body on a GET, and a request after an empty body that is
	// pipelined (and so decided) rather than hidden.
	out = append(out,
		streamOf("GET with a Content-Length body", request("GET", "/g", "filed-demo.cn", []string{fmt.Sprintf("Content-Length: %d", n)}, smuggledUnfiled, n)),
		streamOf("GET with a chunked body", request("GET", "/g", "filed-demo.cn", []string{"Transfer-Encoding: chunked"}, body, n)),
		streamOf("Content-Length 0, then a pipelined request for an unfiled name",
			request("GET", "/g", "filed-demo.cn", []string{"Content-Length: 0"}, "", 0),
			request("GET", "/smuggled", "unfiled-demo.cn", nil, "", 0)),
		streamOf("HTTP/1.0 keep-alive with a body", diffMsg{"POST /h10 HTTP/1.0\r\nHost: filed-demo.cn\r\nConnection: keep-alive\r\nContent-Length: 5\r\n\r\nhello",
			diffReq{"POST", "filed-demo.cn", "/h10", 5}}),
	)
	return out
}

// chunkStreams: chunk sizes, extensions and trailers.
func chunkStreams() []diffStream {
	var out []diffStream
	for _, c := range []struct {
		name, body string
		n          int
	}{
		{"extension", "5;a=b\r\nhello\r\n0\r\n\r\n", 5},
		{"quoted extension with ;", "5;a=\"b;c\"\r\nhello\r\n0\r\n\r\n", 5},
		{"whitespace before extension", "5 ;a=b\r\nhello\r\n0\r\n\r\n", 5},
		{"tab before extension", "5\t;a\r\nhello\r\n0\r\n\r\n", 5},
		{"leading zeros", "0000000005\r\nhello\r\n0\r\n\r\n", 5},
		{"upper-case hex", "A\r\n0123456789\r\n0\r\n\r\n", 10},
		{"three chunks", "3\r\nabc\r\n2\r\nde\r\n1\r\nf\r\n0\r\n\r\n", 6},
		{"extension on the last chunk", "5\r\nhello\r\n0;x=y\r\n\r\n", 5},
		{"trailer", "5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n", 5},
		{"trailer Content-Length", "5\r\nhello\r\n0\r\nContent-Length: 99\r\n\r\n", 5},
		{"trailer Host unfiled", "5\r\nhello\r\n0\r\nHost: unfiled-demo.cn\r\n\r\n", 5},
		{"trailer Transfer-Encoding", "5\r\nhello\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n", 5},
		{"size with 0x", "0x5\r\nhello\r\n0\r\n\r\n" + smuggledUnfiled, 5},
		{"size overflow", "10000000000000005\r\nhello\r\n0\r\n\r\n" + smuggledUnfiled, 5},
		{"bare LF after size", "5\nhello\r\n0\r\n\r\n", 5},
		{"data longer than size", "3\r\nhello\r\n0\r\n\r\n", 3},
		{"last chunk bare LF then a request", "0\n\n" + smuggledUnfiled, 0},
		{"CR in extension", "5;a\rb\r\nhello\r\n0\r\n\r\n", 5},
		{"request in chunk data", chunk(smuggledUnfiled), len(smuggledUnfiled)},
	} {
		s := streamOf("chunked: "+c.name, request("POST", "/chunks", "filed-demo.cn", []string{"Transfer-Encoding: chunked"}, c.body, c.n))
		if strings.ContainsAny(c.body[:strings.IndexByte(c.body, '\n')], " \t\"") {
			// Chunk lines go upstream as the client wrote them, and
			// node's parser refuses whitespace before an extension and
			// quoted extension values (RFC 9112 §7.1.1 allows both).
			s = refused(s, "node")
		}
		out = append(out, s)
	}
	return out
}

// hopStreams: hop-by-hop and forwarding fields, upgrades, Expect.
func hopStreams() []diffStream {
	ws := []string{"Connection: Upgrade", "Upgrade: websocket", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13"}
	get := func(target string, fields ...string) diffMsg {
		return request("GET", target, "filed-demo.cn", fields, "", 0)
	}
	return []diffStream{
		streamOf("Keep-Alive field", get("/ka", "Connection: keep-alive", "Keep-Alive: timeout=5, max=1000")),
		streamOf("TE: trailers", get("/te", "TE: trailers", "Connection: TE")),
		streamOf("Trailer field with a chunked trailer", request("POST", "/trailer", "filed-demo.cn",
			[]string{"Trailer: X-T", "Transfer-Encoding: chunked"}, "5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n", 5)),
		streamOf("Proxy-Connection: keep-alive", get("/pc", "Proxy-Connection: keep-alive")),
		streamOf("Upgrade h2c without Connection", get("/h2c", "Upgrade: h2c", "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA")),
		streamOf("Upgrade h2c", get("/h2c", "Connection: Upgrade, HTTP2-Settings", "Upgrade: h2c", "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA")),
		streamOf("WebSocket upgrade the origin declines", get("/ws", ws...)),
		streamOf("WebSocket upgrade on a POST hiding a request", clPost("/ws", ws, nil, smuggledUnfiled)),
		streamOf("client X-Request-Id and X-Forwarded-For", get("/xff", "X-Forwarded-For: 6.6.6.6", "X-Request-Id: 0123456789abcdef", "X-Forwarded-Host: unfiled-demo.cn")),
		streamOf("Expect 100-continue, Content-Length body", clPost("/expect", []string{"Expect: 100-continue"}, nil, "hello")),
		streamOf("Expect 100-continue, chunked body", tePost("/expect", []string{"Expect: 100-continue"}, nil, "hello")),
		streamOf("Expect 100-Continue (case)", clPost("/expect", []string{"Expect: 100-Continue"}, nil, "hello")),
		streamOf("Expect 100-continue without a body", get("/expect", "Expect: 100-continue")),
		streamOf("Expect 100-continue hiding a request behind Connection: content-length",
			clPost("/expect", []string{"Expect: 100-continue", "Connection: content-length"}, nil, smuggledUnfiled)),
		refused(streamOf("Expect other", clPost("/expect-other", []string{"Expect: something"}, nil, "hello")),
			// RFC 9110 §10.1.1 lets a server answer an unknown
			// expectation with 417; net/http, httpd and node do.
			"go", "apache", "node"),
	}
}

// refused marks s as refused by the named origins (diffStream.refusedBy).
func refused(s diffStream, by ...string) diffStream {
	s.refusedBy = by
	return s
}

// pipelineStreams: several requests in one write, with answers that have
// no body (HEAD, 204, 304), interim answers (103) and blocked requests.
func pipelineStreams() []diffStream {
	get := func(target, host string, fields ...string) diffMsg {
		return request("GET", target, host, fields, "", 0)
	}
	head := func(target string) diffMsg { return request("HEAD", target, "filed-demo.cn", nil, "", 0) }
	return []diffStream{
		streamOf("pipelined: every kind of answer",
			get("/p1", "filed-demo.cn"), clPost("/p2", nil, nil, "hello"), head("/p3"), get("/p4.204", "filed-demo.cn"),
			get("/p5.304", "filed-demo.cn", "If-None-Match: *"), get("/p6.103", "filed-demo.cn"), tePost("/p7", nil, nil, "chunked!"),
			head("/p8.204"), head("/p9.304")),
		streamOf("pipelined: bodies on 204 and 304 paths",
			clPost("/b1.204", nil, nil, "hello"), tePost("/b2.304", nil, nil, "world"), clPost("/b3.204", nil, nil, smuggledUnfiled)),
		streamOf("pipelined: blocked in the middle",
			get("/m1", "filed-demo.cn"), get("/m2", "unfiled-demo.cn"), get("/m3", "filed-demo.cn")),
		streamOf("pipelined: cancelled and blacklisted after filed",
			get("/c1", "www.filed-demo.cn"), get("/c2", "cancelled-demo.cn"), get("/c3", "a.blacklisted-demo.cn")),
		streamOf("pipelined: Host spellings",
			get("/h1", "FILED-DEMO.CN"), get("/h2", "filed-demo.cn:8080"), get("/h3", "filed-demo.cn."), get("/h4", "www.filed-demo.cn"),
			get("/h5", "Filed-Demo.Cn")),
		streamOf("pipelined: ten requests", get("/t0", "filed-demo.cn"), get("/t1", "filed-demo.cn"), get("/t2", "filed-demo.cn"),
			get("/t3", "filed-demo.cn"), get("/t4", "filed-demo.cn"), get("/t5", "filed-demo.cn"), get("/t6", "filed-demo.cn"),
			get("/t7", "filed-demo.cn"), get("/t8", "filed-demo.cn"), get("/t9", "filed-demo.cn")),
		streamOf("pipelined: HEAD then a request hidden behind Connection: content-length",
			head("/hd"), clPost("/carrier", []string{"Connection: content-length"}, nil, smuggledUnfiled)),
	}
}

// evasionStreams are the evasion suite's HTTP inputs, each followed by the
// request its case puts behind it.
func evasionStreams() []diffStream {
	var out []diffStream
	for _, suite := range []struct {
		name  string
		cases []evHTTPCase
	}{{"evasion", evasionHTTPCases()}, {"evasion smuggling", evasionSmugglingCases()}} {
		for _, tc := range suite.cases {
			raw := tc.raw
			switch tc.behind {
			case "":
				raw += behindFiled
			case "-":
			default:
				raw += tc.behind
			}
			out = append(out, diffStream{name: suite.name + ": " + tc.name, raw: raw, halfClose: tc.behind == "-"})
		}
	}
	return out
}

// diffCorpus is every stream of the harness.
func diffCorpus() []diffStream {
	var out []diffStream
	for _, g := range [][]diffStream{connectionStreams(), framingStreams(), chunkStreams(), hopStreams(), pipelineStreams(), evasionStreams()} {
		out = append(out, g...)
	}
	return out
}
