// Package atomicfile writes files so that a crash leaves either the old content or the
// new, never half of it: keys, certificates and records that a restart reads back.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// Write writes data to a temporary file in path's directory with mode, syncs it,
// renames it over path and syncs the directory. When the directory's sync fails, the
// new content is in place (a reader sees it) but may not last a power loss, and
// Write returns that error: a caller writing a key it goes on to use (a CA's, whose
// certificates would outlive it) must not take it for kept.
func Write(path string, data []byte, mode os.FileMode) error {
	if err := Replace(path, data, mode); err != nil {
		return err
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("atomicfile: %s written, its directory not synced: %w", filepath.Base(path), err)
	}
	return nil
}

// syncDir is SyncDir; tests make it fail.
var syncDir = SyncDir

// Replace writes data to a temporary file in path's directory with mode, syncs it and
// renames it over path, as Write does, but leaves the directory unsynced: the new
// entry lasts a power loss only once [SyncDir] of path's directory has succeeded.
func Replace(path string, data []byte, mode os.FileMode) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()
	if err = f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err = f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err = f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
