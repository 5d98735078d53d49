package crp_test

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scepkit/scepkit/catemplate"
	"github.com/scepkit/scepkit/challenge"
	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/crptest"
	"github.com/scepkit/scepkit/profile"
	"github.com/scepkit/scepkit/scep"
	"github.com/stretchr/testify/require"
)

var (
	keyOnce   sync.Once
	deviceKey *rsa.PrivateKey
	smallKey  *rsa.PrivateKey
)

func keys(t testing.TB) {
	keyOnce.Do(func() {
		var err error
		if deviceKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if smallKey, err = rsa.GenerateKey(rand.Reader, 1024); err != nil {
			panic(err)
		}
	})
}

func newEnv(t testing.TB) *crptest.Env {
	t.Helper()
	keys(t)
	env, err := crptest.New(crptest.Options{})
	require.NoError(t, err)
	return env
}

// csr builds a CSR for key with the given subject CN and optional DNS SAN, carrying
// challenge.
func csr(t testing.TB, key crypto.Signer, cn, challenge string, dns ...string) *x509.CertificateRequest {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: cn}, DNSNames: dns}, key)
	require.NoError(t, err)
	if challenge != "" {
		der, err = scep.AddChallengePassword(der, challenge, key, nil)
		require.NoError(t, err)
	}
	c, err := x509.ParseCertificateRequest(der)
	require.NoError(t, err)
	return c
}

func mint(t testing.TB, env *crptest.Env, user, device string) string {
	t.Helper()
	ch, _, err := env.Challenge(user, device, 0)
	require.NoError(t, err)
	return ch
}

// forge signs arbitrary claims as the MDM would, with iss/typ/kid of its choosing.
func forge(t testing.TB, key crypto.Signer, iss, aud string, iat time.Time, life time.Duration) string {
	t.Helper()
	i := &challenge.Issuer{Name: iss, Key: key, Now: func() time.Time { return iat }}
	if life > challenge.MaxLifetime {
		t.Fatal("use forgeLong")
	}
	ch, _, err := i.Issue(challenge.Request{UserID: "alice@example.com", DeviceID: "alice-laptop",
		ProfileID: crptest.ProfileID, Audience: aud, Lifetime: life})
	require.NoError(t, err)
	return ch
}

type failCase struct {
	name    string
	setup   func(t *testing.T, env *crptest.Env) (*x509.CertificateRequest, string)
	phase   crp.Phase
	reason  crp.Reason
	info    scep.FailInfo
	cleanup func(env *crptest.Env)
}

func failCases(t *testing.T, env *crptest.Env) []failCase {
	mdmKey := env.Challenges.Key
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	good := func(user, device string) func(*testing.T, *crptest.Env) (*x509.CertificateRequest, string) {
		return func(t *testing.T, env *crptest.Env) (*x509.CertificateRequest, string) {
			ch := mint(t, env, user, device)
			return csr(t, deviceKey, user, ch), ch
		}
	}
	withChallenge := func(ch func(t *testing.T) string) func(*testing.T, *crptest.Env) (*x509.CertificateRequest, string) {
		return func(t *testing.T, env *crptest.Env) (*x509.CertificateRequest, string) {
			c := ch(t)
			return csr(t, deviceKey, "alice@example.com", c), c
		}
	}
	now := time.Now()
	return []failCase{
		{name: "expired", setup: withChallenge(func(t *testing.T) string {
			return forge(t, mdmKey, "scepkit-mdm", "scepkit-gateway", now.Add(-2*time.Hour), time.Hour)
		}), phase: crp.PhaseExpiry, reason: crp.ReasonExpired, info: scep.BadTime},
		{name: "not yet valid", setup: withChallenge(func(t *testing.T) string {
			return forge(t, mdmKey, "scepkit-mdm", "scepkit-gateway", now.Add(10*time.Minute), time.Hour)
		}), phase: crp.PhaseExpiry, reason: crp.ReasonNotYetValid, info: scep.BadTime},
		{name: "over-long lifetime", setup: withChallenge(func(t *testing.T) string {
			return forgeLong(t, mdmKey, now, 2*time.Hour)
		}), phase: crp.PhaseExpiry, reason: crp.ReasonLifetime, info: scep.BadTime},
		{name: "bad signature", setup: withChallenge(func(t *testing.T) string {
			ch := mint(t, env, "alice@example.com", "alice-laptop")
			last := ch[len(ch)-2]
			repl := byte('A')
			if last == 'A' {
				repl = 'B'
			}
			return ch[:len(ch)-2] + string(repl) + ch[len(ch)-1:]
		}), phase: crp.PhaseGenuineness, reason: crp.ReasonBadSignature, info: scep.BadRequest},
		{name: "tampered payload", setup: withChallenge(func(t *testing.T) string {
			ch := mint(t, env, "bob@example.com", "bob-phone")
			other := mint(t, env, "alice@example.com", "alice-laptop")
			p := strings.Split(ch, ".")
			p[1] = strings.Split(other, ".")[1]
			return strings.Join(p, ".")
		}), phase: crp.PhaseGenuineness, reason: crp.ReasonBadSignature, info: scep.BadRequest},
		{name: "unknown key", setup: withChallenge(func(t *testing.T) string {
			return forge(t, otherKey, "scepkit-mdm", "scepkit-gateway", now, time.Hour)
		}), phase: crp.PhaseGenuineness, reason: crp.ReasonUnknownKey, info: scep.BadRequest},
		{name: "wrong issuer", setup: withChallenge(func(t *testing.T) string {
			return forge(t, mdmKey, "other-mdm", "scepkit-gateway", now, time.Hour)
		}), phase: crp.PhaseGenuineness, reason: crp.ReasonWrongIssuer, info: scep.BadRequest},
		{name: "wrong gateway", setup: withChallenge(func(t *testing.T) string {
			return forge(t, mdmKey, "scepkit-mdm", "other-gateway", now, time.Hour)
		}), phase: crp.PhaseGateway, reason: crp.ReasonWrongGateway, info: scep.BadRequest},
		{name: "no challenge", setup: withChallenge(func(t *testing.T) string { return "" }),
			phase: crp.PhaseGenuineness, reason: crp.ReasonNoChallenge, info: scep.BadRequest},
		{name: "garbage challenge", setup: withChallenge(func(t *testing.T) string { return "hunter2" }),
			phase: crp.PhaseGenuineness, reason: crp.ReasonMalformed, info: scep.BadRequest},
		{name: "unknown user", setup: good("nobody@example.com", "alice-laptop"),
			phase: crp.PhaseGenuineness, reason: crp.ReasonUserUnknown, info: scep.BadRequest},
		{name: "disabled user", setup: good("mallory@example.com", "mallory-tablet"),
			phase: crp.PhaseGenuineness, reason: crp.ReasonUserDisabled, info: scep.BadRequest},
		{name: "unknown device", setup: good("alice@example.com", "ghost"),
			phase: crp.PhaseMapping, reason: crp.ReasonDeviceUnknown, info: scep.BadRequest},
		{name: "device of another user", setup: good("alice@example.com", "bob-phone"),
			phase: crp.PhaseMapping, reason: crp.ReasonDeviceOtherUser, info: scep.BadRequest},
		{name: "device not compliant", setup: func(t *testing.T, env *crptest.Env) (*x509.CertificateRequest, string) {
			d, _ := env.Devices.LookupDevice(context.Background(), "bob-phone")
			d.Compliant = false
			env.Devices.Put(*d)
			return good("bob@example.com", "bob-phone")(t, env)
		}, cleanup: func(env *crptest.Env) {
			d, _ := env.Devices.LookupDevice(context.Background(), "bob-phone")
			d.Compliant = true
			env.Devices.Put(*d)
		}, phase: crp.PhaseMapping, reason: crp.ReasonDeviceNotCompliant, info: scep.BadRequest},
		{name: "subject mismatch", setup: func(t *testing.T, env *crptest.Env) (*x509.CertificateRequest, string) {
			ch := mint(t, env, "alice@example.com", "alice-laptop")
			return csr(t, deviceKey, "admin@example.com", ch), ch
		}, phase: crp.PhaseMapping, reason: crp.ReasonCSRMismatch, info: scep.BadRequest},
		{name: "RDN injection attempt", setup: func(t *testing.T, env *crptest.Env) (*x509.CertificateRequest, string) {
			ch := mint(t, env, "alice@example.com", "alice-laptop")
			return csr(t, deviceKey, "alice@example.com,CN=admin", ch), ch
		}, phase: crp.PhaseMapping, reason: crp.ReasonCSRMismatch, info: scep.BadRequest},
		{name: "SAN mismatch", setup: func(t *testing.T, env *crptest.Env) (*x509.CertificateRequest, string) {
			ch := mint(t, env, "alice@example.com", "alice-laptop")
			return csr(t, deviceKey, "alice@example.com", ch, "evil.example.com"), ch
		}, phase: crp.PhaseMapping, reason: crp.ReasonCSRMismatch, info: scep.BadRequest},
		{name: "key too small for the profile", setup: func(t *testing.T, env *crptest.Env) (*x509.CertificateRequest, string) {
			ch := mint(t, env, "alice@example.com", "alice-laptop")
			return csr(t, smallKey, "alice@example.com", ch), ch
		}, phase: crp.PhaseMapping, reason: crp.ReasonCSRMismatch, info: scep.BadRequest},
		{name: "key too small for the template", setup: func(t *testing.T, env *crptest.Env) (*x509.CertificateRequest, string) {
			env.Templates[crptest.TemplateName].MinKeySize = 4096
			return good("alice@example.com", "alice-laptop")(t, env)
		}, cleanup: func(env *crptest.Env) { env.Templates[crptest.TemplateName].MinKeySize = 2048 },
			// The profile asks for that key: the operator's fault (TestTemplateRefusesProfileKey).
			phase: crp.PhaseTemplate, reason: crp.ReasonMisconfigured, info: scep.BadCertID},
		{name: "no template", setup: func(t *testing.T, env *crptest.Env) (*x509.CertificateRequest, string) {
			env.Templates["saved"] = env.Templates[crptest.TemplateName]
			delete(env.Templates, crptest.TemplateName)
			return good("alice@example.com", "alice-laptop")(t, env)
		}, cleanup: func(env *crptest.Env) {
			env.Templates[crptest.TemplateName] = env.Templates["saved"]
			delete(env.Templates, "saved")
		}, phase: crp.PhaseTemplate, reason: crp.ReasonNoTemplate, info: scep.BadRequest},
		{name: "unpublished template", setup: func(t *testing.T, env *crptest.Env) (*x509.CertificateRequest, string) {
			env.Templates[crptest.TemplateName].Published = false
			return good("alice@example.com", "alice-laptop")(t, env)
		}, cleanup: func(env *crptest.Env) { env.Templates[crptest.TemplateName].Published = true },
			phase: crp.PhaseTemplate, reason: crp.ReasonTemplateUnpublish, info: scep.BadRequest},
		{name: "CA refusal", setup: func(t *testing.T, env *crptest.Env) (*x509.CertificateRequest, string) {
			env.Issuer.Next = crp.IssuerFunc(func(context.Context, *crp.IssueRequest) (*x509.Certificate, error) {
				return nil, crp.ErrRefused
			})
			return good("alice@example.com", "alice-laptop")(t, env)
		}, cleanup: func(env *crptest.Env) { env.Issuer.Next = crp.CAIssuer{CA: env.CA} },
			phase: crp.PhaseIssue, reason: crp.ReasonCARefused, info: scep.BadRequest},
		{name: "CA down", setup: func(t *testing.T, env *crptest.Env) (*x509.CertificateRequest, string) {
			env.Issuer.Next = crp.IssuerFunc(func(context.Context, *crp.IssueRequest) (*x509.Certificate, error) {
				return nil, crp.ErrUnavailable
			})
			return good("alice@example.com", "alice-laptop")(t, env)
		}, cleanup: func(env *crptest.Env) { env.Issuer.Next = crp.CAIssuer{CA: env.CA} },
			phase: crp.PhaseIssue, reason: crp.ReasonCAUnavailable, info: scep.BadRequest},
	}
}

// forgeLong signs a challenge whose exp - iat exceeds one hour, as a compromised MDM
// might.
func forgeLong(t testing.TB, key crypto.Signer, iat time.Time, life time.Duration) string {
	t.Helper()
	ch := forge(t, key, "scepkit-mdm", "scepkit-gateway", iat, time.Hour)
	return challengeWithExp(t, key, ch, iat.Add(life))
}

// TestFailureReasons runs every refusal through the embedded API (phase, reason,
// trace) and over the wire (failInfo), and checks that no certificate was issued.
func TestFailureReasons(t *testing.T) {
	env := newEnv(t)
	ts := httptest.NewServer(env.Server)
	defer ts.Close()
	client := &scep.Client{URL: ts.URL, CAFingerprint: env.CAFingerprint()}
	ctx := context.Background()
	for _, tc := range failCases(t, env) {
		t.Run(tc.name, func(t *testing.T) {
			before := env.Issuer.Count()
			setup := func() (*x509.CertificateRequest, string) { return tc.setup(t, env) }
			req, ch := setup()
			res, err := env.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "embedded-" + tc.name, CSR: req, Challenge: ch})
			var ce *crp.Error
			require.ErrorAs(t, err, &ce)
			require.Equal(t, tc.phase, ce.Phase, "%v", err)
			require.Equal(t, tc.reason, ce.Reason, "%v", err)
			require.Equal(t, tc.info, ce.FailInfo())
			require.NotNil(t, res.Trace.Failed())
			require.Equal(t, tc.phase, res.Trace.Failed().Phase)
			require.Equal(t, before, env.Issuer.Count(), "no certificate issued")
			if tc.cleanup != nil {
				tc.cleanup(env)
			}

			// The same refusal on the wire, through scep.Server, with a fresh request.
			req, _ = setup()
			if tc.cleanup != nil {
				defer tc.cleanup(env)
			}
			_, err = client.Enroll(ctx, req.Raw, deviceKeyFor(req))
			var fe *scep.FailError
			require.ErrorAs(t, err, &fe, "%v", err)
			require.Equal(t, tc.info, fe.Info)
			require.Equal(t, before, env.Issuer.Count(), "no certificate issued")
		})
	}
	// A good enrollment still works afterwards.
	ch := mint(t, env, "alice@example.com", "alice-laptop")
	cert, err := client.Enroll(ctx, csr(t, deviceKey, "alice@example.com", ch).Raw, deviceKey)
	require.NoError(t, err)
	require.Equal(t, "alice@example.com", cert.Subject.CommonName)
}

func deviceKeyFor(req *x509.CertificateRequest) crypto.Signer {
	if req.PublicKey.(*rsa.PublicKey).N.BitLen() == 1024 {
		return smallKey
	}
	return deviceKey
}

// TestCADownDoesNotBurnTheChallenge: a transient CA failure releases the challenge, so
// the device retries with it and succeeds; a definitive refusal burns it.
func TestCADownDoesNotBurnTheChallenge(t *testing.T) {
	env := newEnv(t)
	ctx := context.Background()
	ch := mint(t, env, "alice@example.com", "alice-laptop")
	req := csr(t, deviceKey, "alice@example.com", ch)
	env.Issuer.Next = crp.IssuerFunc(func(context.Context, *crp.IssueRequest) (*x509.Certificate, error) {
		return nil, errors.Join(crp.ErrUnavailable, errors.New("connection refused"))
	})
	_, err := env.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "t1", CSR: req, Challenge: ch})
	require.ErrorIs(t, err, crp.ErrUnavailable)
	env.Issuer.Next = crp.CAIssuer{CA: env.CA}
	res, err := env.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "t1", CSR: req, Challenge: ch})
	require.NoError(t, err)
	require.Equal(t, scep.Success, res.Status)
	require.Equal(t, 1, env.Issuer.Count())

	// Definitive refusal: the challenge is gone.
	ch = mint(t, env, "bob@example.com", "bob-phone")
	req = csr(t, deviceKey, "bob@example.com", ch)
	env.Issuer.Next = crp.IssuerFunc(func(context.Context, *crp.IssueRequest) (*x509.Certificate, error) {
		return nil, crp.ErrRefused
	})
	_, err = env.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "t2", CSR: req, Challenge: ch})
	require.ErrorIs(t, err, crp.ErrRefused)
	env.Issuer.Next = crp.CAIssuer{CA: env.CA}
	_, err = env.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "t3", CSR: req, Challenge: ch})
	var ce *crp.Error
	require.ErrorAs(t, err, &ce)
	require.Equal(t, crp.ReasonReplayed, ce.Reason)
}

// TestOneChallengeOneCertificate: 100 goroutines present one challenge at once.
func TestOneChallengeOneCertificate(t *testing.T) {
	env := newEnv(t)
	ch := mint(t, env, "alice@example.com", "alice-laptop")
	req := csr(t, deviceKey, "alice@example.com", ch)
	var wg sync.WaitGroup
	var mu sync.Mutex
	reasons := map[crp.Reason]int{}
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			_, err := env.RP.Enroll(context.Background(), &crp.EnrollRequest{
				TransactionID: "race-" + string(rune('a'+i%26)) + strings.Repeat("x", i), CSR: req, Challenge: ch})
			mu.Lock()
			defer mu.Unlock()
			var ce *crp.Error
			if errors.As(err, &ce) {
				reasons[ce.Reason]++
			} else if err == nil {
				reasons["issued"]++
			}
		}(i)
	}
	wg.Wait()
	require.Equal(t, 1, env.Issuer.Count())
	require.Equal(t, map[crp.Reason]int{"issued": 1, crp.ReasonReplayed: 99}, reasons)
}

// TestTraceAndNotification: a success leaves a trace of every phase and tells the MDM
// the serial and thumbprint; the log carries the challenge's fingerprint, never the
// challenge.
func TestTraceAndNotification(t *testing.T) {
	env := newEnv(t)
	var logs strings.Builder
	env.RP.Logger = slogTo(&logs)
	ch := mint(t, env, "bob@example.com", "bob-phone")
	res, err := env.RP.Enroll(context.Background(), &crp.EnrollRequest{TransactionID: "trace-1",
		CSR: csr(t, deviceKey, "bob@example.com", ch), Challenge: ch})
	require.NoError(t, err)
	var phases []crp.Phase
	for _, s := range res.Trace.Steps {
		require.True(t, s.OK, s.Step)
		if len(phases) == 0 || phases[len(phases)-1] != s.Phase {
			phases = append(phases, s.Phase)
		}
	}
	require.Equal(t, []crp.Phase{crp.PhaseGateway, crp.PhaseExpiry, crp.PhaseGenuineness, crp.PhaseMapping,
		crp.PhaseTemplate, crp.PhaseIssue, crp.PhaseNotify}, phases)
	n := env.Notifier.Notifications()
	require.Len(t, n, 1)
	require.Equal(t, crp.OutcomeIssued, n[0].Outcome)
	require.Equal(t, res.Certificate.SerialNumber, n[0].Serial)
	require.Len(t, n[0].Thumbprint, 40)
	require.Equal(t, "bob@example.com", n[0].UserID)
	require.Equal(t, "bob-phone", n[0].DeviceID)
	require.Contains(t, logs.String(), "transactionID=trace-1")
	require.Contains(t, logs.String(), "challenge="+challenge.Fingerprint(ch))
	require.NotContains(t, logs.String(), ch)
	require.NotContains(t, logs.String(), strings.Split(ch, ".")[2], "no part of the challenge is logged")
}

// TestChecksAroundPhases: a user check (compliance, say) refuses in its phase.
func TestChecksAroundPhases(t *testing.T) {
	env := newEnv(t)
	var seen []string
	env.RP.Checks = []crp.Check{
		{Name: "before-mapping", Phase: crp.PhaseMapping, Func: func(_ context.Context, tx *crp.Transaction) error {
			seen = append(seen, "before:"+tx.UserID())
			return nil
		}},
		{Name: "compliance", Phase: crp.PhaseMapping, After: true, Func: func(_ context.Context, tx *crp.Transaction) error {
			if tx.Device.ID == "bob-phone" {
				return errors.New("jailbroken")
			}
			return nil
		}},
	}
	ch := mint(t, env, "bob@example.com", "bob-phone")
	res, err := env.RP.Enroll(context.Background(), &crp.EnrollRequest{TransactionID: "c1",
		CSR: csr(t, deviceKey, "bob@example.com", ch), Challenge: ch})
	var ce *crp.Error
	require.ErrorAs(t, err, &ce)
	require.Equal(t, crp.PhaseMapping, ce.Phase)
	require.Equal(t, crp.ReasonCheckFailed, ce.Reason)
	require.Equal(t, "compliance", res.Trace.Failed().Step)
	require.Equal(t, []string{"before:bob@example.com"}, seen)
	require.Equal(t, 0, env.Issuer.Count())
}

// TestPendingApproval: a template that needs approval answers PENDING; polls and
// resends get PENDING, then the certificate once approved, never a second one; a poll
// from another key or for an unknown transaction is refused.
func TestPendingApproval(t *testing.T) {
	env := newEnv(t)
	env.Templates[crptest.TemplateName].RequiresApproval = true
	ts := httptest.NewServer(env.Server)
	defer ts.Close()
	ctx := context.Background()
	ch := mint(t, env, "alice@example.com", "alice-laptop")
	der := csr(t, deviceKey, "alice@example.com", ch).Raw

	pctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	defer cancel()
	client := &scep.Client{URL: ts.URL, CAFingerprint: env.CAFingerprint(), PollInterval: 300 * time.Millisecond}
	_, err := client.Enroll(pctx, der, deviceKey)
	require.ErrorIs(t, err, scep.ErrPending)
	require.Equal(t, 0, env.Issuer.Count())
	n := env.Notifier.Notifications()
	require.Equal(t, crp.OutcomePending, n[len(n)-1].Outcome)

	tid := transactionIDOf(t, deviceKey)
	cert, err := env.RP.Approve(ctx, tid)
	require.NoError(t, err)
	require.Equal(t, 1, env.Issuer.Count())

	// The device resends the same PKCSReq: the same certificate, not a second one.
	got, err := client.Enroll(ctx, der, deviceKey)
	require.NoError(t, err)
	require.Equal(t, cert.Raw, got.Raw)
	require.Equal(t, 1, env.Issuer.Count())
	_, err = env.RP.Approve(ctx, tid)
	require.Error(t, err, "already decided")
}

func transactionIDOf(t testing.TB, key *rsa.PrivateKey) string {
	t.Helper()
	// scep.Client names a transaction by the SHA-1 of the key, base64 (RFC 8894 §3.2.1.1).
	der, err := x509.MarshalPKIXPublicKey(key.Public())
	require.NoError(t, err)
	return sha1b64(der)
}

// TestRenewal: a certificate we issued renews without a challenge; one from another
// CA, an expired or a revoked one does not; nor does a subject change.
func TestRenewal(t *testing.T) {
	env := newEnv(t)
	ts := httptest.NewServer(env.Server)
	defer ts.Close()
	ctx := context.Background()
	client := &scep.Client{URL: ts.URL, CAFingerprint: env.CAFingerprint()}
	ch := mint(t, env, "alice@example.com", "alice-laptop")
	cert, err := client.Enroll(ctx, csr(t, deviceKey, "alice@example.com", ch).Raw, deviceKey)
	require.NoError(t, err)

	renewed, err := client.Renew(ctx, csr(t, deviceKey, "alice@example.com", "").Raw, cert, deviceKey)
	require.NoError(t, err)
	require.NotEqual(t, cert.SerialNumber, renewed.SerialNumber)
	require.Equal(t, 2, env.Issuer.Count())

	var fe *scep.FailError
	// A certificate renews once: a second renewal signed by cert (another key, same
	// subject, so another transaction) is refused.
	other2048, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	_, err = client.Renew(ctx, csr(t, other2048, "alice@example.com", "").Raw, cert, deviceKey)
	require.ErrorAs(t, err, &fe)
	require.Equal(t, 2, env.Issuer.Count())
	// Subject change.
	_, err = client.Renew(ctx, csr(t, deviceKey, "bob@example.com", "").Raw, renewed, deviceKey)
	require.ErrorAs(t, err, &fe)
	// Revoked.
	require.NoError(t, env.CA.Revoke(renewed.SerialNumber, 1, time.Now()))
	_, err = client.Renew(ctx, csr(t, deviceKey, "alice@example.com", "").Raw, renewed, deviceKey)
	require.ErrorAs(t, err, &fe)
	// Another CA's certificate.
	other, err := catemplate.NewCA(catemplate.CAOptions{KeySize: 2048})
	require.NoError(t, err)
	foreign, err := other.Sign(ctx, &x509.Certificate{SerialNumber: cert.SerialNumber, Subject: cert.Subject,
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}, deviceKey.Public())
	require.NoError(t, err)
	_, err = client.Renew(ctx, csr(t, deviceKey, "alice@example.com", "").Raw, foreign, deviceKey)
	require.ErrorAs(t, err, &fe)
	// Expired (issued by our CA, but its validity is over).
	expiredDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(77),
		Subject: cert.Subject, NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: time.Now().Add(-time.Hour)},
		env.CA.Certificate, deviceKey.Public(), env.CA.Signer)
	require.NoError(t, err)
	expired, err := x509.ParseCertificate(expiredDER)
	require.NoError(t, err)
	require.NoError(t, env.RP.Certificates.Add(ctx, &crp.IssuedCertificate{Certificate: expired, UserID: "alice@example.com",
		DeviceID: "alice-laptop", ProfileID: crptest.ProfileID}))
	_, err = client.Renew(ctx, csr(t, deviceKey, "alice@example.com", "").Raw, expired, deviceKey)
	require.ErrorAs(t, err, &fe)
	require.Equal(t, 2, env.Issuer.Count(), "no certificate issued for the refused renewals")

	// Renewal disabled: a RenewalReq is refused.
	env.RP.Renewal.Disabled = true
	ch = mint(t, env, "alice@example.com", "alice-laptop")
	cert2, err := client.Enroll(ctx, csr(t, deviceKey, "alice@example.com", ch).Raw, deviceKey)
	require.NoError(t, err)
	_, err = client.Renew(ctx, csr(t, deviceKey, "alice@example.com", "").Raw, cert2, deviceKey)
	require.ErrorAs(t, err, &fe)
	require.Equal(t, 3, env.Issuer.Count())
}

var _ = profile.RSA

// Each step is timed where its work happens: the challenge is checked once, under
// challenge-verify, and the steps that judge its verdict in their phases take no time
// of their own. The Verifier's clock moves the shared clock on each reading, so the
// check's time lands in whichever step runs it.
func TestTraceTimesEachStep(t *testing.T) {
	env := newEnv(t)
	now := time.Now()
	v := *env.Verifier
	v.Now = func() time.Time { now = now.Add(10 * time.Millisecond); return now }
	env.RP.Verifier = &v
	env.RP.Now = func() time.Time { return now }
	ch := mint(t, env, "bob@example.com", "bob-phone")
	res, err := env.RP.Enroll(context.Background(), &crp.EnrollRequest{TransactionID: "timed",
		CSR: csr(t, deviceKey, "bob@example.com", ch), Challenge: ch})
	require.NoError(t, err)
	took := map[string]time.Duration{}
	var names []string
	for _, s := range res.Trace.Steps {
		took[s.Step] = s.Duration
		names = append(names, s.Phase.String()+"/"+s.Step)
	}
	require.Equal(t, []string{"gateway/csr-signature", "gateway/challenge-verify", "gateway/challenge-audience",
		"phase1-expiry/challenge-lifetime", "phase2-genuineness/challenge-genuine", "phase2-genuineness/user-active",
		"phase2-genuineness/challenge-unused", "phase3-mapping/device-mapping", "phase3-mapping/profile-match",
		"template/template", "issue/issue", "notify/notify-issued"}, names)
	require.Positive(t, took["challenge-verify"])
	for _, judge := range []string{"challenge-audience", "challenge-lifetime", "challenge-genuine"} {
		require.Zero(t, took[judge], judge)
	}
}

// TestApproveQueuedAgain: when the CA queues a request again while it is approved,
// Approve says so (errors.Is ErrPending) and the request stays pending and decidable:
// a later Approve issues it.
func TestApproveQueuedAgain(t *testing.T) {
	env := newEnv(t)
	var queue atomic.Bool
	queue.Store(true)
	inner := env.RP.Issuer
	env.RP.Issuer = crp.IssuerFunc(func(ctx context.Context, req *crp.IssueRequest) (*x509.Certificate, error) {
		if queue.Load() {
			return nil, crp.ErrPending
		}
		return inner.Issue(ctx, req)
	})
	ctx := context.Background()
	ch := mint(t, env, "alice@example.com", "alice-laptop")
	res, err := env.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "queued", CSR: csr(t, deviceKey, "alice@example.com", ch), Challenge: ch})
	require.NoError(t, err)
	require.Equal(t, scep.Pending, res.Status)

	_, err = env.RP.Approve(ctx, "queued")
	require.ErrorIs(t, err, crp.ErrPending)
	rec, err := env.RP.Transactions.Get(ctx, "queued")
	require.NoError(t, err)
	require.Equal(t, scep.Pending, rec.Status)

	queue.Store(false)
	cert, err := env.RP.Approve(ctx, "queued")
	require.NoError(t, err, "a request the CA queued again can be approved again")
	require.NotNil(t, cert)
	require.Equal(t, 1, env.Issuer.Count())
}
