package compliance

import (
	"io"
	"net/url"
	"strings"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// hidden are the elements whose content a visitor does not read on the
// page: scripts, styles, what only shows without JavaScript, templates
// and the head (title included).
var hidden = map[atom.Atom]bool{
	atom.Head: true, atom.Script: true, atom.Style: true, atom.Noscript: true,
	atom.Template: true, atom.Iframe: true, atom.Object: true, atom.Svg: true,
}

// inline are the elements that do not break a line: their text joins the
// text around them, so 京ICP备<span>09051301</span>号 reads as one number.
// Every other element's start and end separate text, so a site number
// is not run into the digits of the next block.
var inline = map[atom.Atom]bool{
	atom.A: true, atom.Span: true, atom.B: true, atom.I: true, atom.Em: true,
	atom.Strong: true, atom.Font: true, atom.Small: true, atom.U: true,
	atom.Sup: true, atom.Sub: true, atom.Label: true, atom.Abbr: true,
	atom.Code: true, atom.Big: true, atom.S: true, atom.Mark: true,
	atom.Cite: true, atom.Q: true, atom.Tt: true, atom.Ins: true, atom.Del: true,
}

// visibleText parses r as HTML and returns its visible text (text nodes
// outside hidden elements and elements with the hidden attribute;
// attributes are not text) and whether an <a> links to MIITHost.
func visibleText(r io.Reader) (string, bool) {
	doc, err := html.Parse(r)
	if err != nil {
		// html.Parse only fails on read errors; r is in memory.
		return "", false
	}
	var b strings.Builder
	link := false
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			if hidden[n.DataAtom] || hasAttr(n, "hidden") {
				// A link inside a hidden element does not count either.
				return
			}
			if n.DataAtom == atom.A && linksMIIT(attr(n, "href")) {
				link = true
			}
		}
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
		}
		block := n.Type == html.ElementNode && !inline[n.DataAtom]
		if block {
			b.WriteByte('\n')
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
		if block {
			b.WriteByte('\n')
		}
	}
	walk(doc)
	return b.String(), link
}

// linksMIIT reports whether href is an http or https (or scheme-relative)
// URL on MIITHost, any path.
func linksMIIT(href string) bool {
	u, err := url.Parse(strings.TrimSpace(href))
	if err != nil {
		return false
	}
	switch strings.ToLower(u.Scheme) {
	case "http", "https", "":
	default:
		return false
	}
	return strings.TrimSuffix(strings.ToLower(u.Hostname()), ".") == MIITHost
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func hasAttr(n *html.Node, key string) bool {
	for _, a := range n.Attr {
		if a.Key == key {
			return true
		}
	}
	return false
}
