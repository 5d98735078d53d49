package crp_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/catemplate"
	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/crptest"
	"github.com/scepkit/scepkit/scep"
)

// rolloverEnv is a gateway whose clock starts at start and that rolls over to a next
// CA and RA at at.
type rolloverEnv struct {
	*crptest.Env
	clock      *testClock
	nextCA     *catemplate.CA
	nextRA     *catemplate.RA
	nextIssuer *crptest.CountingIssuer
	at         time.Time
}

func newRolloverEnv(t *testing.T, o crptest.Options, start, at time.Time) *rolloverEnv {
	t.Helper()
	keys(t)
	clock := &testClock{now: start}
	o.Now = clock.Now
	env, err := crptest.New(o)
	require.NoError(t, err)
	t.Cleanup(func() { env.Close() })
	nextCA, err := catemplate.NewCA(catemplate.CAOptions{Subject: pkix.Name{CommonName: "scepkit next CA"}})
	require.NoError(t, err)
	nextRA, err := catemplate.NewRA(nextCA, catemplate.RAOptions{Subject: pkix.Name{CommonName: "scepkit next RA"}})
	require.NoError(t, err)
	nextIssuer := &crptest.CountingIssuer{Next: crp.CAIssuer{CA: nextCA}}
	env.RP.Rollover = &crp.Rollover{At: at, CA: nextCA, RA: nextRA, Issuer: nextIssuer}
	require.NoError(t, env.RP.Validate())
	return &rolloverEnv{Env: env, clock: clock, nextCA: nextCA, nextRA: nextRA, nextIssuer: nextIssuer, at: at}
}

// serve validates the registration point and serves it over HTTP on 127.0.0.1:
// old is a device pinned to the current CA, next one pinned to the next CA.
func (e *rolloverEnv) serve(t *testing.T) (old, next *scep.Client) {
	t.Helper()
	require.NoError(t, e.RP.Validate())
	srv := crp.NewServer(e.RP, e.RA)
	require.NoError(t, srv.Validate())
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	nextFP := sha256.Sum256(e.nextCA.Certificate.Raw)
	return &scep.Client{URL: ts.URL, CAFingerprint: e.CAFingerprint(), Now: e.clock.Now}, &scep.Client{URL: ts.URL, CAFingerprint: nextFP[:], Now: e.clock.Now}
}

// TestRolloverChosenOncePerTransaction: the CA and RA are chosen once per
// transaction, when the request is received; a switch that comes while it is being
// decided (here: a check of the operator's moves the clock past Rollover.At, before
// the template is resolved or between the template and issuance) changes nothing for
// it. Before, each step read the clock on its own: the certificate came from the next
// CA in a CertRep signed by the previous RA, which scep.Client (pinned to the CA it
// fetched) refused as not chaining to its CA, after the challenge was spent; and
// Enroll resolved the template against one CA and issued with the other.
func TestRolloverChosenOncePerTransaction(t *testing.T) {
	for _, tc := range []struct {
		name  string
		phase crp.Phase
	}{
		{"switch before the template", crp.PhaseMapping},
		{"switch between template and issuance", crp.PhaseTemplate},
	} {
		for _, front := range []string{"scep", "Enroll"} {
			t.Run(tc.name+"/"+front, func(t *testing.T) {
				start := time.Now()
				env := newRolloverEnv(t, crptest.Options{}, start, start.Add(10*time.Minute))
				env.RP.Checks = append(env.RP.Checks, crp.Check{Name: "switch", Phase: tc.phase, After: true,
					Func: func(context.Context, *crp.Transaction) error {
						env.clock.Set(env.at.Add(time.Second))
						return nil
					}})
				ctx := context.Background()
				ch := mint(t, env.Env, "alice@example.com", "alice-laptop")
				req := csr(t, deviceKey, "alice@example.com", ch)
				switch front {
				case "scep":
					srv := crp.NewServer(env.RP, env.RA)
					require.NoError(t, srv.Validate())
					ts := httptest.NewServer(srv)
					defer ts.Close()
					c := &scep.Client{URL: ts.URL, CAFingerprint: env.CAFingerprint(), Now: env.clock.Now}
					got, err := c.Enroll(ctx, req.Raw, deviceKey)
					require.NoError(t, err, "the device accepts the certificate")
					require.NoError(t, got.CheckSignatureFrom(env.CA.Certificate))
					rec, err := env.RP.Certificates.Lookup(ctx, got.SerialNumber)
					require.NoError(t, err)
					require.True(t, rec.Certificate.Equal(got), "recorded as issued")
				case "Enroll":
					res, err := env.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "tx-" + tc.name, CSR: req, Challenge: ch})
					require.NoError(t, err)
					require.NoError(t, res.Certificate.CheckSignatureFrom(env.CA.Certificate))
					require.False(t, res.Certificate.NotAfter.After(env.CA.Certificate.NotAfter))
				}
				require.True(t, env.RP.Rollover.At.Before(env.clock.Now()), "the switch came during the transaction")
				require.Equal(t, 1, env.Issuer.Count(), "issued by the CA in force when the request came")
				require.Equal(t, 0, env.nextIssuer.Count())
			})
		}
	}
}

// switchAfterGetCACert serves h and moves clock to to once, right after the first
// GetCACert: the device fetched the certificates before the switch and sends its
// request after it.
func switchAfterGetCACert(h http.Handler, clock *testClock, to time.Time) http.Handler {
	var once sync.Once
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r)
		if r.URL.Query().Get("operation") == "GetCACert" {
			once.Do(func() { clock.Set(to) })
		}
	})
}

// raOutliving is an RA (one RSA key and certificate for both signing and key
// transport) that ca issued valid until notAfter, past ca's own end, as an external
// CA may issue it.
func raOutliving(t *testing.T, ca *catemplate.CA, notAfter time.Time) *catemplate.RA {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject: pkix.Name{CommonName: "long-lived RA"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter,
		KeyUsage:           x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		UnknownExtKeyUsage: []asn1.ObjectIdentifier{{1, 3, 6, 1, 4, 1, 311, 20, 2, 1}}}, ca.Certificate, key.Public(), ca.Signer)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return &catemplate.RA{SigningCertificate: cert, Signer: key, EncryptionCertificate: cert, Decrypter: key}
}

// shortLivedPKI is a CA valid for 55 minutes from now, and its RA.
func shortLivedPKI(t *testing.T) (*catemplate.CA, *catemplate.RA) {
	t.Helper()
	ca, err := catemplate.NewCA(catemplate.CAOptions{Subject: pkix.Name{CommonName: "short-lived CA"}, Validity: 55 * time.Minute})
	require.NoError(t, err)
	ra, err := catemplate.NewRA(ca, catemplate.RAOptions{})
	require.NoError(t, err)
	return ca, ra
}

// TestRolloverDeviceOnPreviousRA: a device that fetched GetCACert before the switch
// and enrolls after it, with scep.Client over HTTP, is answered with a certificate
// of the previous CA, the one it trusts, capped at that CA's end; once the previous
// CA has expired (here its RA outlives it), its request is refused with
// badMessageCheck before anything is decided, and its challenge stays usable: the
// device enrolls with it once it has fetched the next CA. Before, the certificate
// came from the next CA in a reply signed by the previous RA, which scep.Client
// refused, and the challenge was spent.
func TestRolloverDeviceOnPreviousRA(t *testing.T) {
	start := time.Now()
	at := start.Add(50 * time.Minute)
	shortCA, shortRA := shortLivedPKI(t)
	for _, tc := range []struct {
		name   string
		ca     *catemplate.CA // nil: crptest's, valid for years
		ra     func(*catemplate.CA) *catemplate.RA
		sendAt time.Time
		issued bool
	}{
		{name: "previous CA valid", sendAt: at.Add(time.Minute), issued: true},
		{name: "previous CA ending soon", ca: shortCA, ra: func(*catemplate.CA) *catemplate.RA { return shortRA },
			sendAt: at.Add(time.Minute), issued: true},
		{name: "previous CA expired", ca: shortCA, ra: func(ca *catemplate.CA) *catemplate.RA {
			return raOutliving(t, ca, start.Add(5*time.Hour))
		}, sendAt: start.Add(56 * time.Minute)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := crptest.Options{}
			if tc.ca != nil {
				o.CA, o.RA = tc.ca, tc.ra(tc.ca)
			}
			env := newRolloverEnv(t, o, start, at)
			env.clock.Set(at.Add(-time.Minute))
			srv := crp.NewServer(env.RP, env.RA)
			require.NoError(t, srv.Validate())
			ts := httptest.NewServer(switchAfterGetCACert(srv, env.clock, tc.sendAt))
			defer ts.Close()
			ctx := context.Background()
			ch := mint(t, env.Env, "alice@example.com", "alice-laptop")
			device := &scep.Client{URL: ts.URL, CAFingerprint: env.CAFingerprint(), Now: env.clock.Now}
			cert, err := device.Enroll(ctx, csr(t, deviceKey, "alice@example.com", ch).Raw, deviceKey)
			require.Equal(t, tc.sendAt, env.clock.Now(), "the request came after the switch")
			if tc.issued {
				require.NoError(t, err, "the device accepts the certificate")
				require.NoError(t, cert.CheckSignatureFrom(env.CA.Certificate), "issued by the previous CA")
				require.False(t, cert.NotAfter.After(env.CA.Certificate.NotAfter), "not past the previous CA's end")
				require.Equal(t, 1, env.Issuer.Count())
				require.Equal(t, 0, env.nextIssuer.Count())
				return
			}
			var fe *scep.FailError
			require.ErrorAs(t, err, &fe)
			require.ErrorIs(t, err, scep.ErrRefused)
			require.Equal(t, scep.BadMessageCheck, fe.Info)
			require.Nil(t, cert)
			require.Equal(t, 0, env.Issuer.Count()+env.nextIssuer.Count(), "nothing issued")
			// The challenge was not spent: with the next CA fetched, it enrolls.
			nextFP := sha256.Sum256(env.nextCA.Certificate.Raw)
			fresh := &scep.Client{URL: ts.URL, CAFingerprint: nextFP[:], Now: env.clock.Now}
			key, err := rsa.GenerateKey(rand.Reader, 2048)
			require.NoError(t, err)
			cert, err = fresh.Enroll(ctx, csr(t, key, "alice@example.com", ch).Raw, key)
			require.NoError(t, err, "the challenge is still usable")
			require.NoError(t, cert.CheckSignatureFrom(env.nextCA.Certificate))
		})
	}
}

// TestRolloverExpiredCARefusedBeforeClaim: a request a scep.Server chose an expired
// CA for (Request.CACert) is refused in the gateway step, before its challenge is
// claimed, with nothing issued; the same challenge then enrolls.
func TestRolloverExpiredCARefusedBeforeClaim(t *testing.T) {
	start := time.Now()
	at := start.Add(50 * time.Minute)
	shortCA, shortRA := shortLivedPKI(t)
	env := newRolloverEnv(t, crptest.Options{CA: shortCA, RA: shortRA}, start, at)
	env.clock.Set(at.Add(-time.Minute))
	ctx := context.Background()
	ch := mint(t, env.Env, "alice@example.com", "alice-laptop")
	env.clock.Set(start.Add(56 * time.Minute))
	req := csr(t, deviceKey, "alice@example.com", ch)
	self, err := scep.SelfSigned(deviceKey, req.Subject, nil)
	require.NoError(t, err)
	resp, err := env.RP.Respond(ctx, &scep.Request{MessageType: scep.PKCSReq, TransactionID: "stale-device",
		CSR: req, ChallengePassword: ch, Signer: self, CACert: shortCA.Certificate})
	require.Nil(t, resp)
	var e *crp.Error
	require.ErrorAs(t, err, &e)
	require.Equal(t, crp.PhaseGateway, e.Phase, "refused before the challenge is claimed: %v", err)
	require.Equal(t, scep.BadCertID, scep.FailInfoOf(err))
	require.Equal(t, 0, env.Issuer.Count()+env.nextIssuer.Count(), "nothing issued")
	res, err := env.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "fresh", CSR: req, Challenge: ch})
	require.NoError(t, err, "the challenge is still usable")
	require.NoError(t, res.Certificate.CheckSignatureFrom(env.nextCA.Certificate))
}

// TestGetCertByIssuerAndSerial: GetCert names a certificate by issuer and serial
// (RFC 8894 §3.3.4), and serials are unique per issuer only: after a rollover the
// next CA may issue a serial the previous one did. A GetCert naming the issuer of
// the certificate on record gets it; naming the other CA of the rollover, or an
// unknown issuer, gets FAILURE badCertId and no certificate. Before, the serial alone
// was looked up, and a GetCert naming the next CA returned the previous CA's
// certificate (and after the next CA issued the same serial, the other way round).
func TestGetCertByIssuerAndSerial(t *testing.T) {
	start := time.Now()
	env := newRolloverEnv(t, crptest.Options{}, start, start.Add(10*time.Minute))
	ctx := context.Background()
	ch := mint(t, env.Env, "alice@example.com", "alice-laptop")
	res, err := env.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "prev", CSR: csr(t, deviceKey, "alice@example.com", ch),
		Challenge: ch})
	require.NoError(t, err)
	prev := res.Certificate
	require.NoError(t, prev.CheckSignatureFrom(env.CA.Certificate))
	env.clock.Set(env.at.Add(time.Minute))
	self, err := scep.SelfSigned(deviceKey, pkix.Name{CommonName: "alice@example.com"}, nil)
	require.NoError(t, err)
	getCert := func(issuer []byte) (*x509.Certificate, error) {
		resp, err := env.RP.Respond(ctx, &scep.Request{MessageType: scep.GetCert, TransactionID: "get", Signer: self,
			IssuerAndSerial: &scep.IssuerAndSerial{Issuer: issuer, Serial: prev.SerialNumber}})
		if err != nil {
			require.Nil(t, resp)
			return nil, err
		}
		return resp.Certificate, nil
	}
	unknown, err := asn1.Marshal(pkix.Name{CommonName: "some other CA"}.ToRDNSequence())
	require.NoError(t, err)
	check := func(issuer []byte, want *x509.Certificate) {
		t.Helper()
		got, err := getCert(issuer)
		if want == nil {
			require.Equal(t, scep.BadCertID, scep.FailInfoOf(err), "%v", err)
			require.Nil(t, got)
			return
		}
		require.NoError(t, err)
		require.True(t, got.Equal(want))
	}
	check(env.CA.Certificate.RawSubject, prev)
	check(env.nextCA.Certificate.RawSubject, nil)
	check(unknown, nil)

	// The next CA issues the same serial: the inventory, keyed by serial, now holds
	// that certificate.
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: prev.SerialNumber,
		Subject: pkix.Name{CommonName: "bob@example.com"}, NotBefore: start, NotAfter: start.Add(time.Hour)},
		env.nextCA.Certificate, deviceKey.Public(), env.nextCA.Signer)
	require.NoError(t, err)
	next, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	require.NoError(t, env.RP.Certificates.Add(ctx, &crp.IssuedCertificate{Certificate: next, TransactionID: "next"}))
	check(env.nextCA.Certificate.RawSubject, next)
	check(env.CA.Certificate.RawSubject, nil)
	check(unknown, nil)
}

// TestRolloverCRLsPerCA: a CRL lists only its own CA's certificates (RFC 5280 §5),
// though both CAs of a rollover revoke into one store: a revocation recorded through
// one CA's publisher is that CA's; one stored before issuers were recorded (no
// Issuer) is listed by both. GetCRL answers with the CRL of the CA it names (RFC
// 8894 §3.3.4), and refuses an issuer that is not ours with badCertId. Before, each
// CA's CRL listed every revocation in the store.
func TestRolloverCRLsPerCA(t *testing.T) {
	start := time.Now()
	env := newRolloverEnv(t, crptest.Options{}, start, start.Add(10*time.Minute))
	ctx := context.Background()
	revs := &crp.MemoryRevocations{}
	prevCRL := &crp.CRLPublisher{CA: env.CA, Revocations: revs, Now: env.clock.Now}
	nextCRL := &crp.CRLPublisher{CA: env.nextCA, Revocations: revs, Now: env.clock.Now}
	env.RP.CRL, env.RP.Rollover.CRL = prevCRL.CRL, nextCRL.CRL
	for _, r := range []struct {
		serial int64
		p      *crp.CRLPublisher
	}{{1, prevCRL}, {2, nextCRL}} {
		_, err := r.p.Revoke(ctx, &crp.Revocation{Serial: big.NewInt(r.serial), RevokedAt: start})
		require.NoError(t, err)
	}
	_, err := revs.Revoke(ctx, &crp.Revocation{Serial: big.NewInt(3), RevokedAt: start}) // stored without issuer
	require.NoError(t, err)
	// The stores key revocations by serial: the next CA's serial 1, revoked after the
	// previous CA's, is refused rather than reported revoked and left off its CRL.
	_, err = nextCRL.Revoke(ctx, &crp.Revocation{Serial: big.NewInt(1), RevokedAt: start})
	require.ErrorIs(t, err, crp.ErrRevokedForOtherCA)
	env.clock.Set(env.at.Add(time.Minute))

	listed := func(der []byte, ca *x509.Certificate) []int64 {
		t.Helper()
		crl, err := x509.ParseRevocationList(der)
		require.NoError(t, err)
		require.NoError(t, crl.CheckSignatureFrom(ca))
		var out []int64
		for _, e := range crl.RevokedCertificateEntries {
			out = append(out, e.SerialNumber.Int64())
		}
		return out
	}
	for _, p := range []*crp.CRLPublisher{prevCRL, nextCRL} {
		der, err := p.CRL(ctx)
		require.NoError(t, err)
		want := []int64{1, 3}
		if p == nextCRL {
			want = []int64{2, 3}
		}
		require.ElementsMatch(t, want, listed(der, p.CA.Certificate), p.CA.Certificate.Subject.String())
	}

	self, err := scep.SelfSigned(deviceKey, pkix.Name{CommonName: "crl reader"}, nil)
	require.NoError(t, err)
	getCRL := func(issuer []byte) ([]byte, error) {
		resp, err := env.RP.Respond(ctx, &scep.Request{MessageType: scep.GetCRL, TransactionID: "crl", Signer: self,
			IssuerAndSerial: &scep.IssuerAndSerial{Issuer: issuer, Serial: big.NewInt(1)}})
		if err != nil {
			return nil, err
		}
		return resp.CRL, nil
	}
	der, err := getCRL(env.CA.Certificate.RawSubject)
	require.NoError(t, err)
	require.ElementsMatch(t, []int64{1, 3}, listed(der, env.CA.Certificate))
	der, err = getCRL(env.nextCA.Certificate.RawSubject)
	require.NoError(t, err)
	require.ElementsMatch(t, []int64{2, 3}, listed(der, env.nextCA.Certificate))
	unknown, err := asn1.Marshal(pkix.Name{CommonName: "some other CA"}.ToRDNSequence())
	require.NoError(t, err)
	der, err = getCRL(unknown)
	require.Equal(t, scep.BadCertID, scep.FailInfoOf(err), "%v", err)
	require.Nil(t, der)
}

// TestRolloverRenewalOneSignatureCheck: after a rollover to a CA with the same name
// (a CA renewed with a new key), renewing a certificate of the previous CA costs one
// signature check: the issuer name and key identifier choose the CA to verify
// against, and the revocation list to ask. Before, it cost three: against the next
// CA (failing) then the previous one to recognise the signer, and against the next
// CA again to choose the revocation list.
func TestRolloverRenewalOneSignatureCheck(t *testing.T) {
	start := time.Now()
	env := newRolloverEnv(t, crptest.Options{}, start, start.Add(10*time.Minute))
	sameName, err := catemplate.NewCA(catemplate.CAOptions{Subject: env.CA.Certificate.Subject})
	require.NoError(t, err)
	require.Equal(t, env.CA.Certificate.RawSubject, sameName.Certificate.RawSubject)
	nextRA, err := catemplate.NewRA(sameName, catemplate.RAOptions{})
	require.NoError(t, err)
	nextIssuer := &crptest.CountingIssuer{Next: crp.CAIssuer{CA: sameName}}
	// Renewal signers checked against the revocations of the CA that issued them.
	env.RP.Issuer, env.RP.Revocation = crp.CAIssuer{CA: env.CA}, nil
	env.RP.Rollover = &crp.Rollover{At: env.at, CA: sameName, RA: nextRA, Issuer: nextIssuer}
	env.nextCA, env.nextRA, env.nextIssuer = sameName, nextRA, nextIssuer
	old, client := env.serve(t)
	ctx := context.Background()
	cert, err := old.Enroll(ctx, csr(t, deviceKey, "alice@example.com", mint(t, env.Env, "alice@example.com", "alice-laptop")).Raw, deviceKey)
	require.NoError(t, err)
	env.clock.Set(env.at.Add(time.Minute))

	stop := crp.CountSignatureChecks()
	renewed, err := client.Renew(ctx, csr(t, deviceKey, "alice@example.com", "").Raw, cert, deviceKey)
	checks := stop()
	require.NoError(t, err)
	require.NoError(t, renewed.CheckSignatureFrom(sameName.Certificate))
	require.Equal(t, 1, nextIssuer.Count())
	require.Equal(t, 1, checks, "signature checks of the renewal signer")

	// A certificate of the previous CA revoked there is still refused.
	require.NoError(t, env.CA.Revoke(renewed.SerialNumber, 1, env.clock.Now()))
	_, err = client.Renew(ctx, csr(t, deviceKey, "alice@example.com", "").Raw, renewed, deviceKey)
	require.NoError(t, err, "revoked by the previous CA, not the one that issued it")
}

// TestRolloverPendingApprovedAfterSwitch: a request that went PENDING before the
// switch (its template needs approval) and is approved after it is issued by the CA
// chosen when it was received, which its device, still polling through the previous
// RA, trusts; the record keeps that choice (Record.CAHash). Before, Approve issued with
// the CA in force at approval, and the device refused the certificate its poll got.
func TestRolloverPendingApprovedAfterSwitch(t *testing.T) {
	start := time.Now()
	env := newRolloverEnv(t, crptest.Options{}, start, start.Add(10*time.Minute))
	env.Templates[crptest.TemplateName].RequiresApproval = true
	old, _ := env.serve(t)
	old.PollInterval = 20 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	type result struct {
		cert *x509.Certificate
		err  error
	}
	done := make(chan result, 1)
	go func() {
		cert, err := old.Enroll(ctx, csr(t, deviceKey, "alice@example.com", mint(t, env.Env, "alice@example.com", "alice-laptop")).Raw, deviceKey)
		done <- result{cert, err}
	}()
	var id string
	require.Eventually(t, func() bool {
		recs, err := env.Store.Pending(ctx, "", 0)
		if err != nil || len(recs) == 0 {
			return false
		}
		id = recs[0].TransactionID
		return true
	}, 10*time.Second, 10*time.Millisecond, "the request is pending")
	env.clock.Set(env.at.Add(time.Minute))
	approved, err := env.RP.Approve(ctx, id)
	require.NoError(t, err)
	require.NoError(t, approved.CheckSignatureFrom(env.CA.Certificate), "issued by the CA the request was received for")
	r := <-done
	require.NoError(t, r.err, "the device accepts the certificate its poll gets")
	require.True(t, r.cert.Equal(approved))
	require.Equal(t, 0, env.nextIssuer.Count())
}
