// Package atomicfile writes files so that a crash leaves either the old content or the
// new, never half of it: keys, certificates and records that a restart reads back.
package atomicfile

import (
	"os"
	"path/filepath"
)

// Write writes data to a temporary file in path's directory with mode, syncs it,
// renames it over path and syncs the directory. A failure to sync the directory is
// not reported: the file is whole either way, only the rename may not last a power
// loss. A caller that must know it does uses [Replace] and [SyncDir].
func Write(path string, data []byte, mode os.FileMode) error {
	if err := Replace(path, data, mode); err != nil {
		return err
	}
	SyncDir(filepath.Dir(path))
	return nil
}

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
