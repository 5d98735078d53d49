package intunetest

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scepkit/scepkit/crp/intune"
	"github.com/stretchr/testify/require"
)

// post sends body to the emulator as a service call with a valid token.
func post(t *testing.T, s *Server, path, apiVersion string, body []byte) *httptest.ResponseRecorder {
	t.Helper()
	s.mu.Lock()
	s.tokens["wire-token"] = s.IntuneScope()
	s.mu.Unlock()
	r := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	r.Header.Set("Authorization", "Bearer wire-token")
	r.Header.Set("api-version", apiVersion)
	r.Header.Set("client-request-id", "3f2504e0-4f89-41d3-9a0c-0305e82c3301")
	r.Header.Set("content-type", "application/json")
	w := httptest.NewRecorder()
	s.serve(w, r)
	return w
}

// The request bodies Microsoft's Java and C# libraries send are accepted; the
// forms the service refuses are refused.
func TestLibraryWireForms(t *testing.T) {
	const (
		validate = scepPath + "/ScepActions/validateRequest"
		success  = scepPath + "/ScepActions/successNotification"
		failure  = scepPath + "/ScepActions/failureNotification"
		download = pkiPath + "/CertificateAuthorityRequests/downloadRevocationRequests"
		upload   = pkiPath + "/CertificateAuthorityRequests/uploadRevocationResults"
	)
	for _, c := range []struct {
		file, path, version string
		status              int
		want                string // in the answer
	}{
		{"validate.json", validate, intune.ValidationAPIVersion, 200, `"code":"ChallengePasswordMissing"`},
		{"success-java.json", success, intune.ValidationAPIVersion, 200, `"code":"Success"`},
		{"success-csharp.json", success, intune.ValidationAPIVersion, 200, `"code":"Success"`},
		{"failure.json", failure, intune.ValidationAPIVersion, 200, `"code":"Success"`},
		{"download.json", download, intune.RevocationAPIVersion, 200, `"value":[]`},
		{"upload-java.json", upload, intune.RevocationAPIVersion, 200, `"value":true`},
		{"upload-csharp.json", upload, intune.RevocationAPIVersion, 200, `"value":true`},
		{"upload-number-refused.json", upload, intune.RevocationAPIVersion, 400, "not a JSON string"},
		{"upload-unknown-refused.json", upload, intune.RevocationAPIVersion, 400, "names no member"},
		{"success-extra-refused.json", success, intune.ValidationAPIVersion, 400, `unknown field \"certificateTemplate\"`},
		// The other service's api-version is refused.
		{"success-java.json", success, intune.RevocationAPIVersion, 400, "api-version"},
		{"upload-java.json", upload, intune.ValidationAPIVersion, 400, "api-version"},
	} {
		t.Run(c.file+" "+c.version, func(t *testing.T) {
			body, err := os.ReadFile(filepath.Join("testdata", c.file))
			require.NoError(t, err)
			s := NewServer()
			defer s.Close()
			w := post(t, s, c.path, c.version, body)
			require.Equal(t, c.status, w.Code, w.Body.String())
			require.Contains(t, w.Body.String(), c.want)
			if c.status == 200 {
				require.Empty(t, s.Violations())
			}
		})
	}
	// Both upload forms decode to the same results.
	s := NewServer()
	defer s.Close()
	for _, f := range []string{"upload-java.json", "upload-csharp.json"} {
		body, err := os.ReadFile(filepath.Join("testdata", f))
		require.NoError(t, err)
		require.Equal(t, 200, post(t, s, upload, intune.RevocationAPIVersion, body).Code)
	}
	r := s.RevocationResults()
	require.Len(t, r, 4)
	require.Equal(t, r[:2], r[2:])
	require.Equal(t, intune.ErrorCertificateNotFound, r[1].ErrorCode)
}

// tokenFor posts a client-assertion token request.
func tokenFor(t *testing.T, s *Server, assertion string) *httptest.ResponseRecorder {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {s.ClientID}, "scope": {s.IntuneScope()},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {assertion}}
	r := httptest.NewRequest(http.MethodPost, "/"+s.Tenant+"/oauth2/v2.0/token", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w := httptest.NewRecorder()
	s.serve(w, r)
	return w
}

func jwt(t *testing.T, s *Server, hdr map[string]string, sign func(digest []byte) []byte) string {
	t.Helper()
	h, _ := json.Marshal(hdr)
	now := time.Now().Unix()
	c, _ := json.Marshal(map[string]any{"aud": s.tokenURL(), "iss": s.ClientID, "sub": s.ClientID, "jti": "j1",
		"iat": now, "nbf": now, "exp": now + 600})
	in := b64url(h) + "." + b64url(c)
	d := sha256.Sum256([]byte(in))
	return in + "." + b64url(sign(d[:]))
}

func cert(t *testing.T, k crypto.Signer) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "app"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	require.NoError(t, err)
	c, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return c
}

// Client assertions: RS256 with x5t and PS256 with x5t#S256 pass, as Entra documents
// them; ES256 is refused, as Entra refuses it, and so is an algorithm without its
// thumbprint header.
func TestAssertionAlgorithms(t *testing.T) {
	s := NewServer()
	defer s.Close()
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	rc, ec := cert(t, rk), cert(t, ek)
	s.AddCertificate(rc)
	s.AddCertificate(ec)
	s1 := func(c *x509.Certificate) string { x := sha1.Sum(c.Raw); return b64url(x[:]) }
	s256 := func(c *x509.Certificate) string { x := sha256.Sum256(c.Raw); return b64url(x[:]) }
	pkcs1 := func(d []byte) []byte { sig, _ := rsa.SignPKCS1v15(rand.Reader, rk, crypto.SHA256, d); return sig }
	pss := func(d []byte) []byte { sig, _ := rsa.SignPSS(rand.Reader, rk, crypto.SHA256, d, nil); return sig }
	es := func(d []byte) []byte {
		der, _ := ecdsa.SignASN1(rand.Reader, ek, d)
		var rs struct{ R, S *big.Int }
		_, _ = asn1.Unmarshal(der, &rs)
		out := make([]byte, 64)
		rs.R.FillBytes(out[:32])
		rs.S.FillBytes(out[32:])
		return out
	}
	for _, c := range []struct {
		name   string
		hdr    map[string]string
		sign   func([]byte) []byte
		status int
		want   string
	}{
		{"RS256 x5t", map[string]string{"alg": "RS256", "typ": "JWT", "x5t": s1(rc)}, pkcs1, 200, "access_token"},
		{"PS256 x5t#S256", map[string]string{"alg": "PS256", "typ": "JWT", "x5t#S256": s256(rc)}, pss, 200, "access_token"},
		{"RS256 without x5t", map[string]string{"alg": "RS256", "typ": "JWT", "x5t#S256": s256(rc)}, pkcs1, 401, "needs the x5t header"},
		{"ES256", map[string]string{"alg": "ES256", "typ": "JWT", "x5t": s1(ec)}, es, 401, "AADSTS5002738"},
		{"PS256 signature as RS256", map[string]string{"alg": "RS256", "typ": "JWT", "x5t": s1(rc)}, pss, 401, "bad RS256 signature"},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := tokenFor(t, s, jwt(t, s, c.hdr, c.sign))
			require.Equal(t, c.status, w.Code, w.Body.String())
			require.Contains(t, w.Body.String(), c.want)
		})
	}
}
