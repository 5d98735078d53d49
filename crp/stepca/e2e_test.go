package stepca_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scepkit/scepkit/catemplate"
	"github.com/scepkit/scepkit/challenge"
	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/crptest"
	"github.com/scepkit/scepkit/crp/intune"
	"github.com/scepkit/scepkit/crp/intune/intunetest"
	"github.com/scepkit/scepkit/crp/stepca"
	"github.com/scepkit/scepkit/internal/scepclienttest"
	"github.com/scepkit/scepkit/internal/stepcatest"
	"github.com/scepkit/scepkit/profile"
	"github.com/scepkit/scepkit/scep"
	"github.com/stretchr/testify/require"
)

// recorder keeps the last request step-ca sent to each webhook, to replay it.
type recorder struct {
	next http.Handler
	mu   sync.Mutex
	last map[string]captured
}

type captured struct {
	body []byte
	hdr  http.Header
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	r.mu.Lock()
	r.last[req.URL.Path] = captured{body: body, hdr: req.Header.Clone()}
	r.mu.Unlock()
	req.Body = io.NopCloser(bytes.NewReader(body))
	r.next.ServeHTTP(w, req)
}

func (r *recorder) get(path string) captured {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last[path]
}

const intuneProfile = "intune-scep"

// TestStepCA: scepkit's registration point behind a real step-ca's SCEP provisioner,
// through its SCEPCHALLENGE and NOTIFYING webhooks over HTTPS with mutual TLS, with
// micromdm's scepclient (and scepkit's own SCEP client, for a profile with SANs) as
// the devices.
func TestStepCA(t *testing.T) {
	bin := scepclienttest.Binary(t)
	ca := stepcatest.Start(t, stepcatest.Options{Template: stepca.Template})
	deviceKey(t)

	env, err := crptest.New(crptest.Options{Transactions: &crp.MemoryTransactions{}})
	require.NoError(t, err)
	env.RP.CACert = ca.Intermediate // step-ca's intermediate issues

	// A second profile whose certificates carry the user's UPN and e-mail as SANs.
	sanProfile := *env.Profile
	sanProfile.ID = "san-profile"
	sanProfile.SubjectAlternativeNames = []profile.SAN{{Type: profile.SANUPN, Value: "{{UserPrincipalName}}"},
		{Type: profile.SANEmail, Value: "{{EmailAddress}}"}}
	env.Profiles[sanProfile.ID] = &sanProfile

	// Intune beside scepkit's own challenges.
	emu := intunetest.NewServer()
	t.Cleanup(emu.Close)
	ic := emu.Client("scepkit-stepca-test/1.0")
	require.NoError(t, ic.Validate())
	env.Templates["intune-device"] = &catemplate.Template{Name: "intune-device", Validity: 365 * 24 * time.Hour,
		Backdate: 5 * time.Minute, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, MinKeySize: 2048,
		KeyTypes: []profile.KeyType{profile.RSA}, SubjectFromRequest: true, SANsFromRequest: true, Published: true}
	env.RP.Templates = &catemplate.ProfileResolver{ByProfile: map[string]string{intuneProfile: "intune-device"},
		Fallback: env.RP.Templates, Templates: env.Templates}
	env.RP.Validators = []crp.ChallengeValidator{&intune.Validator{Client: ic, Profile: &profile.Profile{ID: intuneProfile}}}
	env.RP.Notifier = &intune.Notifier{Client: ic, Others: env.Notifier}
	env.RP.RequireNotification = true
	require.NoError(t, env.RP.Validate())

	h := &stepca.Handler{RP: env.RP, BearerToken: "scepkit-webhook-token", RequireClientCert: true}
	rec := &recorder{next: h, last: map[string]captured{}}
	srv := httptest.NewUnstartedServer(rec)
	srv.TLS = ca.ServerTLS()
	// The handler gets its secrets before it serves: the race detector sees no order
	// between this goroutine and a request step-ca makes after the secrets were set.
	url := "https://" + srv.Listener.Addr().String()
	h.ChallengeSecret = ca.AddWebhook(stepcatest.Webhook{Name: "scepkit", URL: url + "/challenge",
		Kind: "SCEPCHALLENGE", BearerToken: "scepkit-webhook-token"})
	h.NotifySecret = ca.AddWebhook(stepcatest.Webhook{Name: "scepkit-notify", URL: url + "/notify",
		Kind: "NOTIFYING", BearerToken: "scepkit-webhook-token"})
	srv.StartTLS()
	t.Cleanup(srv.Close)

	// enroll runs scepclient as a new device; it returns the certificate step-ca
	// issued, if any.
	enroll := func(t *testing.T, cn, ch string) (*x509.Certificate, string) {
		t.Helper()
		dev := &scepclienttest.Device{Bin: bin, Dir: t.TempDir()}
		out, err := dev.Enroll(ca.SCEPURL, cn, ch)
		cert, cerr := dev.Certificate()
		if err != nil || cerr != nil || cert.CheckSignatureFrom(ca.Intermediate) != nil {
			return nil, out // scepclient keeps its self-signed certificate on failure
		}
		return cert, out
	}
	issued := func() int { return env.Certificates.Len() }
	notified := func(o crp.Outcome) int {
		n := 0
		for _, x := range env.Notifier.Notifications() {
			if x.Outcome == o {
				n++
			}
		}
		return n
	}

	var aliceCh string
	t.Run("alice", func(t *testing.T) {
		aliceCh, _, err = env.Challenge("alice@example.com", "alice-laptop", 0)
		require.NoError(t, err)
		cert, out := enroll(t, "alice@example.com", aliceCh)
		require.NotNil(t, cert, "%s\n%s", out, ca.Log())
		require.Equal(t, "CN=alice@example.com", cert.Subject.String())
		require.Equal(t, x509.KeyUsageDigitalSignature|x509.KeyUsageKeyEncipherment, cert.KeyUsage)
		require.Equal(t, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, cert.ExtKeyUsage)
		require.Empty(t, cert.DNSNames)
		require.Empty(t, cert.EmailAddresses)
		require.InDelta(t, 365*24, cert.NotAfter.Sub(cert.NotBefore).Hours(), 1)
		// The notification reached scepkit: recorded, stored, notified.
		got, err := env.Certificates.Lookup(context.Background(), cert.SerialNumber)
		require.NoError(t, err)
		require.Equal(t, cert.Raw, got.Certificate.Raw)
		require.Equal(t, "alice-laptop", got.DeviceID)
		n := env.Notifier.Notifications()
		require.Equal(t, crp.OutcomeIssued, n[len(n)-1].Outcome)
		require.Equal(t, cert.SerialNumber, n[len(n)-1].Serial)
	})

	t.Run("SANs from the profile", func(t *testing.T) {
		ch, _, err := env.Challenges.Issue(challenge.Request{UserID: "bob@example.com", DeviceID: "bob-phone",
			ProfileID: sanProfile.ID, Audience: env.Verifier.Audience})
		require.NoError(t, err)
		u, err := env.Users.LookupUser(context.Background(), "bob@example.com")
		require.NoError(t, err)
		d, err := env.Devices.LookupDevice(context.Background(), "bob-phone")
		require.NoError(t, err)
		r, err := profile.Render(&sanProfile, u.User, d.Device, nil)
		require.NoError(t, err)
		ext, err := r.AltNames().Extension(false)
		require.NoError(t, err)
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{RawSubject: r.RawSubject,
			ExtraExtensions: []pkix.Extension{ext}}, deviceKey(t))
		require.NoError(t, err)
		der, err = scep.AddChallengePassword(der, ch, deviceKey(t), nil)
		require.NoError(t, err)
		fp := sha256.Sum256(ca.Intermediate.Raw)
		// step-ca v0.30.2 signs its CertRep with SHA-1 (its PKCS#7 signer's default,
		// whatever the request used), which the Client reads only when it speaks SHA-1.
		c := &scep.Client{URL: ca.SCEPURL, CAFingerprint: fp[:], Digest: crypto.SHA1}
		cert, err := c.Enroll(context.Background(), der, deviceKey(t))
		require.NoError(t, err, ca.Log())
		require.NoError(t, cert.CheckSignatureFrom(ca.Intermediate))
		require.Equal(t, r.RawSubject, cert.RawSubject)
		require.Equal(t, []string{"bob@example.com"}, cert.EmailAddresses)
		var san []byte
		for _, e := range cert.Extensions {
			if e.Id.Equal(ext.Id) {
				san = e.Value
			}
		}
		require.Equal(t, ext.Value, san, "the subjectAltName scepkit decided, UPN included")
		_, err = env.Certificates.Lookup(context.Background(), cert.SerialNumber)
		require.NoError(t, err, "completed through the NOTIFYING webhook")
	})

	t.Run("refused", func(t *testing.T) {
		before, beforeIssued := issued(), notified(crp.OutcomeIssued)
		expired := func() string {
			iss := *env.Challenges
			iss.Now = func() time.Time { return time.Now().Add(-2 * time.Hour) }
			ch, _, err := iss.Issue(challenge.Request{UserID: "alice@example.com", DeviceID: "alice-laptop",
				ProfileID: crptest.ProfileID, Audience: env.Verifier.Audience, Lifetime: time.Hour})
			require.NoError(t, err)
			return ch
		}()
		disabled, _, err := env.Challenge("mallory@example.com", "mallory-tablet", 0)
		require.NoError(t, err)
		mismatch, _, err := env.Challenge("alice@example.com", "alice-laptop", 0)
		require.NoError(t, err)
		for _, c := range []struct{ name, cn, ch string }{
			{"replayed challenge", "alice@example.com", aliceCh},
			{"expired challenge", "alice@example.com", expired},
			{"disabled user", "mallory@example.com", disabled},
			{"CSR not matching the profile", "admin@example.com", mismatch},
		} {
			t.Run(c.name, func(t *testing.T) {
				const refusal = "webhook server did not allow request"
				logged := strings.Count(ca.Log(), refusal)
				cert, out := enroll(t, c.cn, c.ch)
				require.Nil(t, cert, out)
				require.Contains(t, out, "badRequest")
				deadline := time.Now().Add(2 * time.Second)
				for strings.Count(ca.Log(), refusal) == logged && time.Now().Before(deadline) {
					time.Sleep(20 * time.Millisecond)
				}
				require.Greater(t, strings.Count(ca.Log(), refusal), logged, "step-ca logs the refusal")
			})
		}
		require.Equal(t, before, issued(), "no certificate")
		require.Equal(t, beforeIssued, notified(crp.OutcomeIssued))
	})

	t.Run("forged webhook calls", func(t *testing.T) {
		client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: ca.ClientTLS()}}
		send := func(c *http.Client, path string, body []byte, hdr http.Header) int {
			req, err := http.NewRequest(http.MethodPost, srv.URL+path, bytes.NewReader(body))
			require.NoError(t, err)
			req.Header = hdr.Clone()
			res, err := c.Do(req)
			require.NoError(t, err)
			res.Body.Close()
			return res.StatusCode
		}
		before := len(env.Notifier.Notifications())
		last := rec.get("/challenge")
		require.NotEmpty(t, last.body)
		require.Equal(t, http.StatusConflict, send(client, "/challenge", last.body, last.hdr), "replayed body")
		tampered := bytes.Replace(last.body, []byte(`"scepTransactionID":"`), []byte(`"scepTransactionID":"x`), 1)
		require.Equal(t, http.StatusUnauthorized, send(client, "/challenge", tampered, last.hdr), "bad signature")
		note := rec.get("/notify")
		require.Equal(t, http.StatusConflict, send(client, "/notify", note.body, note.hdr), "replayed notification")

		// A stale request, correctly signed, for a fresh challenge: refused, and the
		// challenge is untouched (it enrolls afterwards).
		ch, _, err := env.Challenge("alice@example.com", "alice-laptop", 0)
		require.NoError(t, err)
		var body map[string]any
		require.NoError(t, json.Unmarshal(last.body, &body))
		body["timestamp"] = time.Now().Add(-10 * time.Minute)
		body["scepChallenge"] = ch
		stale, err := json.Marshal(body)
		require.NoError(t, err)
		hdr := last.hdr.Clone()
		hdr.Set(stepca.HeaderSignature, stepca.Sign(h.ChallengeSecret, stale))
		require.Equal(t, http.StatusUnauthorized, send(client, "/challenge", stale, hdr), "stale timestamp")
		// Without step-ca's client certificate, even a fresh, signed request.
		body["timestamp"] = time.Now()
		fresh, err := json.Marshal(body)
		require.NoError(t, err)
		hdr.Set(stepca.HeaderSignature, stepca.Sign(h.ChallengeSecret, fresh))
		require.Equal(t, http.StatusUnauthorized, send(ca.Client(), "/challenge", fresh, hdr), "no client certificate")
		require.Len(t, env.Notifier.Notifications(), before, "nothing decided")

		cert, out := enroll(t, "alice@example.com", ch)
		require.NotNil(t, cert, "the challenge was not claimed by the refused calls: %s", out)
	})

	t.Run("Intune", func(t *testing.T) {
		ch := emu.Challenge(intunetest.Verdict{})
		cert, out := enroll(t, "WIN-DEVICE-01", ch)
		require.NotNil(t, cert, "%s\n%s", out, ca.Log())
		require.Equal(t, "WIN-DEVICE-01", cert.Subject.CommonName)
		s := emu.Successes()
		require.Len(t, s, 1)
		require.Equal(t, intune.Thumbprint(cert), s[0].Notification.CertificateThumbprint)
		require.Equal(t, intune.SerialHex(cert.SerialNumber), s[0].Notification.CertificateSerialNumber)
		v := emu.Validations()
		require.Len(t, v, 1)
		require.Equal(t, v[0].Request.TransactionID, s[0].Notification.TransactionID)

		// Refused by Intune: no certificate, Intune not told of a success.
		ch = emu.Challenge(intunetest.Verdict{Code: intune.CodeSubjectNameMismatch})
		cert, out = enroll(t, "WIN-DEVICE-02", ch)
		require.Nil(t, cert, out)
		require.Len(t, emu.Successes(), 1)
		require.Empty(t, emu.Violations())
	})
}
