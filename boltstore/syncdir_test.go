package boltstore_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/boltstore"
	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/storetest"
)

// TestDirectorySynced: what Open and OpenDir create or rename has its directory
// synced: the state directory's parent when the directory is created, the state
// directory when state.db is created and after the migration renames issued/; nothing
// is synced when nothing was created (before, no directory was ever synced).
//
// What this proves: the sync is called, on the right directories, at the right
// moments, and succeeds on this file system. It does not prove that the entries
// survive a power cut; that needs a crash at the block layer, which no test here
// can cause.
func TestDirectorySynced(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	state := filepath.Join(root, "state")
	oldLayout := filepath.Join(root, "old")
	old, err := crp.OpenCertificateDir(filepath.Join(oldLayout, "issued"))
	require.NoError(t, err)
	require.NoError(t, old.Add(ctx, &crp.IssuedCertificate{Certificate: storetest.Certificate(t, 931, time.Now().Add(time.Hour))}))

	for _, tc := range []struct {
		name string
		open func(o *boltstore.Options) (*boltstore.Store, error)
		want []string
	}{
		{"OpenDir creates the directory and the file", func(o *boltstore.Options) (*boltstore.Store, error) {
			s, _, err := boltstore.OpenDir(state, o)
			return s, err
		}, []string{root, state}},
		{"OpenDir of an existing store", func(o *boltstore.Options) (*boltstore.Store, error) {
			s, _, err := boltstore.OpenDir(state, o)
			return s, err
		}, nil},
		{"OpenDir migrates the earlier layout", func(o *boltstore.Options) (*boltstore.Store, error) {
			s, n, err := boltstore.OpenDir(oldLayout, o)
			require.Equal(t, 1, n)
			return s, err
		}, []string{oldLayout, oldLayout}},
		{"Open creates a file", func(o *boltstore.Options) (*boltstore.Store, error) {
			return boltstore.Open(filepath.Join(root, "other.db"), o)
		}, []string{root}},
		{"Open of an existing file", func(o *boltstore.Options) (*boltstore.Store, error) {
			return boltstore.Open(filepath.Join(root, "other.db"), o)
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var synced []string
			o := &boltstore.Options{}
			boltstore.RecordDirSyncs(o, &synced)
			s, err := tc.open(o)
			require.NoError(t, err)
			require.NoError(t, s.Close())
			require.Equal(t, tc.want, synced)
		})
	}
	_, err = os.Stat(filepath.Join(oldLayout, "issued.migrated"))
	require.NoError(t, err)
}
