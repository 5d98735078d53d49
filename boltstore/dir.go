package boltstore

import (
	"context"
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
func OpenDir(dir string, o *Options) (*Store, int, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, 0, err
	}
	s, err := Open(filepath.Join(dir, FileName), o)
	if err != nil {
		return nil, 0, err
	}
	n, err := crp.MigrateCertificateDir(context.Background(), filepath.Join(dir, "issued"), s)
	if err != nil {
		s.Close()
		return nil, n, err
	}
	return s, n, nil
}
