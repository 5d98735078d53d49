package scep

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A server the client does not control, or anyone answering for it over plain HTTP,
// chooses what GetCACaps lists, what GetCACert returns, where it redirects, and what a
// CertRep carries. Each case below was accepted before, and is refused or bounded now.

// TestClientCapsNoDowngrade: GetCACaps is not signed. A pinned client offered caps
// without AES or DES3 used single DES (a 56-bit key protecting the challenge), and
// caps listing only SHA-1 made it sign with SHA-1. Now it uses 3DES and SHA-256 unless
// told otherwise (Client.Cipher, Client.Digest).
func TestClientCapsNoDowngrade(t *testing.T) {
	pki := newTestPKI(t)
	d := newDevice(t)
	for _, c := range []struct {
		caps   string
		cipher Cipher
		digest crypto.Hash
	}{
		{"POSTPKIOperation", DES3CBC, crypto.SHA256},
		{"SHA-1\nPOSTPKIOperation", DES3CBC, crypto.SHA256},
		{"GetNextCACert\nRenewal", DES3CBC, crypto.SHA256},
		{"DES3\nSHA-512\nPOSTPKIOperation", DES3CBC, crypto.SHA512},
		{"AES\nSHA-256\nPOSTPKIOperation", AES256CBC, crypto.SHA256},
	} {
		t.Run(strings.ReplaceAll(c.caps, "\n", " "), func(t *testing.T) {
			var mu sync.Mutex
			var got *PKIMessage
			s := pki.server(true) // it could read single DES and SHA-1, were they sent
			s.Responder = ResponderFunc(func(ctx context.Context, req *Request) (*Response, error) {
				mu.Lock()
				got = req.Message
				mu.Unlock()
				return pki.respond(ctx, req)
			})
			require.NoError(t, s.Validate())
			ts := httptestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Query().Get("operation") == "GetCACaps" {
					io.WriteString(w, c.caps)
					return
				}
				s.ServeHTTP(w, r)
			}))
			fp := sha256.Sum256(pki.ca.Raw)
			cl := &Client{URL: ts.URL, CAFingerprint: fp[:]}
			_, err := cl.Enroll(context.Background(), newCSR(t, d.key, "device", "secret"), d.key)
			require.NoError(t, err)
			mu.Lock()
			defer mu.Unlock()
			require.Equal(t, c.cipher, got.Cipher)
			require.Equal(t, c.digest, got.Digest)
		})
	}
}

// caCertServer answers GetCACert with certs and GetCACaps with AES.
func caCertServer(t *testing.T, certs []*x509.Certificate) *Client {
	der, err := DegenerateCertificates(certs)
	require.NoError(t, err)
	ts := httptestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Query().Get("operation") {
		case "GetCACaps":
			io.WriteString(w, "AES\nSHA-256\nPOSTPKIOperation\n")
		case "GetCACert":
			w.Header().Set("Content-Type", "application/x-x509-ca-ra-cert")
			w.Write(der)
		default:
			http.Error(w, "no", http.StatusNotFound)
		}
	}))
	fp := sha256.Sum256(certs[0].Raw)
	return &Client{URL: ts.URL, CAFingerprint: fp[:]}
}

// TestClientGetCACertBounded: the certificates GetCACert returns are few, with keys the
// client can afford. Before, a server holding the pinned CA's key sent a chain in
// reverse order and the client's pinning re-checked every pair in every round (100
// certificates: 9 s, 400: minutes, whatever the context said); a 65536-bit RSA CA was
// accepted and every request encrypted to it.
func TestClientGetCACertBounded(t *testing.T) {
	pki := newTestPKI(t)
	now := time.Now()
	chain := func(n int) []*x509.Certificate {
		// certs[0] is the pinned CA; each next one is signed by the previous, and
		// they are sent last first.
		out := []*x509.Certificate{pki.ca}
		parent := pki.ca
		for i := 0; i < n; i++ {
			c := mkCert(t, &x509.Certificate{SerialNumber: big.NewInt(int64(1000 + i)),
				Subject:   pkix.Name{CommonName: fmt.Sprintf("intermediate %d", i)},
				NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
				KeyUsage: x509.KeyUsageCertSign}, parent, rsaKeys[0].Public(), rsaKeys[0])
			out = append(out, c)
			parent = c
		}
		rev := []*x509.Certificate{out[0]}
		for i := len(out) - 1; i > 0; i-- {
			rev = append(rev, out[i])
		}
		return rev
	}

	t.Run("a chain in reverse order is kept whole", func(t *testing.T) {
		certs, err := caCertServer(t, chain(MaxCACerts-1)).GetCACert(context.Background())
		require.NoError(t, err)
		require.Len(t, certs, MaxCACerts)
	})
	t.Run("more certificates than MaxCACerts", func(t *testing.T) {
		_, err := caCertServer(t, chain(MaxCACerts)).GetCACert(context.Background())
		require.ErrorIs(t, err, ErrBadReply)
	})
	t.Run("an RSA key over MaxRSABits", func(t *testing.T) {
		huge := &rsa.PublicKey{N: new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 16384), big.NewInt(1)), E: 65537}
		big := mkCert(t, &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "huge RA"},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), KeyUsage: x509.KeyUsageKeyEncipherment},
			pki.ca, huge, rsaKeys[0])
		_, err := caCertServer(t, []*x509.Certificate{pki.ca, big}).GetCACert(context.Background())
		require.ErrorIs(t, err, ErrBadReply)
		require.ErrorIs(t, err, ErrUnsupportedAlgorithm)
	})
}

// TestClientRedirectStaysOnServer: the Client follows a redirect only on the same
// scheme and host, with its default HTTP client and with one of the caller's that has
// no redirect policy of its own. Before, a 307 on PKIOperation re-posted the request,
// with its encrypted challenge, to whichever host the answer named; a caller's
// HTTPClient still did.
func TestClientRedirectStaysOnServer(t *testing.T) {
	for _, c := range []struct {
		name   string
		client *http.Client
	}{
		{"default HTTP client", nil},
		{"HTTPClient without CheckRedirect", &http.Client{Timeout: 10 * time.Second}},
	} {
		t.Run(c.name, func(t *testing.T) {
			pki := newTestPKI(t)
			d := newDevice(t)
			ts, _ := pki.httpServer(t, false)
			var elsewhere int
			var mu sync.Mutex
			other := httptestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				elsewhere++
				mu.Unlock()
				http.Error(w, "no", http.StatusNotFound)
			}))
			// The other server on another host name for the same loopback address.
			otherURL := strings.Replace(other.URL, "127.0.0.1", "localhost", 1)
			front := httptestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				switch r.URL.Query().Get("operation") {
				case "PKIOperation":
					http.Redirect(w, r, otherURL+"/scep?"+r.URL.RawQuery, http.StatusTemporaryRedirect)
				default:
					http.Redirect(w, r, ts.URL+"?"+r.URL.RawQuery, http.StatusTemporaryRedirect) // same host, other port
				}
			}))
			fp := sha256.Sum256(pki.ca.Raw)
			cl := &Client{URL: front.URL, CAFingerprint: fp[:], HTTPClient: c.client}
			_, err := cl.GetCACert(context.Background())
			require.NoError(t, err, "the same host on another port (an http to https move, say) is followed")
			_, err = cl.Enroll(context.Background(), newCSR(t, d.key, "device", "secret"), d.key)
			require.ErrorIs(t, err, ErrBadReply)
			mu.Lock()
			defer mu.Unlock()
			require.Zero(t, elsewhere, "nothing sent to the other server")
			require.Zero(t, pki.issuedCount())
			if c.client != nil {
				require.Nil(t, c.client.CheckRedirect, "the caller's HTTPClient was changed")
			}
		})
	}
}

// TestClientBoundsResponseHeaders: the default HTTP client reads at most
// DefaultMaxResponseHeaderBytes of headers. MaxResponseBytes bounds only the body, and
// megabytes of headers were read whole.
func TestClientBoundsResponseHeaders(t *testing.T) {
	for _, c := range []struct {
		name    string
		headers int
		ok      bool
	}{
		{"a few headers", 1 << 10, true},
		{"a megabyte of headers", 1 << 20, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			ts := httptestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				line := strings.Repeat("a", 1000)
				for i := 0; i < c.headers/len(line); i++ {
					w.Header().Add(fmt.Sprintf("X-Filler-%d", i), line)
				}
				io.WriteString(w, "AES\n")
			}))
			caps, err := (&Client{URL: ts.URL}).GetCACaps(context.Background())
			if c.ok {
				require.NoError(t, err)
				require.True(t, caps.Has(CapAES))
				return
			}
			require.Error(t, err)
			require.Contains(t, err.Error(), "header")
		})
	}
}

// TestClientIssuedCertificateDates: a SUCCESS whose certificate for the device's key
// has expired is not an enrollment. One not valid yet is kept: the device's clock may
// be behind (no real-time clock, no time source yet), and its challenge is spent.
func TestClientIssuedCertificateDates(t *testing.T) {
	now := time.Now()
	for _, c := range []struct {
		name      string
		notBefore time.Time
		notAfter  time.Time
		want      string // in the error; empty: accepted
	}{
		{"expired", now.Add(-48 * time.Hour), now.Add(-24 * time.Hour), "expired"},
		{"valid in ten years (the device's clock is behind)", now.Add(10 * 365 * 24 * time.Hour), now.Add(20 * 365 * 24 * time.Hour), ""},
		{"valid within the clock skew", now.Add(ClockSkew / 2), now.Add(time.Hour), ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			pki := newTestPKI(t)
			d := newDevice(t)
			s := pki.server(false)
			s.Responder = ResponderFunc(func(_ context.Context, req *Request) (*Response, error) {
				cert := mkCert(t, &x509.Certificate{SerialNumber: big.NewInt(5), Subject: req.CSR.Subject,
					NotBefore: c.notBefore, NotAfter: c.notAfter}, pki.ca, req.CSR.PublicKey, pki.caKey)
				return &Response{Certificate: cert}, nil
			})
			require.NoError(t, s.Validate())
			ts := httptestServer(t, s)
			fp := sha256.Sum256(pki.ca.Raw)
			cert, err := (&Client{URL: ts.URL, CAFingerprint: fp[:]}).Enroll(context.Background(), newCSR(t, d.key, "device", "secret"), d.key)
			if c.want == "" {
				require.NoError(t, err)
				require.NotNil(t, cert)
				return
			}
			require.ErrorIs(t, err, ErrBadReply)
			require.Contains(t, err.Error(), c.want)
			require.Nil(t, cert)
		})
	}
}

// TestPeerValuesBoundedInErrors: a value the peer chose is quoted in an error at most
// maxQuoted bytes long. A 900 KB messageType, pkiStatus or failInfo, or an OID of
// 400,000 arcs, was copied whole into the client's error.
func TestPeerValuesBoundedInErrors(t *testing.T) {
	long := strings.Repeat("A", 900_000)
	_, err := ParseFailInfo(long)
	require.Error(t, err)
	require.Less(t, len(err.Error()), 200)
	oid := make([]int, 400_000)
	for i := range oid {
		oid[i] = 1
	}
	_, err = hashForDigestOID(oid, true)
	require.Error(t, err)
	require.Less(t, len(err.Error()), 200)
	require.True(t, errors.Is(err, ErrUnsupportedAlgorithm))
}

// TestClientNamesRolledOverCA: after a CA rollover the server's GetCACert no longer
// returns the previous CA, so the client cannot check a CRL or a certificate of that
// CA; it says so, instead of "not signed by the CA the request names".
func TestClientNamesRolledOverCA(t *testing.T) {
	pki := newTestPKI(t)
	d := newDevice(t)
	now := time.Now()
	prevTmpl := &x509.Certificate{SerialNumber: big.NewInt(90), Subject: pkix.Name{CommonName: "previous CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	prev := mkCert(t, prevTmpl, prevTmpl, rsaKeys[1].Public(), rsaKeys[1])
	old := mkCert(t, &x509.Certificate{SerialNumber: big.NewInt(91), Subject: pkix.Name{CommonName: "device"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)}, prev, d.key.Public(), rsaKeys[1])
	crl, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(1),
		ThisUpdate: now, NextUpdate: now.Add(time.Hour)}, prev, rsaKeys[1])
	require.NoError(t, err)
	s := pki.server(false)
	s.Responder = ResponderFunc(func(_ context.Context, req *Request) (*Response, error) {
		if req.MessageType == GetCRL {
			return &Response{CRL: crl}, nil
		}
		return &Response{Certificate: old}, nil
	})
	require.NoError(t, s.Validate())
	ts := httptestServer(t, s)
	fp := sha256.Sum256(pki.ca.Raw)
	cl := &Client{URL: ts.URL, CAFingerprint: fp[:]}
	_, err = cl.GetCRL(context.Background(), old.RawIssuer, old.SerialNumber, old, d.key)
	require.ErrorIs(t, err, ErrBadReply)
	require.Contains(t, err.Error(), "not among the CA certificates GetCACert returns")
	_, err = cl.GetCert(context.Background(), old.RawIssuer, old.SerialNumber, old, d.key)
	require.ErrorIs(t, err, ErrBadReply)
	require.Contains(t, err.Error(), "not among the CA certificates GetCACert returns")
}
