package main

import (
	"bufio"
	"os"
	"strings"
	"testing"

	"github.com/scepkit/scepkit/examples/internal/exectest"
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) {
	code := m.Run()
	exectest.Cleanup()
	os.Exit(code)
}

// The program enrolls a device end to end and says what was issued.
func TestMinimal(t *testing.T) {
	stdout, stderr, code := exectest.Run(t, exectest.Build(t, "."))
	require.Zero(t, code, stderr)
	require.Regexp(t, `^issued CN=alice@example.com by CN=Example CA, serial [0-9a-f]+\n$`, stdout)
}

// The README calls it a gateway in about 70 lines: keep it so (code lines, imports
// included, comments and blank lines not).
func TestAbout70Lines(t *testing.T) {
	f, err := os.Open("main.go")
	require.NoError(t, err)
	defer f.Close()
	n := 0
	for s := bufio.NewScanner(f); s.Scan(); {
		if l := strings.TrimSpace(s.Text()); l != "" && !strings.HasPrefix(l, "//") {
			n++
		}
	}
	require.LessOrEqual(t, n, 80, "main.go has %d code lines", n)
}
