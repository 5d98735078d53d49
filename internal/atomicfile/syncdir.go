//go:build !windows

package atomicfile

import "os"

// SyncDir makes a directory's entries (a file created or renamed in it) durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
