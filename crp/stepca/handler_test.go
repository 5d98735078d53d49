package stepca_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/json"
	"errors"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/crptest"
	"github.com/scepkit/scepkit/crp/stepca"
	"github.com/scepkit/scepkit/scep"
	"github.com/stretchr/testify/require"
)

var (
	keyOnce sync.Once
	devKey  *rsa.PrivateKey
)

func deviceKey(t testing.TB) *rsa.PrivateKey {
	keyOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		devKey = k
	})
	return devKey
}

func newCSR(t testing.TB, cn, ch string) *x509.CertificateRequest {
	t.Helper()
	key := deviceKey(t)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, key)
	require.NoError(t, err)
	if ch != "" {
		der, err = scep.AddChallengePassword(der, ch, key, nil)
		require.NoError(t, err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	require.NoError(t, err)
	return csr
}

var (
	challengeSecret = []byte("challenge-secret-0123456789abcdef")
	notifySecret    = []byte("notify-secret-0123456789abcdef012")
)

type fixture struct {
	env *crptest.Env
	h   *stepca.Handler
	srv *httptest.Server
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	deviceKey(t)
	env, err := crptest.New(crptest.Options{Transactions: &crp.MemoryTransactions{}})
	require.NoError(t, err)
	h := &stepca.Handler{RP: env.RP, ChallengeSecret: challengeSecret, NotifySecret: notifySecret,
		BearerToken: "step-ca-token"}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &fixture{env: env, h: h, srv: srv}
}

// stepCARequest is what step-ca would send.
func challengeBody(t testing.TB, csr *x509.CertificateRequest, ch, txID string, at time.Time) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{"timestamp": at, "provisionerName": "scepkit",
		"x509CertificateRequest": map[string]any{"raw": csr.Raw, "publicKeyAlgorithm": "RSA"},
		"scepChallenge":          ch, "scepTransactionID": txID})
	require.NoError(t, err)
	return b
}

func notifyBody(t testing.TB, csr *x509.CertificateRequest, cert *x509.Certificate, txID string, at time.Time) []byte {
	t.Helper()
	m := map[string]any{"timestamp": at, "x509CertificateRequest": map[string]any{"raw": csr.Raw},
		"scepTransactionID": txID}
	if cert != nil {
		m["x509Certificate"] = map[string]any{"raw": cert.Raw, "notBefore": cert.NotBefore, "notAfter": cert.NotAfter}
	} else {
		m["scepErrorDescription"] = "error generating certificate"
	}
	b, err := json.Marshal(m)
	require.NoError(t, err)
	return b
}

func post(t testing.TB, url string, body []byte, hdr map[string]string) (int, *stepca.Response) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	require.NoError(t, err)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	if res.StatusCode != http.StatusOK {
		return res.StatusCode, nil
	}
	var out stepca.Response
	require.NoError(t, json.Unmarshal(b, &out), string(b))
	return res.StatusCode, &out
}

func signed(secret, body []byte) map[string]string {
	return map[string]string{stepca.HeaderSignature: stepca.Sign(secret, body), "Authorization": "Bearer step-ca-token"}
}

// issueFromData signs what step-ca's template would produce from the data.
func issueFromData(t *testing.T, env *crptest.Env, d *stepca.Data, csr *x509.CertificateRequest) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), RawSubject: d.RawSubject, NotBefore: d.NotBefore, NotAfter: d.NotAfter,
		BasicConstraintsValid: true}
	names := map[string]x509.KeyUsage{"digitalSignature": x509.KeyUsageDigitalSignature,
		"keyEncipherment": x509.KeyUsageKeyEncipherment, "certSign": x509.KeyUsageCertSign}
	for _, n := range d.KeyUsage {
		tmpl.KeyUsage |= names[n]
	}
	for _, n := range d.ExtKeyUsage {
		switch n {
		case "clientAuth":
			tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
		case "serverAuth":
			tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
		}
	}
	for _, e := range d.Extensions {
		var id asn1.ObjectIdentifier
		for _, p := range strings.Split(e.ID, ".") {
			n := 0
			for _, c := range p {
				n = n*10 + int(c-'0')
			}
			id = append(id, n)
		}
		tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, pkix.Extension{Id: id, Critical: e.Critical, Value: e.Value})
	}
	cert, err := env.CA.Sign(context.Background(), tmpl, csr.PublicKey)
	require.NoError(t, err)
	return cert
}

// aliceAllowed posts a SCEPCHALLENGE for a fresh challenge of alice's laptop, as
// step-ca would, and requires it allowed.
func (f *fixture) aliceAllowed(t *testing.T, txID string) (*x509.CertificateRequest, string, *stepca.Response) {
	t.Helper()
	ch, _, err := f.env.Challenge("alice@example.com", "alice-laptop", 0)
	require.NoError(t, err)
	csr := newCSR(t, "alice@example.com", ch)
	body := challengeBody(t, csr, ch, txID, time.Now())
	status, resp := post(t, f.srv.URL+"/challenge", body, signed(challengeSecret, body))
	require.Equal(t, http.StatusOK, status)
	require.True(t, resp.Allow, "%+v", resp.Error)
	return csr, ch, resp
}

// TestHandler: step-ca's two webhooks, as step-ca sends them: the challenge is
// decided (allowed with the data the template needs), the certificate completes it.
func TestHandler(t *testing.T) {
	f := newFixture(t)
	csr, _, resp := f.aliceAllowed(t, "tx-alice")
	d := resp.Data
	require.Equal(t, "CN=alice@example.com", d.Subject)
	require.Equal(t, crptest.TemplateName, d.Template)
	require.Equal(t, []string{"digitalSignature", "keyEncipherment"}, d.KeyUsage)
	require.Equal(t, []string{"clientAuth"}, d.ExtKeyUsage)
	require.Equal(t, "alice-laptop", d.Device)
	require.Equal(t, 0, f.env.Issuer.Count())

	cert := issueFromData(t, f.env, d, csr)
	body := notifyBody(t, csr, cert, "tx-alice", time.Now())
	status, resp := post(t, f.srv.URL+"/notify", body, signed(notifySecret, body))
	require.Equal(t, http.StatusOK, status)
	require.True(t, resp.Allow, "%+v", resp.Error)
	n := f.env.Notifier.Notifications()
	require.Len(t, n, 1)
	require.Equal(t, crp.OutcomeIssued, n[0].Outcome)
	require.Equal(t, cert.SerialNumber, n[0].Serial)
	got, err := f.env.Certificates.Lookup(context.Background(), cert.SerialNumber)
	require.NoError(t, err)
	require.Equal(t, "alice@example.com", got.UserID)

	// The same certificate reported again (a new, validly signed request): refused.
	body = notifyBody(t, csr, cert, "tx-alice", time.Now().Add(time.Second))
	_, resp = post(t, f.srv.URL+"/notify", body, signed(notifySecret, body))
	require.False(t, resp.Allow)
	require.Len(t, f.env.Notifier.Notifications(), 1)
}

// TestHandlerDenies: refusals of the registration point are allow:false, with the
// phase and reason and nothing more.
func TestHandlerDenies(t *testing.T) {
	f := newFixture(t)
	used, _, err := f.env.Challenge("bob@example.com", "bob-phone", 0)
	require.NoError(t, err)
	body := challengeBody(t, newCSR(t, "bob@example.com", used), used, "tx-bob", time.Now())
	_, resp := post(t, f.srv.URL+"/challenge", body, signed(challengeSecret, body))
	require.True(t, resp.Allow)
	disabled, _, err := f.env.Challenge("mallory@example.com", "mallory-tablet", 0)
	require.NoError(t, err)
	good, _, err := f.env.Challenge("alice@example.com", "alice-laptop", 0)
	require.NoError(t, err)
	for _, c := range []struct {
		name, cn, ch, code, msg string
	}{
		{"replayed challenge", "bob@example.com", used, "badRequest", "phase2-genuineness: challenge already used"},
		{"disabled user", "mallory@example.com", disabled, "badRequest", "phase2-genuineness: user disabled"},
		{"CSR not matching the profile", "admin@example.com", good, "badRequest", "phase3-mapping: CSR does not match the profile"},
		{"garbage challenge", "alice@example.com", "hunter2", "badRequest", "phase2-genuineness: challenge malformed"},
	} {
		t.Run(c.name, func(t *testing.T) {
			body := challengeBody(t, newCSR(t, c.cn, c.ch), c.ch, "tx-"+c.name, time.Now())
			status, resp := post(t, f.srv.URL+"/challenge", body, signed(challengeSecret, body))
			require.Equal(t, http.StatusOK, status)
			require.False(t, resp.Allow)
			require.Nil(t, resp.Data)
			require.Equal(t, c.code, resp.Error.Code)
			require.Equal(t, c.msg, resp.Error.Message)
		})
	}
	require.Equal(t, 0, f.env.Issuer.Count())
}

// TestHandlerRefusesForgeries: requests that are not step-ca's, stale or replayed are
// refused before anything is decided: afterwards the same challenge still passes.
func TestHandlerRefusesForgeries(t *testing.T) {
	f := newFixture(t)
	f.h.MaxBody = 16 << 10
	ch, _, err := f.env.Challenge("alice@example.com", "alice-laptop", 0)
	require.NoError(t, err)
	csr := newCSR(t, "alice@example.com", ch)
	now := time.Now()
	fresh := challengeBody(t, csr, ch, "tx-forged", now)
	replayed := challengeBody(t, csr, ch, "tx-replayed", now)
	// A first, legitimate request with another challenge, whose exact body is then replayed.
	other, _, err := f.env.Challenge("bob@example.com", "bob-phone", 0)
	require.NoError(t, err)
	first := challengeBody(t, newCSR(t, "bob@example.com", other), other, "tx-first", now)
	_, resp := post(t, f.srv.URL+"/challenge", first, signed(challengeSecret, first))
	require.True(t, resp.Allow)
	tampered := bytes.Replace(fresh, []byte("tx-forged"), []byte("tx-forgeD"), 1)
	hdr := func(m map[string]string, kv ...string) map[string]string {
		out := map[string]string{}
		for k, v := range m {
			out[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == "" {
				delete(out, kv[i])
			} else {
				out[kv[i]] = kv[i+1]
			}
		}
		return out
	}
	big := append(bytes.Repeat([]byte(" "), 20<<10), fresh...)
	cases := []struct {
		name   string
		path   string
		body   []byte
		hdr    map[string]string
		status int
	}{
		{"no signature", "/challenge", fresh, hdr(signed(challengeSecret, fresh), stepca.HeaderSignature, ""), 401},
		{"signature of another body", "/challenge", tampered, signed(challengeSecret, fresh), 401},
		{"signed with the notify secret", "/challenge", fresh, signed(notifySecret, fresh), 401},
		{"signature not hex", "/challenge", fresh, hdr(signed(challengeSecret, fresh), stepca.HeaderSignature, "zz"), 401},
		{"stale timestamp", "/challenge", challengeBody(t, csr, ch, "tx-old", now.Add(-10*time.Minute)),
			signed(challengeSecret, challengeBody(t, csr, ch, "tx-old", now.Add(-10*time.Minute))), 401},
		{"future timestamp", "/challenge", challengeBody(t, csr, ch, "tx-new", now.Add(10*time.Minute)),
			signed(challengeSecret, challengeBody(t, csr, ch, "tx-new", now.Add(10*time.Minute))), 401},
		{"replayed body", "/challenge", first, signed(challengeSecret, first), 409},
		{"replayed body, signature in upper case", "/challenge", first, hdr(signed(challengeSecret, first),
			stepca.HeaderSignature, strings.ToUpper(stepca.Sign(challengeSecret, first))), 409},
		{"no bearer token", "/challenge", fresh, hdr(signed(challengeSecret, fresh), "Authorization", ""), 401},
		{"wrong bearer token", "/challenge", fresh, hdr(signed(challengeSecret, fresh), "Authorization", "Bearer nope"), 401},
		{"bearer token of the same length", "/challenge", fresh, hdr(signed(challengeSecret, fresh), "Authorization", "Bearer step-ca-tokeN"), 401},
		{"bearer token's prefix", "/challenge", fresh, hdr(signed(challengeSecret, fresh), "Authorization", "Bearer step-ca-toke"), 401},
		{"bearer token extended", "/challenge", fresh, hdr(signed(challengeSecret, fresh), "Authorization", "Bearer step-ca-token2"), 401},
		{"empty bearer token", "/challenge", fresh, hdr(signed(challengeSecret, fresh), "Authorization", "Bearer "), 401},
		{"oversized body", "/challenge", big, signed(challengeSecret, big), 413},
		{"two JSON values", "/challenge", append(append([]byte{}, replayed...), "{}"...),
			signed(challengeSecret, append(append([]byte{}, replayed...), "{}"...)), 400},
		{"unknown path", "/other", fresh, signed(challengeSecret, fresh), 404},
		{"forged success notification", "/notify", fresh, signed(challengeSecret, fresh), 401},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, _ := post(t, f.srv.URL+c.path, c.body, c.hdr)
			require.Equal(t, c.status, status)
		})
	}
	res, err := http.Get(f.srv.URL + "/challenge")
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusMethodNotAllowed, res.StatusCode)

	// Nothing was decided: no notification, no record, and the challenge still passes.
	require.Empty(t, f.env.Notifier.Notifications())
	status, resp := post(t, f.srv.URL+"/challenge", fresh, signed(challengeSecret, fresh))
	require.Equal(t, http.StatusOK, status)
	require.True(t, resp.Allow, "%+v", resp.Error)
	require.Equal(t, 0, f.env.Issuer.Count())
}

// TestHandlerBasicAuthAndClientCert: basic auth instead of a bearer token, and a
// verified TLS client certificate when required.
func TestHandlerBasicAuthAndClientCert(t *testing.T) {
	f := newFixture(t)
	f.h.BearerToken, f.h.Username, f.h.Password = "", "step", "s3cret"
	ch, _, err := f.env.Challenge("alice@example.com", "alice-laptop", 0)
	require.NoError(t, err)
	csr := newCSR(t, "alice@example.com", ch)
	body := challengeBody(t, csr, ch, "tx-basic", time.Now())
	h := map[string]string{stepca.HeaderSignature: stepca.Sign(challengeSecret, body)}
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/challenge", nil)
	// Wrong passwords and user names of the same length and of other lengths.
	for _, up := range [][2]string{{"step", "wrong"}, {"step", "s3creT"}, {"step", "s3cre"}, {"step", "s3cret!"},
		{"step", ""}, {"stop", "s3cret"}, {"ste", "s3cret"}, {"steps", "s3cret"}, {"", ""}} {
		req.SetBasicAuth(up[0], up[1])
		h["Authorization"] = req.Header.Get("Authorization")
		status, _ := post(t, f.srv.URL+"/challenge", body, h)
		require.Equal(t, 401, status, "%q:%q", up[0], up[1])
	}
	f.h.RequireClientCert = true
	req.SetBasicAuth("step", "s3cret")
	h["Authorization"] = req.Header.Get("Authorization")
	status, _ := post(t, f.srv.URL+"/challenge", body, h)
	require.Equal(t, 401, status, "no TLS client certificate")
	f.h.RequireClientCert = false
	status, resp := post(t, f.srv.URL+"/challenge", body, h)
	require.Equal(t, 200, status)
	require.True(t, resp.Allow)
}

// TestHandlerFailureNotification: step-ca's failure notification (it could not sign
// a request the webhook allowed: its configuration, not the request) is notified and
// releases the challenge, so that the device's retry succeeds once the CA is mended.
// It burned the challenge as "CA refused".
func TestHandlerFailureNotification(t *testing.T) {
	f := newFixture(t)
	csr, ch, _ := f.aliceAllowed(t, "tx-fail")
	body := notifyBody(t, csr, nil, "tx-fail", time.Now())
	status, resp := post(t, f.srv.URL+"/notify", body, signed(notifySecret, body))
	require.Equal(t, 200, status)
	require.False(t, resp.Allow)
	n := f.env.Notifier.Notifications()
	require.Len(t, n, 1)
	require.Equal(t, crp.OutcomeFailed, n[0].Outcome)
	require.Equal(t, crp.ReasonCAUnavailable, n[0].Reason)
	body = challengeBody(t, csr, ch, "tx-fail-again", time.Now())
	_, resp = post(t, f.srv.URL+"/challenge", body, signed(challengeSecret, body))
	require.True(t, resp.Allow, "the challenge was released")
}

// TestHandlerNeverAllowsOnError: a directory that cannot be reached is no verdict,
// and no verdict is never allow.
func TestHandlerNeverAllowsOnError(t *testing.T) {
	f := newFixture(t)
	f.env.RP.Users = crp.UserDirectoryFunc(func(context.Context, string) (*crp.User, error) {
		return nil, errors.New("directory down")
	})
	ch, _, err := f.env.Challenge("alice@example.com", "alice-laptop", 0)
	require.NoError(t, err)
	body := challengeBody(t, newCSR(t, "alice@example.com", ch), ch, "tx-down", time.Now())
	status, resp := post(t, f.srv.URL+"/challenge", body, signed(challengeSecret, body))
	require.Equal(t, http.StatusOK, status)
	require.False(t, resp.Allow)
	require.Nil(t, resp.Data)
	require.NotContains(t, resp.Error.Message, "directory down", "no Go error string to the caller")
}
