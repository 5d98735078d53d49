// Package softhsmtest gives tests a fresh SoftHSM2 token: a token directory of the
// test process's own (never the machine's), a token initialised with softhsm2-util
// under a unique label, and the module path and PIN to open it with.
//
// SoftHSM2 reads its configuration file, named by the environment variable
// SOFTHSM2_CONF, when the module is first loaded; so every test of a process shares
// one configuration (set by the first call to New) and gets a token of its own in it.
//
// When SoftHSM2 is not installed the test is skipped, or fails when the environment
// variable CI is "true" (CI installs it: see .ci/run). In a test binary built without
// cgo, which cannot load a PKCS#11 module, the test is skipped.
package softhsmtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/scepkit/scepkit/internal/testserver"
)

// Util is the softhsm2-util program looked up in PATH.
const Util = "softhsm2-util"

// PIN and SOPIN are the user and security officer PINs of every test token.
const (
	PIN   = "1234"
	SOPIN = "12345678"
)

// ModuleCandidates are where Debian and other distributions install the module.
var ModuleCandidates = []string{
	"/usr/lib/softhsm/libsofthsm2.so",
	"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/local/lib/softhsm/libsofthsm2.so",
	"/usr/lib64/pkcs11/libsofthsm2.so",
}

// Token is a fresh token.
type Token struct {
	// Module is the path of libsofthsm2.so.
	Module string
	// Label is the token's label, unique in the process.
	Label string
	// PIN is the user PIN.
	PIN string
	// Conf is the SoftHSM2 configuration file (also in SOFTHSM2_CONF).
	Conf string
	// Dir is the token's directory in the token store (its files are its objects).
	Dir string
}

var (
	once    sync.Once
	conf    string
	confErr error
	seq     atomic.Int64
)

// New initialises a fresh token and returns it. It skips the test when SoftHSM2 is
// missing, unless CI=true, where it fails it.
func New(t testing.TB) *Token {
	t.Helper()
	if !cgoEnabled {
		// Not Missing: no package can be installed for it, and CI builds with cgo.
		t.Skip("softhsmtest: built without cgo (CGO_ENABLED=0): PKCS#11 modules cannot be loaded")
	}
	util, err := exec.LookPath(Util)
	module := ""
	for _, m := range ModuleCandidates {
		if _, e := os.Stat(m); e == nil {
			module = m
			break
		}
	}
	if err != nil || module == "" {
		testserver.Missing(t, "softhsmtest: SoftHSM2 not installed (apt-get install softhsm2): %s %v, module %q",
			Util, err, module)
	}
	once.Do(setup)
	if confErr != nil {
		t.Fatalf("softhsmtest: %v", confErr)
	}
	label := fmt.Sprintf("scepkit-test-%d-%d", os.Getpid(), seq.Add(1))
	// The token's directory is the one --init-token adds: one token made at a time.
	initMu.Lock()
	defer initMu.Unlock()
	before, err := tokenDirs()
	if err != nil {
		t.Fatalf("softhsmtest: %v", err)
	}
	cmd := exec.Command(util, "--init-token", "--free", "--label", label, "--pin", PIN, "--so-pin", SOPIN)
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+conf)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("softhsmtest: %s --init-token: %v\n%s", Util, err, out)
	}
	after, err := tokenDirs()
	if err != nil {
		t.Fatalf("softhsmtest: %v", err)
	}
	var dir string
	for d := range after {
		if !before[d] {
			dir = d
		}
	}
	if dir == "" {
		t.Fatalf("softhsmtest: %s --init-token made no directory in %s", Util, filepath.Join(filepath.Dir(conf), "tokens"))
	}
	return &Token{Module: module, Label: label, PIN: PIN, Conf: conf, Dir: dir}
}

var initMu sync.Mutex

// tokenDirs returns the directories of the token store.
func tokenDirs() (map[string]bool, error) {
	store := filepath.Join(filepath.Dir(conf), "tokens")
	ents, err := os.ReadDir(store)
	if err != nil {
		return nil, err
	}
	dirs := map[string]bool{}
	for _, e := range ents {
		if e.IsDir() {
			dirs[filepath.Join(store, e.Name())] = true
		}
	}
	return dirs, nil
}

// setup writes the process's configuration and token directory, and points
// SOFTHSM2_CONF at it. They are left behind in the temporary directory on exit
// (SoftHSM2 may still hold them open); each is a few kilobytes.
func setup() {
	dir, err := os.MkdirTemp("", "scepkit-softhsm-")
	if err != nil {
		confErr = err
		return
	}
	tokens := filepath.Join(dir, "tokens")
	if err := os.Mkdir(tokens, 0o700); err != nil {
		confErr = err
		return
	}
	conf = filepath.Join(dir, "softhsm2.conf")
	body := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n", tokens)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		confErr = err
		return
	}
	confErr = os.Setenv("SOFTHSM2_CONF", conf)
}
