//go:build linux

package boltstore

import (
	"bufio"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/scep"
)

// mappedKB returns the resident size, in KiB, of the process's mapping of path, from
// /proc/self/smaps.
func mappedKB(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	in := false
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		if len(fields) >= 6 && strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":") {
			in = fields[len(fields)-1] == path
			continue
		}
		if in && len(fields) == 3 && fields[0] == "Rss:" {
			kb, err := strconv.Atoi(fields[1])
			if err != nil {
				t.Fatal(err)
			}
			return kb
		}
	}
	t.Fatalf("no mapping of %s in /proc/self/smaps", path)
	return 0
}

// TestCheckpointReleasesMapping: the pages of the file that bbolt read through its
// memory map leave the process's resident set at each checkpoint, so that it does not
// grow with the file; the data is read again after it.
func TestCheckpointReleasesMapping(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	const records, size = 4000, 4 << 10 // 16 MiB of records
	payload := make([]byte, size)
	rand.Read(payload)
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < records; i += 16 {
				rec := &crp.Record{TransactionID: fmt.Sprint("tx-", i), Status: scep.Pending,
					Request: payload, Expires: time.Now().Add(time.Hour)}
				if err := s.Put(ctx, rec); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	checkpoint := func() {
		t.Helper()
		if err := s.enqueue(ctx, &op{read: true, apply: func(*wtx) error { return s.commit() }}); err != nil {
			t.Fatal(err)
		}
	}
	checkpoint()
	// Read every record through the map.
	for i := range records {
		if _, err := s.Get(ctx, fmt.Sprint("tx-", i)); err != nil {
			t.Fatal(err)
		}
	}
	read := mappedKB(t, path)
	if read < records*size/1024/2 {
		t.Fatalf("%d KiB of the file mapped after reading %d KiB of records: the test reads too little to show a release", read, records*size/1024)
	}
	s.Put(ctx, &crp.Record{TransactionID: "one-more", Status: scep.Pending, Expires: time.Now().Add(time.Hour)})
	checkpoint()
	if after := mappedKB(t, path); after > 1024 {
		t.Errorf("%d KiB of the file still mapped after a checkpoint (%d KiB before it), want at most 1 MiB", after, read)
	}
	// The records read as before.
	for _, i := range []int{0, records / 2, records - 1} {
		rec, err := s.Get(ctx, fmt.Sprint("tx-", i))
		if err != nil || string(rec.Request) != string(payload) {
			t.Fatalf("record %d after the release: %v", i, err)
		}
	}
}

func TestMappingSize(t *testing.T) {
	if _, err := mappingSize(1); err != errMappingNotFound {
		t.Errorf("mappingSize of an address no mapping starts at: %v, want errMappingNotFound", err)
	}
}
