package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestLatenciesFile: -latencies writes one line per measured enrollment (not the
// warm-up's), in the order they were sent: when, how long, and the outcome.
func TestLatenciesFile(t *testing.T) {
	_, ts := testGateway(t)
	path := filepath.Join(t.TempDir(), "lat.txt")
	c := &config{url: ts.URL + "/scep", mdm: ts.URL + "/mdm", device: "alice-laptop", conc: 2, n: 5, warmup: 2,
		keySize: 2048, dur: time.Minute, verify: true, latencies: path}
	var out bytes.Buffer
	if err := run(c, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "enrollments  5 ok") {
		t.Fatalf("the report lost enrollments to the file:\n%s", out.String())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 5 {
		t.Fatalf("%d lines, want 5:\n%s", len(lines), b)
	}
	last := -1.0
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) != 3 || f[2] != "ok" {
			t.Fatalf("line %q", l)
		}
		at, err1 := strconv.ParseFloat(f[0], 64)
		lat, err2 := strconv.ParseFloat(f[1], 64)
		if err1 != nil || err2 != nil || at < last || lat <= 0 {
			t.Fatalf("line %q after %v", l, last)
		}
		last = at
	}
}
