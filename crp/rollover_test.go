package crp_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/scepkit/scepkit/catemplate"
	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/crptest"
	"github.com/scepkit/scepkit/internal/testserver"
	"github.com/scepkit/scepkit/scep"
)

// testClock is a clock a test moves.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

// TestRolloverOverHTTP: a next CA and RA prepared ahead are announced through
// GetNextCACert (signed by the current RA, RFC 8894 §4.7) and switched to at the
// configured time on the registration point's clock: from then on GetCACert serves
// the next set, certificates chain to the next CA, a device that fetched GetCACert
// before the switch still enrolls (its request, encrypted to the previous RA, is
// decrypted and answered with a reply it can verify, carrying a certificate of the
// previous CA, the only CA it knows), and a certificate of the previous CA is
// renewed. The switch is logged once and shows in a metric.
func TestRolloverOverHTTP(t *testing.T) {
	start := time.Now()
	var logs testserver.Output
	reader := metric.NewManualReader()
	renv := newRolloverEnv(t, crptest.Options{Logger: slogTo(&logs),
		MeterProvider: metric.NewMeterProvider(metric.WithReader(reader))}, start, start.Add(time.Hour))
	env, clock, nextCA, nextRA, nextIssuer, at := renv.Env, renv.clock, renv.nextCA, renv.nextRA, renv.nextIssuer, renv.at
	srv := crp.NewServer(env.RP, env.RA)
	srv.Logger, srv.MeterProvider = env.Server.Logger, env.Server.MeterProvider
	require.NoError(t, srv.Validate())
	ts := httptest.NewServer(srv)
	defer ts.Close()
	ctx := context.Background()
	oldFP := env.CAFingerprint()
	oldClient := &scep.Client{URL: ts.URL, CAFingerprint: oldFP, Now: clock.Now}

	// Before the switch: the current set, and the next one announced.
	caps, err := oldClient.GetCACaps(ctx)
	require.NoError(t, err)
	require.True(t, caps.Has(scep.CapGetNextCACert))
	next, err := oldClient.GetNextCACert(ctx) // verified against the current CA and RA
	require.NoError(t, err)
	require.True(t, containsCert(next, nextCA.Certificate), "next CA announced")
	require.True(t, containsCert(next, nextRA.SigningCertificate), "next RA announced")
	require.True(t, containsCert(next, nextRA.EncryptionCertificate))
	require.False(t, containsCert(next, env.CA.Certificate))
	require.Equal(t, -3600.0, rolloverGauge(t, reader))

	aliceKey := deviceKey
	alice, err := oldClient.Enroll(ctx, csr(t, aliceKey, "alice@example.com", mint(t, env, "alice@example.com", "alice-laptop")).Raw, aliceKey)
	require.NoError(t, err)
	require.NoError(t, alice.CheckSignatureFrom(env.CA.Certificate))
	require.Equal(t, 0, nextIssuer.Count())
	// What a device that asked GetCACert before the switch keeps.
	staleCerts, err := oldClient.GetCACert(ctx)
	require.NoError(t, err)
	require.True(t, containsCert(staleCerts, env.RA.EncryptionCertificate))
	require.NotContains(t, logs.String(), "rolled over")

	// The switch.
	clock.Set(at.Add(time.Minute))
	_, err = oldClient.GetCACert(ctx)
	require.ErrorIs(t, err, scep.ErrFingerprint, "GetCACert no longer serves the previous CA")
	nextFP := sha256.Sum256(nextCA.Certificate.Raw)
	newClient := &scep.Client{URL: ts.URL, CAFingerprint: nextFP[:], Now: clock.Now}
	served, err := newClient.GetCACert(ctx)
	require.NoError(t, err)
	require.True(t, containsCert(served, nextRA.EncryptionCertificate))
	require.False(t, containsCert(served, env.CA.Certificate))
	require.False(t, containsCert(served, env.RA.SigningCertificate))
	caps, err = newClient.GetCACaps(ctx)
	require.NoError(t, err)
	require.False(t, caps.Has(scep.CapGetNextCACert), "nothing left to announce")
	require.Contains(t, logs.String(), "scep: rolled over to the next CA and RA")
	require.Equal(t, 60.0, rolloverGauge(t, reader))

	// The device with the previous certificates: its request is encrypted to the
	// previous RA, the reply is signed by it, the certificate comes from the previous
	// CA, which the device trusts.
	bobKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	bobCSR := csr(t, bobKey, "bob@example.com", mint(t, env, "bob@example.com", "bob-phone"))
	self, err := scep.SelfSigned(bobKey, bobCSR.Subject, nil)
	require.NoError(t, err)
	der, _, err := scep.NewRequest(scep.RequestOptions{Type: scep.PKCSReq, TransactionID: "bob-stale",
		Payload: bobCSR.Raw, Recipient: env.RA.EncryptionCertificate, SignerCert: self, Signer: bobKey})
	require.NoError(t, err)
	resp, err := http.Post(ts.URL+"?operation=PKIOperation", "application/x-pki-message", bytes.NewReader(der))
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	rep, err := scep.ParsePKIMessage(body, scep.ParseOptions{Certificates: staleCerts})
	require.NoError(t, err)
	require.Equal(t, scep.Success, rep.Status, "failInfo %v", rep.FailInfo)
	require.True(t, rep.Signer.Equal(env.RA.SigningCertificate), "signed by the RA the device knows")
	require.NoError(t, rep.Decrypt(scep.Recipient{Certificate: self, Key: bobKey}))
	require.NotEmpty(t, rep.Issued)
	bob := rep.Issued[0]
	require.NoError(t, bob.CheckSignatureFrom(env.CA.Certificate), "issued by the previous CA")
	require.Equal(t, 0, nextIssuer.Count())

	// A device that asks GetCACert now: everything from the next set.
	carolKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	carol, err := newClient.Enroll(ctx, csr(t, carolKey, "alice@example.com", mint(t, env, "alice@example.com", "alice-laptop")).Raw, carolKey)
	require.NoError(t, err)
	require.NoError(t, carol.CheckSignatureFrom(nextCA.Certificate))
	// The log names each certificate issued and its CA: around a switch, what tells
	// the two CAs' certificates apart.
	require.Regexp(t, `step=issue .*outcome=ok serial=`+carol.SerialNumber.Text(16)+` issuer="`+regexp.QuoteMeta(nextCA.Certificate.Subject.String())+`"`, logs.String())
	require.Regexp(t, `step=issue .*outcome=ok serial=`+alice.SerialNumber.Text(16)+` issuer="`+regexp.QuoteMeta(env.CA.Certificate.Subject.String())+`"`, logs.String())

	// Renewal of a certificate the previous CA issued, after the switch.
	renewed, err := newClient.Renew(ctx, csr(t, aliceKey, "alice@example.com", "").Raw, alice, aliceKey)
	require.NoError(t, err)
	require.NoError(t, renewed.CheckSignatureFrom(nextCA.Certificate))
	require.Equal(t, 2, nextIssuer.Count())
	require.Equal(t, 2, env.Issuer.Count(), "the previous CA issued before the switch, and for the device on the previous RA")
	require.Equal(t, 1, bytes.Count([]byte(logs.String()), []byte("rolled over")), "logged once")
}

// TestRolloverRefusesWhatItCannotServe: a Rollover without its RA, or an Issuer
// without the CA it issues under, is reported by Validate; so is a scep.Rollover
// whose signer is not its certificate's key, or one set beside NextCACerts.
func TestRolloverRefusesWhatItCannotServe(t *testing.T) {
	env := newEnv(t)
	at := time.Now().Add(time.Hour)
	for name, r := range map[string]*crp.Rollover{
		"no RA":             {At: at, CA: env.CA},
		"no time":           {CA: env.CA, RA: env.RA},
		"issuer without CA": {At: at, RA: env.RA, Issuer: env.Issuer},
	} {
		env.RP.Rollover = r
		require.Error(t, env.RP.Validate(), name)
	}
	nextRA, err := catemplate.NewRA(env.CA, catemplate.RAOptions{})
	require.NoError(t, err)
	env.RP.Rollover = &crp.Rollover{At: at, RA: nextRA}
	require.NoError(t, env.RP.Validate())
	srv := crp.NewServer(env.RP, env.RA)
	require.NoError(t, srv.Validate())
	srv.Rollover.Signer = env.RA.Signer
	require.ErrorContains(t, srv.Validate(), "Rollover.Signer")
	srv = crp.NewServer(env.RP, env.RA)
	srv.NextCACerts = []*x509.Certificate{env.CA.Certificate}
	require.ErrorContains(t, srv.Validate(), "exclusive")
}

func containsCert(cs []*x509.Certificate, c *x509.Certificate) bool {
	for _, x := range cs {
		if x.Equal(c) {
			return true
		}
	}
	return false
}

// rolloverGauge reads scepkit.scep.rollover.
func rolloverGauge(t *testing.T, r *metric.ManualReader) float64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, r.Collect(context.Background(), &rm))
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == scep.MetricRollover {
				g := m.Data.(metricdata.Gauge[float64])
				require.Len(t, g.DataPoints, 1)
				return g.DataPoints[0].Value
			}
		}
	}
	t.Fatal("no " + scep.MetricRollover)
	return 0
}
