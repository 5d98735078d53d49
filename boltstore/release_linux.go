//go:build linux

package boltstore

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

// releaseMapping takes the pages of db's memory map out of the process's page tables
// (madvise(2) MADV_DONTNEED): bbolt maps the file shared and read-only, so the pages
// stay in the kernel's page cache as the file's, and the next read of one maps it
// again (a minor fault, without I/O while the kernel keeps it cached). Without it
// every page bbolt has read since Open stays counted in the process's resident set,
// which then grows with the file (the certificate inventory) although the pages are
// the file's, not memory the process holds.
//
// It must run while no transaction can remap the file: in the commit loop, between
// a checkpoint and the next write transaction (bbolt remaps only when a write
// transaction grows the file, or at Open).
func releaseMapping(db *bolt.DB) error {
	start := db.Info().Data
	if start == 0 {
		return nil
	}
	size, err := mappingSize(start)
	if err != nil {
		return err
	}
	if _, _, e := unix.Syscall(unix.SYS_MADVISE, start, size, unix.MADV_DONTNEED); e != 0 {
		return fmt.Errorf("boltstore: releasing the file's memory map: %w", e)
	}
	return nil
}

// errMappingNotFound is mappingSize's error when no mapping starts at the address.
var errMappingNotFound = errors.New("boltstore: the file's memory map is not in /proc/self/maps")

// mappingSize returns the length of the mapping of the process that starts at start,
// from /proc/self/maps (bbolt does not export the length of its map, which may be
// longer or shorter than the file).
func mappingSize(start uintptr) (uintptr, error) {
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return 0, fmt.Errorf("boltstore: reading the process's mappings: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rng, _, _ := strings.Cut(sc.Text(), " ")
		lo, hi, ok := strings.Cut(rng, "-")
		if !ok {
			continue
		}
		l, err1 := strconv.ParseUint(lo, 16, 64)
		h, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 == nil && err2 == nil && uintptr(l) == start && h > l {
			return uintptr(h - l), nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("boltstore: reading the process's mappings: %w", err)
	}
	return 0, errMappingNotFound
}
