//go:build !windows

package boltstore

import "os"

// syncDir makes a directory's entries (a file created or renamed in it) durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
