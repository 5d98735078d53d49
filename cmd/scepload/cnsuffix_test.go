package main

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestCNSuffixAgainstScepserver enrolls 4 concurrent devices at micromdm's scepserver,
// which names each stored certificate by its CN: with one CN for all requests the
// concurrent writes collide and some requests may be refused (how many varies from run
// to run, so that case is not asserted); with -cn-suffix every request has its own CN
// and none may be refused.
func TestCNSuffixAgainstScepserver(t *testing.T) {
	bin, err := exec.LookPath("scepserver")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("scepserver (Debian package scep) is required under CI")
		}
		t.Skip("scepserver not installed")
	}
	for _, tc := range []struct {
		name    string
		suffix  bool
		refused bool
	}{
		{"cn-suffix", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			depot := filepath.Join(t.TempDir(), "depot")
			if out, err := exec.Command(bin, "ca", "-init", "-depot", depot, "-keySize", "2048").CombinedOutput(); err != nil {
				t.Fatalf("scepserver ca -init: %v\n%s", err, out)
			}
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			port := l.Addr().(*net.TCPAddr).Port
			l.Close()
			srv := exec.Command(bin, "-depot", depot, "-port", strconv.Itoa(port), "-challenge", "secret", "-allowrenew", "0")
			if err := srv.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
			addr := "127.0.0.1:" + strconv.Itoa(port)
			for deadline := time.Now().Add(10 * time.Second); ; {
				if c, err := net.Dial("tcp", addr); err == nil {
					c.Close()
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("scepserver did not listen")
				}
				time.Sleep(50 * time.Millisecond)
			}
			var out bytes.Buffer
			c := &config{url: "http://" + addr + "/scep", challenge: "secret", cn: "load", cnSuffix: tc.suffix,
				conc: 4, n: 40, keySize: 2048, dur: time.Minute, prebuild: true, verify: true}
			if err := run(c, &out); err != nil && !tc.refused {
				t.Fatalf("run: %v\n%s", err, out.String())
			}
			noErrors := strings.Contains(out.String(), "errors       none")
			if noErrors == tc.refused {
				t.Fatalf("refusals: want %v, report:\n%s", tc.refused, out.String())
			}
		})
	}
}
