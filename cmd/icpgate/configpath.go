package main

import (
	"fmt"
	"io"
	"os"
)

// installedConfig is where a packaged install keeps its config (the systemd
// unit in configs/ and the Dockerfile use it); a variable for tests.
var installedConfig = "/etc/icpgate/icpgate.yaml"

// findConfig picks the config of a command given flag, the -config value:
// the flag, else $ICPGATE_CONFIG, else the installed config when it
// exists. With none of them the command runs on the embedded demo config
// and registry, and says so on stderr: support staff running `icpgate
// check` on a node must never mistake the 26 demo records for the
// provider's registry, where every real customer looks unfiled.
func findConfig(flag, cmd string, stderr io.Writer) string {
	if flag != "" {
		return flag
	}
	if p := os.Getenv("ICPGATE_CONFIG"); p != "" {
		return p
	}
	if st, err := os.Stat(installedConfig); err == nil && st.Mode().IsRegular() {
		fmt.Fprintf(stderr, "icpgate %s: using %s\n", cmd, installedConfig)
		return installedConfig
	}
	fmt.Fprintf(stderr, "icpgate %s: WARNING: no -config, no ICPGATE_CONFIG and no %s: "+
		"using the embedded DEMO config and its sample registry (demo domains only), not your filing registry\n",
		cmd, installedConfig)
	return ""
}
