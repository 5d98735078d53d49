package exectest

import (
	"os"
	"strings"
	"testing"
)

func TestMain(m *testing.M) {
	code := m.Run()
	Cleanup()
	os.Exit(code)
}

// Every example, and the load generator, prints its usage for -h and exits 0.
func TestHelpExitsZero(t *testing.T) {
	for _, dir := range []string{"../../quickstart", "../../mdm", "../../gateway", "../../device",
		"../../embedca", "../../intune", "../../../cmd/scepload"} { // minimal takes no flags
		t.Run(dir, func(t *testing.T) {
			bin := Build(t, dir)
			for _, arg := range []string{"-h", "-help", "--help"} {
				_, stderr, code := Run(t, bin, arg)
				if code != 0 {
					t.Errorf("%s %s: exit %d, want 0\n%s", dir, arg, code, stderr)
				}
				if !strings.Contains(stderr, "Usage") {
					t.Errorf("%s %s printed no usage:\n%s", dir, arg, stderr)
				}
			}
		})
	}
}
