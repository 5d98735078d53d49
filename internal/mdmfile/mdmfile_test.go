package mdmfile

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/scepkit/scepkit/challenge"
	"github.com/stretchr/testify/require"
)

// TestLoadDirectory: a directory file listing a user id or a device id twice, or
// holding anything after its JSON document, is refused (before, the later entry
// replaced the earlier one, and what followed the document was ignored: a second
// document, or a stray bracket).
func TestLoadDirectory(t *testing.T) {
	cases := []struct {
		file string
		want error // nil: loads
	}{
		{"directory.json", nil},
		{"directory-duplicate-user.json", ErrDuplicate},
		{"directory-duplicate-device.json", ErrDuplicate},
		{"directory-second-document.json", ErrTrailingData},
		{"directory-trailing-bracket.json", ErrTrailingData},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			d, err := LoadDirectory(filepath.Join("testdata", tc.file))
			if tc.want != nil {
				require.ErrorIs(t, err, tc.want)
				require.Contains(t, err.Error(), tc.file, "the error names the file")
				require.Nil(t, d)
				return
			}
			require.NoError(t, err)
			u, err := d.LookupUser(context.Background(), "alice@example.com")
			require.NoError(t, err)
			require.Equal(t, "alice@example.com", u.UserPrincipalName)
			require.False(t, u.Disabled)
			dev, err := d.LookupDevice(context.Background(), "bob-phone")
			require.NoError(t, err)
			require.Equal(t, "bob@example.com", dev.UserID)
		})
	}
}

// TestLoadKeySetFiles: JWKS files with two keys load; a kid twice and anything after
// the document are refused.
func TestLoadKeySetFiles(t *testing.T) {
	cases := []struct {
		file string
		kids []string // nil: refused
	}{
		{"jwks-two-keys.json", []string{"2u9Frxiy", "6shXFmBV"}},
		{"jwks-duplicate-kid.json", nil},
		{"jwks-second-document.json", nil},
		{"jwks-trailing-comma.json", nil},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			ks, err := LoadKeySet(context.Background(), filepath.Join("testdata", tc.file))
			if tc.kids == nil {
				require.ErrorIs(t, err, challenge.ErrConfig)
				require.Nil(t, ks)
				return
			}
			require.NoError(t, err)
			kids := ks.KeyIDs()
			slices.Sort(kids)
			require.Equal(t, tc.kids, kids)
		})
	}
}

// padded is the JWKS of testdata/jwks-two-keys.json followed by white space to n
// bytes: a valid document of exactly n bytes.
func padded(t *testing.T, n int) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "jwks-two-keys.json"))
	require.NoError(t, err)
	require.Less(t, len(b), n)
	return append(b, bytes.Repeat([]byte(" "), n-len(b))...)
}

// TestSizeLimits: a JWKS (file or loopback URL) or a directory file over its limit is
// refused with ErrTooLarge, one at the limit loads (before, the file was read whole
// whatever its size, and an answer over 1 MiB was cut there without a word).
func TestSizeLimits(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		size int
		want error
	}{
		{"at the limit", MaxJWKSSize, nil},
		{"one byte over", MaxJWKSSize + 1, ErrTooLarge},
		{"far over", 8 * MaxJWKSSize, ErrTooLarge},
	} {
		doc := padded(t, tc.size)
		t.Run("file "+tc.name, func(t *testing.T) {
			path := filepath.Join(dir, "jwks.json")
			require.NoError(t, os.WriteFile(path, doc, 0o600))
			ks, err := LoadKeySet(context.Background(), path)
			if tc.want != nil {
				require.ErrorIs(t, err, tc.want)
				require.Contains(t, err.Error(), path)
				require.Nil(t, ks)
				return
			}
			require.NoError(t, err)
			require.Len(t, ks.KeyIDs(), 2)
		})
		t.Run("url "+tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(doc) }))
			defer srv.Close()
			ks, err := LoadKeySet(context.Background(), srv.URL+"/jwks")
			if tc.want != nil {
				require.ErrorIs(t, err, tc.want)
				require.Nil(t, ks)
				return
			}
			require.NoError(t, err)
			require.Len(t, ks.KeyIDs(), 2)
		})
	}

	t.Run("directory one byte over", func(t *testing.T) {
		b, err := os.ReadFile(filepath.Join("testdata", "directory.json"))
		require.NoError(t, err)
		path := filepath.Join(dir, "directory.json")
		require.NoError(t, os.WriteFile(path, append(b, bytes.Repeat([]byte("\n"), MaxDirectorySize+1-len(b))...), 0o600))
		d, err := LoadDirectory(path)
		require.ErrorIs(t, err, ErrTooLarge)
		require.Nil(t, d)
		require.NoError(t, os.Truncate(path, MaxDirectorySize))
		_, err = LoadDirectory(path)
		require.NoError(t, err, "at the limit")
	})
}

// TestLoadKeySetRedactsPassword: a JWKS URL's password never reaches an error (which
// cmd/scepkit prints at start). Before, "JWKS http://mdm:S3CRETPW@...: HTTP 401".
func TestLoadKeySetRedactsPassword(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusUnauthorized)
	}))
	defer srv.Close()
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	for _, src := range []string{
		strings.Replace(srv.URL, "http://", "http://mdm:S3CRETPW@", 1) + "/jwks",    // answers 401
		strings.Replace(closed.URL, "http://", "http://mdm:S3CRETPW@", 1) + "/jwks", // refuses the connection
		"http://mdm:S3CRETPW@127.0.0.1:99999/jwks",                                  // does not parse
		srv.URL + "/jwks?api_key=S3CRETPW",                                          // a key in the query
	} {
		_, err := LoadKeySet(context.Background(), src)
		require.Error(t, err)
		require.NotContains(t, err.Error(), "S3CRETPW", src)
	}
}

func TestKeySync(t *testing.T) {
	add := func(ks *challenge.KeySet) string {
		pub, _, err := ed25519.GenerateKey(rand.Reader)
		require.NoError(t, err)
		kid, err := ks.AddKey(pub)
		require.NoError(t, err)
		return kid
	}
	dst, src := challenge.NewKeySet(), challenge.NewKeySet()
	a := add(src)
	changed := dst.Replace(src)
	require.True(t, changed)
	require.Equal(t, []string{a}, dst.KeyIDs())
	changed = dst.Replace(src)
	require.False(t, changed, "same keys: no change")

	// Rotation: b added, a removed.
	src2 := challenge.NewKeySet()
	b := add(src2)
	changed = dst.Replace(src2)
	require.True(t, changed)
	require.Equal(t, []string{b}, dst.KeyIDs())
}

// A JWKS key pinned to PS256 must stay pinned after a rotation copies it: the sync
// used Add, which dropped the pin, and the key then accepted RS256 as well.
func TestKeySyncKeepsAlgorithmPin(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	src, dst := challenge.NewKeySet(), challenge.NewKeySet()
	require.NoError(t, src.AddWithAlgorithm("mdm-1", challenge.PS256, key.Public()))
	dst.Replace(src)
	alg, ok := dst.Algorithm("mdm-1")
	require.True(t, ok)
	require.Equal(t, challenge.PS256, alg)

	ctx := context.Background()
	v := &challenge.Verifier{Keys: dst, Issuer: "mdm", Audience: "gw", Replay: &challenge.MemoryReplayStore{}}
	mint := func(alg string) string {
		ch, _, err := (&challenge.Issuer{Name: "mdm", KeyID: "mdm-1", Key: key, Algorithm: alg}).Issue(
			challenge.Request{UserID: "alice@example.com", Audience: "gw"})
		require.NoError(t, err)
		return ch
	}
	_, err = v.Check(ctx, mint(challenge.RS256))
	require.ErrorIs(t, err, challenge.ErrAlgorithm, "RS256 accepted by a PS256-pinned key")
	_, err = v.Check(ctx, mint(challenge.PS256))
	require.NoError(t, err)

	// Unchanged keys and pins are no change; a changed pin is one.
	changed := dst.Replace(src)
	require.False(t, changed)
	src2 := challenge.NewKeySet()
	require.NoError(t, src2.AddWithAlgorithm("mdm-1", challenge.RS256, key.Public()))
	changed = dst.Replace(src2)
	require.True(t, changed)
}

// A kid whose key or pin changes is swapped in one step: the sync removed the old
// entry and then added the new one, and a challenge verified in between failed with
// "key unknown" although the MDM published that kid all along.
func TestKeySyncNoGap(t *testing.T) {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	pinned, free := challenge.NewKeySet(), challenge.NewKeySet()
	require.NoError(t, pinned.AddWithAlgorithm("mdm-1", challenge.EdDSA, pub))
	require.NoError(t, free.Add("mdm-1", pub))
	dst := challenge.NewKeySet()
	require.True(t, dst.Replace(free))

	stop := make(chan struct{})
	missed := make(chan int)
	go func() {
		n := 0
		for {
			select {
			case <-stop:
				missed <- n
				return
			default:
			}
			if _, ok := dst.Lookup("mdm-1"); !ok {
				n++
			}
		}
	}()
	for i := 0; i < 20000; i++ {
		src := pinned
		if i%2 == 1 {
			src = free
		}
		require.True(t, dst.Replace(src), "the pin changes every round")
		if i%64 == 0 {
			runtime.Gosched()
		}
	}
	close(stop)
	require.Zero(t, <-missed, "lookups that found no key for a kid published throughout")
}

// TestLoadKeySetUnreachable: only what waiting may mend is ErrUnreachable (a gateway
// exits to be restarted on it, and examples/gateway retries it); a setting or a
// document to mend is not. Every error from a URL counted as retryable, so a JWKS that
// does not parse had systemd restart the gateway every five seconds.
func TestLoadKeySetUnreachable(t *testing.T) {
	good, err := os.ReadFile(filepath.Join("testdata", "jwks-two-keys.json"))
	require.NoError(t, err)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			w.Write(good)
		case "/busy":
			http.Error(w, "starting", http.StatusServiceUnavailable)
		case "/slow-down":
			http.Error(w, "later", http.StatusTooManyRequests)
		case "/broken":
			w.Write([]byte(`{"keys": [`))
		case "/huge":
			w.Write(bytes.Repeat([]byte(" "), MaxJWKSSize+1))
		case "/away":
			http.Redirect(w, r, "http://mdm.example.com/jwks", http.StatusFound)
		case "/cut":
			w.Header().Set("Content-Length", "1000")
			w.Write(good[:10])
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	selfSigned := httptest.NewTLSServer(http.NotFoundHandler()) // a certificate the system does not trust
	defer selfSigned.Close()
	cases := []struct {
		src         string
		unreachable bool
	}{
		{selfSigned.URL + "/jwks", false},
		{closed.URL + "/jwks", true},
		{srv.URL + "/busy", true},
		{srv.URL + "/slow-down", true},
		{srv.URL + "/cut", true},
		{srv.URL + "/missing", false},
		{srv.URL + "/broken", false},
		{srv.URL + "/huge", false},
		{srv.URL + "/away", false},
		{"http://127.0.0.1:99999/jwks", false},
		{"http://mdm.example.com/jwks", false},
		{filepath.Join(t.TempDir(), "absent.json"), false},
	}
	for _, tc := range cases {
		_, err := LoadKeySet(context.Background(), tc.src)
		require.Error(t, err, tc.src)
		require.Equal(t, tc.unreachable, errors.Is(err, ErrUnreachable), "%s: %v", tc.src, err)
	}
	_, err = LoadKeySet(context.Background(), strings.ToUpper(srv.URL[:4])+srv.URL[4:]+"/ok")
	require.NoError(t, err, "an upper-case scheme is a URL too")

	for src, want := range map[string]bool{
		"https://mdm/jwks": true, "http://127.0.0.1/jwks": true, "HTTPS://mdm/jwks": true,
		"/etc/scepkit/jwks.json": false, "jwks.json": false, "ftp://mdm/jwks": false, "https:jwks": false,
	} {
		require.Equal(t, want, IsURL(src), src)
	}
}
