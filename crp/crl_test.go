package crp_test

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/scep"
	"github.com/stretchr/testify/require"
)

func getCRL(t *testing.T, url string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, body
}

// TestCRLOverHTTP: the CRL is signed by the CA from the store's revocations, served as
// DER with its media type and caching headers, cached between revocations, and
// signed afresh (with a larger CRL number) after one.
func TestCRLOverHTTP(t *testing.T) {
	env := newEnv(t)
	store := &crp.MemoryRevocations{}
	pub := &crp.CRLPublisher{CA: env.CA, Revocations: store, Validity: 48 * time.Hour}
	ts := httptest.NewServer(pub)
	defer ts.Close()

	resp, der := getCRL(t, ts.URL, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "application/pkix-crl", resp.Header.Get("Content-Type"))
	require.Regexp(t, `^public, no-transform, max-age=(3[0-5][0-9]{2}|3600)$`, resp.Header.Get("Cache-Control"))
	require.NotEmpty(t, resp.Header.Get("ETag"))
	require.NotEmpty(t, resp.Header.Get("Last-Modified"))
	crl, err := x509.ParseRevocationList(der)
	require.NoError(t, err)
	require.NoError(t, crl.CheckSignatureFrom(env.CA.Certificate))
	require.Empty(t, crl.RevokedCertificateEntries)
	// Valid for Validity from its signing, and from CRLBackdate before it: a relying
	// party whose clock is a few minutes behind does not take it for not yet valid.
	require.InDelta(t, (48*time.Hour + crp.CRLBackdate).Seconds(), crl.NextUpdate.Sub(crl.ThisUpdate).Seconds(), 1)
	require.True(t, crl.ThisUpdate.Before(time.Now().Add(-crp.CRLBackdate+2*time.Second)), "thisUpdate %v is backdated", crl.ThisUpdate)
	exp, err := http.ParseTime(resp.Header.Get("Expires"))
	require.NoError(t, err)
	require.True(t, exp.Equal(crl.NextUpdate))

	_, again := getCRL(t, ts.URL, nil)
	require.Equal(t, der, again, "the same CRL until something changes")
	resp, body := getCRL(t, ts.URL, map[string]string{"If-None-Match": resp.Header.Get("ETag")})
	require.Equal(t, http.StatusNotModified, resp.StatusCode)
	require.Empty(t, body)

	serial := big.NewInt(0x5ca1ab1e)
	_, err = pub.Revoke(context.Background(), &crp.Revocation{Serial: serial, Reason: 1, RevokedAt: time.Now(), By: "test"})
	require.NoError(t, err)
	resp, der = getCRL(t, ts.URL, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	next, err := x509.ParseRevocationList(der)
	require.NoError(t, err)
	require.NoError(t, next.CheckSignatureFrom(env.CA.Certificate))
	require.Len(t, next.RevokedCertificateEntries, 1)
	require.Zero(t, next.RevokedCertificateEntries[0].SerialNumber.Cmp(serial))
	require.Equal(t, 1, next.RevokedCertificateEntries[0].ReasonCode)
	require.Equal(t, 1, next.Number.Cmp(crl.Number), "the CRL number grows")

	_, err = pub.Revoke(context.Background(), &crp.Revocation{Serial: big.NewInt(-1), Reason: 1, RevokedAt: time.Now()})
	require.Error(t, err)
	post, err := http.Post(ts.URL, "text/plain", strings.NewReader("x"))
	require.NoError(t, err)
	post.Body.Close()
	require.Equal(t, http.StatusMethodNotAllowed, post.StatusCode)
}

// TestCRLRevalidatedByDate: revocations within one second give CRLs with the same
// thisUpdate; a client revalidating an earlier one by If-Modified-Since gets the
// later one, not 304: the later ones carry no Last-Modified and are revalidated by
// their ETag. Both CRLs had the same Last-Modified, and the 304 came with an hour's
// max-age. A Last-Modified bumped a second per CRL instead went back after a restart,
// which the second half checks.
func TestCRLRevalidatedByDate(t *testing.T) {
	env := newEnv(t)
	now := time.Now().Truncate(time.Second).Add(100 * time.Millisecond)
	revs := &crp.MemoryRevocations{}
	clock := func() time.Time { return now }
	pub := &crp.CRLPublisher{CA: env.CA, Revocations: revs, Validity: 48 * time.Hour, Now: clock}
	ts := httptest.NewServer(pub)
	defer ts.Close()
	var first string
	for i, serial := range []int64{0xa, 0xb, 0xc, 0xd} {
		_, err := pub.Revoke(context.Background(), &crp.Revocation{Serial: big.NewInt(serial), Reason: 1, RevokedAt: now, By: "test"})
		require.NoError(t, err)
		now = now.Add(200 * time.Millisecond) // all four within one second
		hdr := map[string]string{}
		if first != "" {
			hdr["If-Modified-Since"] = first
		}
		resp, der := getCRL(t, ts.URL, hdr)
		require.Equal(t, http.StatusOK, resp.StatusCode, "revocation %d: the CRL changed", i+1)
		crl, err := x509.ParseRevocationList(der)
		require.NoError(t, err)
		require.Len(t, crl.RevokedCertificateEntries, i+1)
		if i == 0 {
			first = resp.Header.Get("Last-Modified")
			require.NotEmpty(t, first)
			resp, _ = getCRL(t, ts.URL, map[string]string{"If-Modified-Since": first})
			require.Equal(t, http.StatusNotModified, resp.StatusCode, "unchanged since")
		} else {
			require.Empty(t, resp.Header.Get("Last-Modified"), "revocation %d: the date of the CRL before", i+1)
		}
		resp, _ = getCRL(t, ts.URL, map[string]string{"If-None-Match": resp.Header.Get("ETag")})
		require.Equal(t, http.StatusNotModified, resp.StatusCode, "revalidated by its ETag")
	}
	// A restart (or another gateway sharing the store) a second later: its CRL's date
	// is later than any the client holds.
	now = now.Add(time.Second)
	pub2 := &crp.CRLPublisher{CA: env.CA, Revocations: revs, Validity: 48 * time.Hour, Now: clock}
	ts2 := httptest.NewServer(pub2)
	defer ts2.Close()
	_, err := pub2.Revoke(context.Background(), &crp.Revocation{Serial: big.NewInt(0xe), Reason: 1, RevokedAt: now, By: "test"})
	require.NoError(t, err)
	resp, der := getCRL(t, ts2.URL, map[string]string{"If-Modified-Since": first})
	require.Equal(t, http.StatusOK, resp.StatusCode)
	crl, err := x509.ParseRevocationList(der)
	require.NoError(t, err)
	require.Len(t, crl.RevokedCertificateEntries, 5)
}

type brokenRevocations struct{ crp.MemoryRevocations }

func (*brokenRevocations) RevokedSince(context.Context, time.Time) ([]*crp.Revocation, error) {
	return nil, errors.New("pq: connection refused to 10.1.2.3:5432")
}

// TestCRLStoreDown: a store that cannot be read gives 503 without its error text,
// and GetCRL a CertRep FAILURE.
func TestCRLStoreDown(t *testing.T) {
	env := newEnv(t)
	pub := &crp.CRLPublisher{CA: env.CA, Revocations: &brokenRevocations{}}
	ts := httptest.NewServer(pub)
	defer ts.Close()
	resp, body := getCRL(t, ts.URL, nil)
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	require.NotContains(t, string(body), "10.1.2.3")
	_, err := pub.CRL(context.Background())
	require.ErrorIs(t, err, crp.ErrUnavailable)
}

// TestGetCRLFromStore: SCEP's GetCRL answers with the publisher's CRL, which lists a
// certificate revoked in the store.
func TestGetCRLFromStore(t *testing.T) {
	env := newEnv(t)
	pub := &crp.CRLPublisher{CA: env.CA, Revocations: &crp.MemoryRevocations{}}
	env.RP.CRL = pub.CRL
	ts := httptest.NewServer(env.Server)
	defer ts.Close()
	fp := sha256.Sum256(env.CA.Certificate.Raw)
	c := &scep.Client{URL: ts.URL, CAFingerprint: fp[:]}
	ctx := context.Background()
	ch := mint(t, env, "alice@example.com", "alice-laptop")
	cert, err := c.Enroll(ctx, csr(t, deviceKey, "alice@example.com", ch).Raw, deviceKey)
	require.NoError(t, err)

	_, err = pub.Revoke(ctx, &crp.Revocation{Serial: cert.SerialNumber, Reason: 4, RevokedAt: time.Now(), By: "test"})
	require.NoError(t, err)
	crl, err := c.GetCRL(ctx, env.CA.Certificate.RawSubject, cert.SerialNumber, cert, deviceKey)
	require.NoError(t, err)
	require.NoError(t, crl.CheckSignatureFrom(env.CA.Certificate))
	require.Len(t, crl.RevokedCertificateEntries, 1)
	require.Zero(t, crl.RevokedCertificateEntries[0].SerialNumber.Cmp(cert.SerialNumber))
}

// TestCRLNumberAcrossRestart: the CRL number grows from one CRL to the next (RFC 5280
// section 5.2.3) also when many CRLs were signed in one second before a restart: a
// publisher that remembers nothing (a new process) signs a larger number than the last.
func TestCRLNumberAcrossRestart(t *testing.T) {
	env := newEnv(t)
	store := &crp.MemoryRevocations{}
	ctx := context.Background()
	clock := time.Now()
	now := func() time.Time { return clock }
	pub := &crp.CRLPublisher{CA: env.CA, Revocations: store, Now: now}
	var last *big.Int
	for i := range 40 {
		_, err := pub.Revoke(ctx, &crp.Revocation{Serial: big.NewInt(int64(1000 + i)), Reason: 1, RevokedAt: clock, By: "test"})
		require.NoError(t, err)
		der, err := pub.CRL(ctx)
		require.NoError(t, err)
		crl, err := x509.ParseRevocationList(der)
		require.NoError(t, err)
		if last != nil {
			require.Equal(t, 1, crl.Number.Cmp(last), "CRL %d", i)
		}
		last = crl.Number
	}
	clock = clock.Add(time.Second) // the restart takes a second
	restarted := &crp.CRLPublisher{CA: env.CA, Revocations: store, Now: now}
	der, err := restarted.CRL(ctx)
	require.NoError(t, err)
	crl, err := x509.ParseRevocationList(der)
	require.NoError(t, err)
	require.Len(t, crl.RevokedCertificateEntries, 40)
	require.Equal(t, 1, crl.Number.Cmp(last), "the CRL number went back after a restart: %v after %v", crl.Number, last)
}

// failingRevocations fails RevokedSince while down is set.
type failingRevocations struct {
	crp.MemoryRevocations
	down atomic.Bool
}

func (f *failingRevocations) RevokedSince(ctx context.Context, since time.Time) ([]*crp.Revocation, error) {
	if f.down.Load() {
		return nil, errors.New("store unreachable")
	}
	return f.MemoryRevocations.RevokedSince(ctx, since)
}

// TestCRLDuringStoreOutage: when the store cannot be read at a refresh, the last CRL
// (still valid, and lacking nothing revoked through this publisher) is served rather
// than 503; after a revocation here, it is not (it would hide that one).
func TestCRLDuringStoreOutage(t *testing.T) {
	env := newEnv(t)
	store := &failingRevocations{}
	clock := time.Now()
	pub := &crp.CRLPublisher{CA: env.CA, Revocations: store, Refresh: time.Minute, Now: func() time.Time { return clock }}
	ctx := context.Background()
	first, err := pub.CRL(ctx)
	require.NoError(t, err)
	store.down.Store(true)
	clock = clock.Add(2 * time.Minute) // past Refresh: a new CRL is due
	got, err := pub.CRL(ctx)
	require.NoError(t, err, "the last CRL is still valid")
	require.Equal(t, first, got)

	store.down.Store(false)
	_, err = pub.Revoke(ctx, &crp.Revocation{Serial: big.NewInt(77), Reason: 1, RevokedAt: clock, By: "test"})
	require.NoError(t, err)
	store.down.Store(true)
	_, err = pub.CRL(ctx)
	require.ErrorIs(t, err, crp.ErrUnavailable, "the last CRL lacks a revocation made here")
	clock = clock.Add(25 * time.Hour)
	store.down.Store(false)
	_, err = pub.CRL(ctx)
	require.NoError(t, err)
}

// TestCRLForRelyingPartyBehind: OpenSSL, as a relying party whose clock is half a
// minute behind, accepts the CRL: a good certificate verifies with -crl_check and a
// revoked one is reported revoked. Before, thisUpdate was the signing second, and such
// a relying party refused every certificate ("CRL is not yet valid").
func TestCRLForRelyingPartyBehind(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("openssl is needed (.ci/run installs it)")
		}
		t.Skip("no openssl")
	}
	env := newEnv(t)
	ctx := context.Background()
	var certs []*x509.Certificate
	for _, tid := range []string{"good", "revoked"} {
		ch := mint(t, env, "alice@example.com", "alice-laptop")
		res, err := env.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: tid, CSR: csr(t, deviceKey, "alice@example.com", ch), Challenge: ch})
		require.NoError(t, err)
		certs = append(certs, res.Certificate)
	}
	store := &crp.MemoryRevocations{}
	pub := &crp.CRLPublisher{CA: env.CA, Revocations: store}
	_, err = pub.Revoke(ctx, &crp.Revocation{Serial: certs[1].SerialNumber, Reason: 1, RevokedAt: time.Now()})
	require.NoError(t, err)
	ts := httptest.NewServer(pub)
	defer ts.Close()
	_, der := getCRL(t, ts.URL, nil)

	dir := t.TempDir()
	write := func(name, typ string, b []byte) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600))
		return p
	}
	ca := write("ca.pem", "CERTIFICATE", env.CA.Certificate.Raw)
	crl := write("crl.pem", "X509 CRL", der)
	at := strconv.FormatInt(time.Now().Add(-30*time.Second).Unix(), 10)
	verify := func(c *x509.Certificate) string {
		out, _ := exec.Command(openssl, "verify", "-attime", at, "-crl_check", "-CAfile", ca, "-CRLfile", crl,
			write("c.pem", "CERTIFICATE", c.Raw)).CombinedOutput()
		return string(out)
	}
	require.Contains(t, verify(certs[0]), ": OK")
	require.Contains(t, verify(certs[1]), "certificate revoked")
}
