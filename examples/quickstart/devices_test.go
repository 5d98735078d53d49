package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/crp"
)

// TestDeviceBookTornLine: a line cut by a crash mid-write, and what follows it, are
// dropped on open, and the next device is appended after the last whole line.
func TestDeviceBookTornLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mdm-devices.jsonl")
	require.NoError(t, os.WriteFile(path, []byte(`{"device":"d1","user":"u1"}`+"\n"+`{"device":"d2","user":"u2"}`+"\n"+`{"device":"d3","us`), 0o600))
	reg := &crp.MemoryRegistry{}
	b, err := openDeviceBook(path, reg)
	require.NoError(t, err)
	for dev, user := range map[string]string{"d1": "u1", "d2": "u2"} {
		d, err := reg.LookupDevice(context.Background(), dev)
		require.NoError(t, err)
		require.Equal(t, user, d.UserID)
	}
	_, err = reg.LookupDevice(context.Background(), "d3")
	require.ErrorIs(t, err, crp.ErrNotFound)

	require.NoError(t, b.enroll("d3", "u3"))
	require.NoError(t, b.enroll("d3", "u3"), "again, same user")
	require.ErrorIs(t, b.enroll("d1", "u3"), errDeviceTaken)
	require.NoError(t, b.Close())
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, `{"device":"d1","user":"u1"}`+"\n"+`{"device":"d2","user":"u2"}`+"\n"+`{"device":"d3","user":"u3"}`+"\n", string(data))
}

// TestDeviceBookDamagedLineKept: a whole line that does not parse, followed by good
// ones, is damage, not a torn write: the book refuses to open and the file keeps every
// line (before, the line and all after it were cut).
func TestDeviceBookDamagedLineKept(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mdm-devices.jsonl")
	content := `{"device":"d1","user":"u1"}` + "\n" + `garbage` + "\n" + `{"device":"d2","user":"u2"}` + "\n"
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
	_, err := openDeviceBook(path, &crp.MemoryRegistry{})
	require.ErrorContains(t, err, "is not a device")
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, content, string(data))
}

// TestDeviceNamesMustBeUTF8: names that are not UTF-8 are refused, by the MDM endpoint
// (400) and by the device book. Before, "dup\xff" and "dup\uFFFD" were two devices in
// memory but one in the book, where JSON wrote U+FFFD for the invalid byte: after a
// restart, the user who enrolled the first owned the second user's device.
func TestDeviceNamesMustBeUTF8(t *testing.T) {
	b, err := openDeviceBook(filepath.Join(t.TempDir(), "mdm-devices.jsonl"), &crp.MemoryRegistry{})
	require.NoError(t, err)
	defer b.Close()
	require.NoError(t, b.enroll("dup\uFFFD", "alice@example.com"))
	require.ErrorIs(t, b.enroll("dup\xff", "bob@example.com"), errBadName)
	require.ErrorIs(t, b.enroll("laptop", "bob\xff@example.com"), errBadName)

	m := &mdm{}
	for _, q := range []string{"user=bob@example.com&device=dup%FF", "user=bob%FF@example.com&device=x", "user=bob@example.com&device=a%0Ab"} {
		rec := httptest.NewRecorder()
		m.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/mdm/profile?"+q, nil))
		require.Equal(t, http.StatusBadRequest, rec.Code, q)
	}
}

// TestProfileNamesTooLong: a user or device name over 256 bytes is refused with an
// answer that says so. Before, a 5,000-character device name was answered "user and
// device are required", as if it were missing.
func TestProfileNamesTooLong(t *testing.T) {
	m := &mdm{}
	long := strings.Repeat("a", 257)
	for _, q := range []string{"user=alice@example.com&device=" + long, "user=" + long + "&device=laptop"} {
		rec := httptest.NewRecorder()
		m.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/mdm/profile?"+q, nil))
		require.Equal(t, http.StatusBadRequest, rec.Code)
		require.Contains(t, rec.Body.String(), "256 bytes at most", q[:40])
	}
}
