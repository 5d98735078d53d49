package boltstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/scepkit/scepkit/crp"
)

// FileName is the store's file in a gateway's state directory.
const FileName = "state.db"

// OpenDir opens the store of a gateway's state directory (dir/state.db, the directory
// created if needed). Certificates of the layout of earlier versions, one JSON file
// each in dir/issued, are copied into the store on the first open, and dir/issued is
// then renamed dir/issued.migrated (see crp.MigrateCertificateDir). It returns how
// many certificates were migrated.
//
// What it creates or renames is made durable by syncing the directory holding the
// entry: dir's parent when dir is created, dir when state.db is created (see [Open])
// and after the rename of the migration.
func OpenDir(dir string, o *Options) (*Store, int, error) {
	syncDir := o.dirSyncer()
	_, statErr := os.Lstat(dir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, 0, err
	}
	if errors.Is(statErr, os.ErrNotExist) {
		if err := syncDir(filepath.Dir(filepath.Clean(dir))); err != nil {
			return nil, 0, fmt.Errorf("boltstore: creating %s: %w", dir, err)
		}
	}
	s, err := Open(filepath.Join(dir, FileName), o)
	if err != nil {
		return nil, 0, err
	}
	issued := filepath.Join(dir, "issued")
	_, statErr = os.Lstat(issued)
	n, err := crp.MigrateCertificateDir(context.Background(), issued, s)
	if err == nil && statErr == nil {
		// issued was renamed: the rename is durable once dir is synced.
		if err = syncDir(dir); err != nil {
			err = fmt.Errorf("boltstore: migrating %s: %w", issued, err)
		}
	}
	if err != nil {
		s.Close()
		return nil, n, err
	}
	return s, n, nil
}
