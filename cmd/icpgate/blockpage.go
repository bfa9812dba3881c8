package main

import (
	"fmt"
	"io"

	"github.com/icpgate/icpgate/proxy"
)

// cmdBlockPage prints the built-in block page template, the starting point
// for policy.block_page: icpgate blockpage > /etc/icpgate/block-page.html.
func cmdBlockPage(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		fmt.Fprintf(stderr, "icpgate blockpage: takes no arguments, got %q\nusage: icpgate blockpage > page.html\n", args)
		return exitError
	}
	if _, err := io.WriteString(stdout, proxy.BlockPageTemplate()); err != nil {
		fmt.Fprintf(stderr, "icpgate blockpage: %v\n", err)
		return exitError
	}
	return exitOK
}
