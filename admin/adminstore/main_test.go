package adminstore_test

import (
	"os"
	"testing"

	"github.com/icpgate/icpgate/internal/pgtest"
)

func TestMain(m *testing.M) {
	// The test binary doubles as a second process writing the token file
	// (see TestTokenFileProcesses).
	if os.Getenv(helperEnv) != "" {
		os.Exit(tokenWriterProcess())
	}
	os.Exit(pgtest.Main(m))
}
