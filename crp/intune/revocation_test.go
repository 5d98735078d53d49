package intune_test

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scepkit/scepkit/catemplate"
	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/intune"
	"github.com/scepkit/scepkit/crp/intune/intunetest"
	"github.com/scepkit/scepkit/profile"
	"github.com/stretchr/testify/require"
)

func TestRevocation(t *testing.T) {
	g := newGateway(t, false)
	ctx := context.Background()
	ch := g.Emu.Challenge(intunetest.Verdict{})
	res, err := g.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "tx-rev", CSR: csr(t, "d", ch), Challenge: ch})
	require.NoError(t, err)
	serial := g.Emu.Successes()[0].Notification.CertificateSerialNumber

	issued := g.Emu.QueueRevocation(serial, "")
	unknown := g.Emu.QueueRevocation("0BADC0DE", "")
	flaky := g.Emu.QueueRevocation("0A0B", "")
	down := g.Emu.QueueRevocation("0C0D", "")
	bad := g.Emu.QueueRevocation("not-hex", "")

	ca := &intune.CARevoker{CA: g.CA, Certificates: g.Certificates}
	var mu sync.Mutex
	calls := map[string]int{}
	flakyFails := 1
	revoker := intune.RevokerFunc(func(ctx context.Context, req *intune.RevocationRequest) error {
		mu.Lock()
		calls[req.RequestContext]++
		mu.Unlock()
		switch req.RequestContext {
		case flaky:
			if flakyFails > 0 {
				flakyFails--
				return fmt.Errorf("%w: CA busy", crp.ErrUnavailable)
			}
			return nil
		case down:
			return fmt.Errorf("%w: CA down", crp.ErrUnavailable)
		}
		return ca.Revoke(ctx, req)
	})
	// The first upload meets a 503: the call is retried.
	g.Emu.SetFault(intunetest.OpUpload, intunetest.Fault{Status: 503, Times: 1})
	p := &intune.Poller{Client: g.Client, Revoker: revoker, Batch: 10, Backoff: time.Millisecond, Attempts: 2}
	r, err := p.Poll(ctx)
	require.NoError(t, err)
	require.Equal(t, intune.PollResult{Downloaded: 5, Revoked: 2, Failed: 3}, r)
	require.Equal(t, map[string]int{issued: 1, unknown: 1, flaky: 2, down: 2, bad: 1}, calls)
	require.True(t, g.CA.IsRevoked(res.Certificate.SerialNumber))
	require.Equal(t, 2, g.Emu.Calls(intunetest.OpUpload))

	codes := map[string]intune.ErrorCode{}
	for _, x := range g.Emu.RevocationResults() {
		codes[x.RequestContext] = x.ErrorCode
		require.Equal(t, x.ErrorCode == intune.ErrorNone, x.Succeeded)
	}
	require.Equal(t, map[string]intune.ErrorCode{issued: intune.ErrorNone, unknown: intune.ErrorCertificateNotFound,
		flaky: intune.ErrorNone, down: intune.ErrorServiceUnavailable, bad: intune.ErrorParameterDataInvalid}, codes)
	// The retryable one stays queued and is offered again.
	pending := g.Emu.PendingRevocations()
	require.Len(t, pending, 1)
	require.Equal(t, down, pending[0].RequestContext)
	require.Empty(t, g.Emu.Violations())
}

// Run polls until its context ends, backs off after failures, and leaves nothing
// running.
func TestPollerRun(t *testing.T) {
	emu := intunetest.NewServer()
	defer emu.Close()
	c := emu.Client("scepkit-test/1.0")
	revoked := make(chan string, 10)
	p := &intune.Poller{Client: c, Interval: 20 * time.Millisecond, Backoff: 5 * time.Millisecond,
		Revoker: intune.RevokerFunc(func(_ context.Context, req *intune.RevocationRequest) error {
			revoked <- req.SerialNumber
			return nil
		})}
	emu.SetFault(intunetest.OpDownload, intunetest.Fault{Status: 500, Times: 2})
	emu.QueueRevocation("01", "")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx) }()
	select {
	case s := <-revoked:
		require.Equal(t, "01", s)
	case <-time.After(10 * time.Second):
		t.Fatal("no revocation")
	}
	require.Eventually(t, func() bool { return len(emu.PendingRevocations()) == 0 }, 10*time.Second, 5*time.Millisecond,
		"result uploaded")
	cancel()
	select {
	case err := <-done:
		require.True(t, errors.Is(err, context.Canceled))
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not stop")
	}
	require.GreaterOrEqual(t, emu.Calls(intunetest.OpDownload), 3)
	require.Error(t, (&intune.Poller{}).Run(context.Background()))
}

// The upload body scepkit sends: errorCode as the member name in a JSON string, as
// Microsoft's C# library sends it (testdata/upload.json, built from that shape);
// Java's form (the value in a string) reads back the same, a JSON number does not.
func TestErrorCodeWire(t *testing.T) {
	got, err := json.Marshal(map[string]any{"results": []intune.RevocationResult{
		{RequestContext: "ctx-revoked", Succeeded: true},
		{RequestContext: "ctx-unknown", ErrorCode: intune.ErrorCertificateNotFound, ErrorMessage: "certificate not found"}}})
	require.NoError(t, err)
	want, err := os.ReadFile("testdata/upload.json")
	require.NoError(t, err)
	require.Equal(t, strings.TrimSpace(string(want)), string(got))

	for _, c := range []struct {
		in   string
		want intune.ErrorCode
		err  string
	}{
		{`"CertificateNotFoundError"`, intune.ErrorCertificateNotFound, ""},
		{`"4004"`, intune.ErrorCertificateNotFound, ""},
		{`"0"`, intune.ErrorNone, ""},
		{`"None"`, intune.ErrorNone, ""},
		{`4004`, 0, "not a JSON string"},
		{`"4050"`, 0, "names no member"},
		{`"04004"`, 0, "names no member"},
		{`"certificateNotFoundError"`, 0, "names no member"},
	} {
		var code intune.ErrorCode
		err := json.Unmarshal([]byte(c.in), &code)
		if c.err != "" {
			require.ErrorContains(t, err, c.err, c.in)
			continue
		}
		require.NoError(t, err, c.in)
		require.Equal(t, c.want, code, c.in)
	}
	// A Revoker's code outside the enumeration is reported as NonRetryableServiceException.
	emu := intunetest.NewServer()
	defer emu.Close()
	emu.QueueRevocation("01", "")
	p := &intune.Poller{Client: emu.Client("scepkit-test/1.0"), Revoker: intune.RevokerFunc(func(context.Context, *intune.RevocationRequest) error {
		return &intune.RevocationError{Code: 4050, Err: errors.New("odd")}
	})}
	_, err = p.Poll(context.Background())
	require.NoError(t, err)
	require.Equal(t, intune.ErrorNonRetryable, emu.RevocationResults()[0].ErrorCode)
	require.Empty(t, emu.Violations())
}

// A request's issuerName and caConfiguration select the CA: one meant for another CA
// is answered CertificateNotFoundError and leaves our certificate with the same
// serial alone. Revocations are recorded in the RevocationStore before they are
// reported; a store that fails leaves the request queued (retryable) and the
// certificate unrevoked.
func TestRevocationSelectsCAAndPersists(t *testing.T) {
	g := newGateway(t, false)
	ctx := context.Background()
	var serials []string
	for i := 0; i < 2; i++ {
		ch := g.Emu.Challenge(intunetest.Verdict{})
		_, err := g.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: fmt.Sprintf("tx-%d", i), CSR: csr(t, "d", ch), Challenge: ch})
		require.NoError(t, err)
		serials = append(serials, g.Emu.Successes()[i].Notification.CertificateSerialNumber)
	}
	issuer := g.Emu.Successes()[0].Notification.IssuingCertificateAuthority
	store := &crp.MemoryRevocations{}
	revoker := &intune.CARevoker{CA: g.CA, Certificates: g.Certificates, Revocations: store, CAConfiguration: `ca.example.com\scepkit`}
	ours := g.Emu.Queue(intune.RevocationRequest{SerialNumber: serials[0], IssuerName: strings.ToUpper(issuer),
		CAConfiguration: `ca.example.com\scepkit`})
	otherIssuer := g.Emu.Queue(intune.RevocationRequest{SerialNumber: serials[1], IssuerName: "CN=Another Issuing CA"})
	otherConfig := g.Emu.Queue(intune.RevocationRequest{SerialNumber: serials[1], CAConfiguration: `ca2.example.com\Other CA`})
	p := &intune.Poller{Client: g.Client, Revoker: revoker, Backoff: time.Millisecond}
	r, err := p.Poll(ctx)
	require.NoError(t, err)
	require.Equal(t, intune.PollResult{Downloaded: 3, Revoked: 1, Failed: 2}, r)
	codes := map[string]intune.ErrorCode{}
	for _, x := range g.Emu.RevocationResults() {
		codes[x.RequestContext] = x.ErrorCode
	}
	require.Equal(t, map[string]intune.ErrorCode{ours: intune.ErrorNone, otherIssuer: intune.ErrorCertificateNotFound,
		otherConfig: intune.ErrorCertificateNotFound}, codes)
	s0, _ := new(big.Int).SetString(serials[0], 16)
	s1, _ := new(big.Int).SetString(serials[1], 16)
	require.True(t, g.CA.IsRevoked(s0))
	require.False(t, g.CA.IsRevoked(s1), "a request for another CA is not applied to ours")
	recs, err := store.RevokedSince(ctx, time.Time{})
	require.NoError(t, err)
	require.Len(t, recs, 1)
	require.Equal(t, 0, recs[0].Serial.Cmp(s0))
	require.Equal(t, "intune:"+ours, recs[0].By)
	der, err := g.CA.CRL(ctx, time.Now().Add(time.Hour))
	require.NoError(t, err)
	crl, err := x509.ParseRevocationList(der)
	require.NoError(t, err)
	require.Len(t, crl.RevokedCertificateEntries, 1, "in the CA's CRL")
	require.Equal(t, 0, crl.RevokedCertificateEntries[0].SerialNumber.Cmp(s0))

	// A restart: the CA loaded again has no revocations in memory; Restore puts the
	// store's back, and the CRL shows them.
	dir := t.TempDir()
	require.NoError(t, catemplate.SaveCA(dir, g.CA))
	reloaded, err := catemplate.LoadCA(dir)
	require.NoError(t, err)
	require.False(t, reloaded.IsRevoked(s0))
	require.NoError(t, (&intune.CARevoker{CA: reloaded, Revocations: store}).Restore(ctx))
	require.True(t, reloaded.IsRevoked(s0))
	require.False(t, reloaded.IsRevoked(s1))
	der, err = reloaded.CRL(ctx, time.Now().Add(time.Hour))
	require.NoError(t, err)
	crl, err = x509.ParseRevocationList(der)
	require.NoError(t, err)
	require.Len(t, crl.RevokedCertificateEntries, 1)
	require.True(t, crl.RevokedCertificateEntries[0].RevocationTime.Equal(recs[0].RevokedAt.Truncate(time.Second)))

	// The store fails: nothing revoked, ServiceUnavailableException, offered again.
	revoker.Revocations = failingRevocations{}
	again := g.Emu.Queue(intune.RevocationRequest{SerialNumber: serials[1]})
	p.Attempts = 2
	_, err = p.Poll(ctx)
	require.NoError(t, err)
	res := g.Emu.RevocationResults()
	require.Equal(t, intune.ErrorServiceUnavailable, res[len(res)-1].ErrorCode)
	require.False(t, g.CA.IsRevoked(s1))
	require.Equal(t, again, g.Emu.PendingRevocations()[0].RequestContext)
	require.Empty(t, g.Emu.Violations())
}

type failingRevocations struct{}

func (failingRevocations) Revoke(context.Context, *crp.Revocation) (*crp.Revocation, error) {
	return nil, errors.New("store down")
}

func (failingRevocations) RevokedSince(context.Context, time.Time) ([]*crp.Revocation, error) {
	return nil, errors.New("store down")
}

// TestRevocationSerialOfOtherCA: stores keep revocations by serial alone. When the
// store already holds a revocation of the serial for another CA's certificate, it
// keeps that one and records nothing for ours: the revocation would not survive a
// restart (Restore skips the other CA's record), so it is not reported to Intune as
// done. The CA's in-memory list is left as it was.
func TestRevocationSerialOfOtherCA(t *testing.T) {
	ctx := context.Background()
	ca, err := catemplate.NewCA(catemplate.CAOptions{KeySize: 2048})
	require.NoError(t, err)
	other, err := catemplate.NewCA(catemplate.CAOptions{KeySize: 2048, Subject: pkix.Name{CommonName: "another CA"}})
	require.NoError(t, err)
	store := &crp.MemoryRevocations{}
	_, err = store.Revoke(ctx, &crp.Revocation{Serial: big.NewInt(7), RevokedAt: time.Now(), By: "admin",
		Issuer: other.Certificate.RawSubject})
	require.NoError(t, err)
	r := &intune.CARevoker{CA: ca, Revocations: store}
	err = r.Revoke(ctx, &intune.RevocationRequest{RequestContext: "rc-1", SerialNumber: "07"})
	require.ErrorIs(t, err, crp.ErrRevokedForOtherCA)
	var re *intune.RevocationError
	require.ErrorAs(t, err, &re)
	require.Equal(t, intune.ErrorConflict, re.Code)
	require.False(t, ca.IsRevoked(big.NewInt(7)))
}

// TestRevocationIssuerNameEscaped: a CA whose subject has a comma in a value and a
// multi-valued RDN answers requests naming it however the DN string is escaped or
// the RDN ordered, and no other: "O=Example\,Inc." is not "O=Example\, Inc.".
func TestRevocationIssuerNameEscaped(t *testing.T) {
	ca, err := catemplate.NewCA(catemplate.CAOptions{KeyType: profile.ECDSAP256, Subject: pkix.Name{CommonName: "Issuing CA",
		Organization: []string{"Example, Inc."}, OrganizationalUnit: []string{"PKI", "Ops"}}})
	require.NoError(t, err)
	// What success notifications send by default: DER sorts the values of the
	// multi-valued RDN, so they are not in the order given above.
	require.Equal(t, `CN=Issuing CA,OU=Ops+OU=PKI,O=Example\, Inc.`, ca.Certificate.Subject.String())
	for _, c := range []struct {
		name, issuer string
		ours         bool
	}{
		{"as written", ca.Certificate.Subject.String(), true},
		{"the RDN in the order given", `CN=Issuing CA,OU=PKI+OU=Ops,O=Example\, Inc.`, true},
		{"comma in hex, case, spaced", `cn=issuing ca, OU=Ops + OU=PKI, O=Example\2C Inc.`, true},
		{"without the space after the escaped comma", `CN=Issuing CA,OU=Ops+OU=PKI,O=Example\,Inc.`, false},
		{"the escaped comma a separator", `CN=Issuing CA,OU=PKI+OU=Ops,O=Example, Inc.`, false},
		{"the RDN split in two", `CN=Issuing CA,OU=Ops,OU=PKI,O=Example\, Inc.`, false},
	} {
		t.Run(c.name, func(t *testing.T) { requireIssuerOurs(t, ca, c.issuer, c.ours) })
	}
}

// requireIssuerOurs asks ca's CARevoker to revoke a serial under issuer: done when
// ours, refused as another CA's otherwise.
func requireIssuerOurs(t *testing.T, ca *catemplate.CA, issuer string, ours bool) {
	t.Helper()
	r := &intune.CARevoker{CA: ca}
	err := r.Revoke(context.Background(), &intune.RevocationRequest{RequestContext: "rc", SerialNumber: "0A", IssuerName: issuer})
	if ours {
		require.NoError(t, err)
	} else {
		require.ErrorIs(t, err, intune.ErrOtherCA)
	}
}

// TestRevocationIssuerNameCompared: a request's issuerName is compared with the CA's
// without regard to case or to the spaces after commas, however many.
func TestRevocationIssuerNameCompared(t *testing.T) {
	ca, err := catemplate.NewCA(catemplate.CAOptions{KeySize: 2048,
		Subject: pkix.Name{CommonName: "Issuing CA", Organization: []string{"Example"}}})
	require.NoError(t, err)
	for _, c := range []struct {
		name, issuer string
		ours         bool
	}{
		{"as written", ca.Certificate.Subject.String(), true},
		{"other case", "cn=ISSUING CA,o=example", true},
		{"a space after the comma", "CN=Issuing CA, O=Example", true},
		{"two spaces after the comma", "CN=Issuing CA,  O=Example", true},
		{"a tab after the comma", "CN=Issuing CA,\tO=Example", true},
		{"another CA", "CN=Issuing CA 2,O=Example", false},
		{"a space inside a value", "CN=IssuingCA,O=Example", false},
	} {
		t.Run(c.name, func(t *testing.T) { requireIssuerOurs(t, ca, c.issuer, c.ours) })
	}
}
