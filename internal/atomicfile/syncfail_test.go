package atomicfile

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestWriteReportsDirSyncFailure: a key written whose directory entry may not last a
// power loss is reported, not taken for kept; the content is in place all the same.
func TestWriteReportsDirSyncFailure(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "ca.key")
	failed := errors.New("sync failed")
	var synced []string
	syncDir = func(d string) error { synced = append(synced, d); return failed }
	t.Cleanup(func() { syncDir = SyncDir })

	err := Write(p, []byte("key"), 0o600)
	require.ErrorIs(t, err, failed)
	require.Contains(t, err.Error(), "ca.key")
	require.Equal(t, []string{dir}, synced, "the file's own directory is synced")
	b, rerr := os.ReadFile(p)
	require.NoError(t, rerr)
	require.Equal(t, "key", string(b))
}
