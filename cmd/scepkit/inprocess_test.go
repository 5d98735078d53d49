package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/intune"
	"github.com/scepkit/scepkit/internal/scepclienttest"
	"github.com/scepkit/scepkit/scep"
	"github.com/stretchr/testify/require"
)

// inProcess is a gateway assembled in the test's process from a fixture's
// configuration (the same newGateway the binary runs), its public handler served over
// HTTP and its admin API over HTTPS on loopback (under httptest's certificate, written
// to the fixture as inprocess-admin-ca.pem), reached with the bearer token.
type inProcess struct {
	g      *gateway
	a      *admin // the admin API's handler, served by admin
	f      *fixture
	public *httptest.Server
	admin  *httptest.Server
	logs   *syncBuffer
}

// startInProcess assembles the gateway of f.config(top, extra).
func startInProcess(t *testing.T, f *fixture, top, extra string) *inProcess {
	t.Helper()
	c, err := loadConfig(f.config(t, top, extra), func(string) (string, bool) { return "", false })
	require.NoError(t, err)
	p := &inProcess{f: f, logs: &syncBuffer{}}
	p.public = httptest.NewUnstartedServer(nil)
	c.PublicURL = "http://" + p.public.Listener.Addr().String()
	log := slog.New(slog.NewJSONHandler(p.logs, nil))
	p.g, err = newGateway(context.Background(), c, log)
	require.NoError(t, err)
	t.Cleanup(p.g.close)
	p.public.Config.Handler = p.g.publicHandler()
	p.public.Start()
	t.Cleanup(p.public.Close)
	token, err := adminToken(c)
	require.NoError(t, err)
	p.a = newAdmin(p.g, nil, token)
	p.admin = httptest.NewTLSServer(p.a.handler())
	t.Cleanup(p.admin.Close)
	f.write(t, "inprocess-admin-ca.pem", pemCert(p.admin.Certificate()))
	return p
}

// call sends one request to the admin API with the bearer token and returns the
// status and body.
func (p *inProcess) call(t *testing.T, method, path string, body []byte) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, p.admin.URL+path, rd)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+p.f.token)
	resp, err := p.admin.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(out)
}

// addIssued records n certificates issued by the gateway's CA for user and device
// in the gateway's store, as the registration point records what it obtained, and
// returns them in issuing order. Their keys are P-256 (cheap), their NotAfter an
// hour apart from now + 1h.
func (p *inProcess) addIssued(t *testing.T, n int, user, device string) []*x509.Certificate {
	t.Helper()
	return p.addIssuedAs(t, n, user, device, false)
}

// addIssuedAs is addIssued, of certificates withheld from their device when withheld
// is set (as the registration point records those).
func (p *inProcess) addIssuedAs(t *testing.T, n int, user, device string, withheld bool) []*x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	now := time.Now().Truncate(time.Second)
	var out []*x509.Certificate
	for i := range n {
		serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
		require.NoError(t, err)
		cert, err := p.g.ca.Sign(context.Background(), &x509.Certificate{SerialNumber: serial.Add(serial, big.NewInt(1)),
			Subject:   pkix.Name{CommonName: user},
			NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Duration(i+1) * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, key.Public())
		require.NoError(t, err)
		require.NoError(t, p.g.store.Add(context.Background(), &crp.IssuedCertificate{Certificate: cert,
			UserID: user, DeviceID: device, ProfileID: "win", Template: "scepkit-user", IssuedAt: now, Withheld: withheld}))
		out = append(out, cert)
	}
	return out
}

// revocationsDown is the gateway's real store whose revocation check fails, as a
// store does whose revocations live elsewhere (a separate database) that is down
// while the certificate inventory answers.
type revocationsDown struct{ crp.Store }

func (revocationsDown) IsRevoked(context.Context, *x509.Certificate) (bool, error) {
	return false, errRevocationsDown
}

// errRevocationsDown reads as a driver's error, whose text must not reach the client.
var errRevocationsDown = errors.New("dial tcp 127.0.0.1:5432: connect: connection refused")

// TestAdminRevocationCheckFailure: while the revocation check fails, the admin API
// answers 503 for one certificate and for a list, with no JSON claiming "revoked":
// false and without the store's error text (before, IsRevoked's error was dropped and
// the answer said "not revoked").
func TestAdminRevocationCheckFailure(t *testing.T) {
	p := startInProcess(t, newFixture(t), "", "")
	certs := p.addIssued(t, 2, "alice@example.com", "alice-laptop")
	serial := certs[0].SerialNumber.Text(16)

	code, body := p.call(t, http.MethodGet, "/v1/certificates/"+serial, nil)
	require.Equal(t, http.StatusOK, code, body)
	var one apiCertificate
	require.NoError(t, json.Unmarshal([]byte(body), &one))
	require.Equal(t, serial, one.Serial)
	require.False(t, one.Revoked)

	p.g.store = revocationsDown{p.g.store}
	for _, path := range []string{"/v1/certificates/" + serial, "/v1/certificates", "/v1/certificates?user=alice@example.com"} {
		code, body := p.call(t, http.MethodGet, path, nil)
		require.Equal(t, http.StatusServiceUnavailable, code, "%s: %s", path, body)
		require.NotContains(t, body, "revoked", path)
		require.NotContains(t, body, "127.0.0.1", "%s: no store error text in the answer", path)
	}
	require.Contains(t, p.logs.String(), "connection refused", "the error is logged for the operator")
}

// TestAdminCertificateNamesIssuer: the admin API names each certificate's issuer, one
// by one and in a list, so that after a rollover an operator can tell the previous
// CA's certificates from the next's (the rollover's last step waits for the previous
// CA's to expire). Before, the issuer was not in the answer.
func TestAdminCertificateNamesIssuer(t *testing.T) {
	p := startInProcess(t, newFixture(t), "", "")
	certs := p.addIssued(t, 1, "alice@example.com", "alice-laptop")
	want := p.g.ca.Certificate.Subject.String()
	code, body := p.call(t, http.MethodGet, "/v1/certificates/"+certs[0].SerialNumber.Text(16), nil)
	require.Equal(t, http.StatusOK, code, body)
	var one apiCertificate
	require.NoError(t, json.Unmarshal([]byte(body), &one))
	require.Equal(t, want, one.Issuer)
	code, body = p.call(t, http.MethodGet, "/v1/certificates?user=alice@example.com", nil)
	require.Equal(t, http.StatusOK, code, body)
	var page certificatePage
	require.NoError(t, json.Unmarshal([]byte(body), &page))
	require.Len(t, page.Certificates, 1)
	require.Equal(t, want, page.Certificates[0].Issuer)
}

// pendingList lists the first page of pending requests through the admin API.
func (p *inProcess) pendingList(t *testing.T) []pendingRequest {
	t.Helper()
	code, body := p.call(t, http.MethodGet, "/v1/pending", nil)
	require.Equal(t, http.StatusOK, code, body)
	var out pendingPage
	require.NoError(t, json.Unmarshal([]byte(body), &out), body)
	return out.Pending
}

// enrollPending has a real SCEP client enroll bob's phone with a gateway that
// requires approval, and returns the pending request and the enrollment's outcome,
// delivered once the client gives up or collects its certificate.
func (p *inProcess) enrollPending(t *testing.T) (pendingRequest, *scepclienttest.Device, <-chan error) {
	t.Helper()
	dev := scepclienttest.NewDevice(t)
	done := make(chan error, 1)
	ch := p.f.challenge(t, "bob@example.com", "bob-phone")
	go func() {
		out, err := dev.Enroll(p.public.URL+"/scep", "bob@example.com", ch)
		if err != nil {
			err = fmt.Errorf("%w: %s", err, out)
		}
		done <- err
	}()
	var pending []pendingRequest
	require.Eventually(t, func() bool { pending = p.pendingList(t); return len(pending) == 1 },
		30*time.Second, 100*time.Millisecond, "the request is not pending")
	return pending[0], dev, done
}

// TestAdminApproveAnswers: approving answers with the certificate and whom it was
// issued for (before, user, device, profile and template were empty); an unknown
// transaction is 404, a decided one 409 (approve or reject), and neither issues.
func TestAdminApproveAnswers(t *testing.T) {
	p := startInProcess(t, newFixture(t), "require_approval = true\n", "")
	pending, dev, done := p.enrollPending(t)
	require.Equal(t, "bob@example.com", pending.UserID)

	code, body := p.call(t, http.MethodPost, "/v1/pending/no-such-transaction/approve", nil)
	require.Equal(t, http.StatusNotFound, code, body)
	require.Len(t, p.pendingList(t), 1, "still pending")

	code, body = p.call(t, http.MethodPost, "/v1/pending/"+url.PathEscape(pending.TransactionID)+"/approve", nil)
	require.Equal(t, http.StatusOK, code, body)
	var got apiCertificate
	require.NoError(t, json.Unmarshal([]byte(body), &got))
	require.Equal(t, apiCertificate{Serial: got.Serial, Subject: "CN=bob@example.com",
		Issuer: p.g.ca.Certificate.Subject.String(), UserID: "bob@example.com",
		DeviceID: "bob-phone", ProfileID: "win", Template: "scepkit-user", NotBefore: got.NotBefore,
		NotAfter: got.NotAfter}, got)
	require.NotEmpty(t, got.Serial)

	for _, op := range []string{"approve", "reject"} {
		code, body = p.call(t, http.MethodPost, "/v1/pending/"+url.PathEscape(pending.TransactionID)+"/"+op, nil)
		require.Equal(t, http.StatusConflict, code, "%s again: %s", op, body)
	}
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(90 * time.Second):
		t.Fatal("the client did not collect the approved certificate")
	}
	cert, err := dev.Certificate()
	require.NoError(t, err)
	require.Equal(t, got.Serial, cert.SerialNumber.Text(16), "the answer names the certificate the device got")
	list, err := p.g.store.Certificates(context.Background(), crp.CertificateQuery{})
	require.NoError(t, err)
	require.Len(t, list, 1, "one certificate issued, whatever was asked after")
}

// TestAdminListsPage: the list calls answer pages with a next cursor; following it,
// each of 250 pending requests and of 250 certificates (beside another user's, with
// a filter) is reached exactly once (before, the lists stopped at the first 100 with
// no way on). A cursor that is not one is 400.
func TestAdminListsPage(t *testing.T) {
	p := startInProcess(t, newFixture(t), "", "")
	ctx := context.Background()
	const n = 250
	want := map[string]int{}
	for i := range n {
		id := fmt.Sprintf("tx-%04d", i)
		require.NoError(t, p.g.rp.Transactions.Put(ctx, &crp.Record{TransactionID: id, Status: scep.Pending,
			UserID: "bob@example.com", DeviceID: "bob-phone", ProfileID: "win", Expires: time.Now().Add(time.Hour)}))
		want[id] = 1
	}
	walk := func(path, field string, key func(json.RawMessage) string) (map[string]int, int) {
		seen, pages := map[string]int{}, 0
		next := ""
		for {
			pages++
			require.Less(t, pages, 10, "the pages do not end")
			u := path
			if next != "" {
				u += map[bool]string{true: "&", false: "?"}[strings.Contains(u, "?")] + "after=" + url.QueryEscape(next)
			}
			code, body := p.call(t, http.MethodGet, u, nil)
			require.Equal(t, http.StatusOK, code, body)
			var page map[string]json.RawMessage
			require.NoError(t, json.Unmarshal([]byte(body), &page))
			var entries []json.RawMessage
			require.NoError(t, json.Unmarshal(page[field], &entries))
			require.LessOrEqual(t, len(entries), pageSize)
			for _, e := range entries {
				seen[key(e)]++
			}
			next = ""
			if raw, ok := page["next"]; ok {
				require.NoError(t, json.Unmarshal(raw, &next))
			}
			if next == "" {
				return seen, pages
			}
		}
	}
	seen, pages := walk("/v1/pending", "pending", func(e json.RawMessage) string {
		var pr pendingRequest
		require.NoError(t, json.Unmarshal(e, &pr))
		return pr.TransactionID
	})
	require.Equal(t, want, seen)
	require.Equal(t, 3, pages)

	certs := p.addIssued(t, n, "alice@example.com", "alice-laptop")
	p.addIssued(t, 30, "bob@example.com", "bob-phone")
	want = map[string]int{}
	for _, c := range certs {
		want[c.SerialNumber.Text(16)] = 1
	}
	serialOf := func(e json.RawMessage) string {
		var c apiCertificate
		require.NoError(t, json.Unmarshal(e, &c))
		return c.Serial
	}
	seen, pages = walk("/v1/certificates?user=alice@example.com", "certificates", serialOf)
	require.Equal(t, want, seen)
	require.Equal(t, 3, pages)
	seen, _ = walk("/v1/certificates", "certificates", serialOf)
	require.Len(t, seen, n+30)

	// The admin CLI follows the pages and prints every entry once.
	for _, args := range [][]string{{"pending"}, {"certs", "-user", "alice@example.com"}} {
		out, err := exec.Command(bin, append([]string{"admin", "-url", p.admin.URL, "-ca", p.f.path("inprocess-admin-ca.pem"),
			"-token-file", p.f.path("token")}, args...)...).Output()
		require.NoError(t, err, "%v", args)
		var entries []map[string]any
		require.NoError(t, json.Unmarshal(out, &entries), "%v", args)
		ids := map[any]bool{}
		for _, e := range entries {
			ids[e["transaction_id"]], ids[e["serial"]] = true, true
		}
		require.Len(t, entries, n, "%v", args)
		require.Len(t, ids, n+1, "%v: each entry once", args) // and nil, of the absent key
	}

	for _, bad := range []string{"x", "12", "-3f", "12-", "12-zz", "012-3f", "-1-3f", "12-0"} {
		code, body := p.call(t, http.MethodGet, "/v1/certificates?after="+url.QueryEscape(bad), nil)
		require.Equal(t, http.StatusBadRequest, code, "after=%s: %s", bad, body)
	}
}

// TestAdminStrictBodies: a body with a field the call does not take (approve takes
// none), or anything but white space after its JSON object, is 400 with what is wrong,
// and changes nothing:
// the request stays pending, the certificate unrevoked (before, both were acted on:
// the unknown field ignored, the second object unread). The well-formed bodies that
// follow do act, so the test tells the two apart.
func TestAdminStrictBodies(t *testing.T) {
	p := startInProcess(t, newFixture(t), "", "")
	ctx := context.Background()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "bob@example.com"}}, key)
	require.NoError(t, err)
	require.NoError(t, p.g.rp.Transactions.Put(ctx, &crp.Record{TransactionID: "tx-1", Status: scep.Pending, CSR: csr,
		Request: []byte("request-1"), UserID: "bob@example.com", DeviceID: "bob-phone", ProfileID: "win",
		Expires: time.Now().Add(time.Hour)}))
	cert := p.addIssued(t, 1, "alice@example.com", "alice-laptop")[0]
	revokePath := "/v1/certificates/" + cert.SerialNumber.Text(16) + "/revoke"

	for _, tc := range []struct {
		name, path, body, says string
	}{
		{"reject, unknown field", "/v1/pending/tx-1/reject", `{"reason": "dup", "notify": false}`, `unknown field \"notify\"`},
		{"reject, misspelt field", "/v1/pending/tx-1/reject", `{"reasons": "dup"}`, `unknown field \"reasons\"`},
		{"reject, second object", "/v1/pending/tx-1/reject", `{"reason": "dup"}{"reason": "other"}`, "data after the JSON object"},
		{"reject, trailing garbage", "/v1/pending/tx-1/reject", `{"reason": "dup"} x`, "data after the JSON object"},
		{"revoke, unknown field", revokePath, `{"reason": 1, "serial": "01"}`, `unknown field \"serial\"`},
		{"revoke, second object", revokePath, `{"reason": 1}{"reason": 4}`, "data after the JSON object"},
		{"revoke, trailing array", revokePath, `{"reason": 1} []`, "data after the JSON object"},
		{"revoke, two reasons", revokePath, `{"reason": 1} {"reason": 1}`, "data after the JSON object"},
		// encoding/json takes the last of repeated keys, and names in any case.
		{"revoke, a reason refused then one taken", revokePath, `{"reason": 7, "reason": 1}`, `a field given twice: \"reason\"`},
		{"revoke, a field in capitals", revokePath, `{"REASON": 1}`, `unknown field \"REASON\"`},
		{"revoke, unrecorded in another case", revokePath, `{"reason": 1, "Unrecorded": true}`, `unknown field \"Unrecorded\"`},
		{"reject, two reasons in one object", "/v1/pending/tx-1/reject", `{"reason": "a", "reason": "b"}`, `a field given twice`},
		// Approve takes no field: one an operator sends believing it acts would be ignored.
		{"approve, a template", "/v1/pending/tx-1/approve", `{"template": "other"}`, `unknown field \"template\"`},
		{"approve, a reason", "/v1/pending/tx-1/approve", `{"reason": "checked by phone"}`, `unknown field \"reason\"`},
		{"approve, two objects", "/v1/pending/tx-1/approve", `{} {}`, "data after the JSON object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := p.call(t, http.MethodPost, tc.path, []byte(tc.body))
			require.Equal(t, http.StatusBadRequest, code, body)
			require.Contains(t, body, tc.says)
			rec, err := p.g.rp.Transactions.Get(ctx, "tx-1")
			require.NoError(t, err)
			require.Equal(t, scep.Pending, rec.Status, "still pending")
			revoked, err := p.g.store.IsRevoked(ctx, cert)
			require.NoError(t, err)
			require.False(t, revoked, "not revoked")
		})
	}

	// White space after the object is fine, and the calls act.
	code, body := p.call(t, http.MethodPost, revokePath, []byte("{\"reason\": 1}\n \t"))
	require.Equal(t, http.StatusOK, code, body)
	revoked, err := p.g.store.IsRevoked(ctx, cert)
	require.NoError(t, err)
	require.True(t, revoked)
	revs, err := p.g.store.RevokedSince(ctx, time.Time{})
	require.NoError(t, err)
	require.Len(t, revs, 1)
	require.Equal(t, "token", revs[0].By, "the revocation names the caller the audit line names")
	code, body = p.call(t, http.MethodPost, "/v1/pending/tx-1/reject", []byte(`{"reason": "dup"}`+"\n"))
	require.Equal(t, http.StatusOK, code, body)
	rec, err := p.g.rp.Transactions.Get(ctx, "tx-1")
	require.NoError(t, err)
	require.Equal(t, scep.Failure, rec.Status)
}

// pendingCounted is the gateway's real store, counting the calls of Pending: the
// store check of /readyz.
type pendingCounted struct {
	crp.Store
	n *atomic.Int64
}

func (s pendingCounted) Pending(ctx context.Context, after string, limit int) ([]*crp.Record, error) {
	s.n.Add(1)
	return s.Store.Pending(ctx, after, limit)
}

// TestReadyzProbeFlood: concurrent /readyz probes within one readyInterval cost the
// store one check, all answered with its outcome; the next interval checks again
// (before, every probe checked the store: 50 probes, 50 checks).
func TestReadyzProbeFlood(t *testing.T) {
	p := startInProcess(t, newFixture(t), "", "")
	var checks atomic.Int64
	p.g.store = pendingCounted{p.g.store, &checks}
	var mu sync.Mutex
	now := time.Now()
	p.g.rp.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }

	flood := func() {
		t.Helper()
		const n = 50
		var wg sync.WaitGroup
		codes := make(chan int, n)
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := p.public.Client().Get(p.public.URL + "/readyz")
				if err != nil {
					codes <- 0
					return
				}
				var body struct{ Ready bool }
				if json.NewDecoder(resp.Body).Decode(&body) != nil || !body.Ready {
					codes <- -resp.StatusCode
				} else {
					codes <- resp.StatusCode
				}
				resp.Body.Close()
			}()
		}
		wg.Wait()
		close(codes)
		for c := range codes {
			require.Equal(t, http.StatusOK, c, "every probe answered ready")
		}
	}
	flood()
	require.EqualValues(t, 1, checks.Load(), "store checks for 50 probes in one interval")
	advance(readyInterval / 2)
	flood()
	require.EqualValues(t, 1, checks.Load(), "still within the interval")
	advance(readyInterval / 2)
	flood()
	require.EqualValues(t, 2, checks.Load(), "the next interval checks again")
	advance(-time.Hour) // a clock set back does not freeze the outcome
	flood()
	require.EqualValues(t, 3, checks.Load())
}

// lookupsCounted is the gateway's real store, counting the calls of Lookup.
type lookupsCounted struct {
	crp.Store
	n *atomic.Int64
}

func (s lookupsCounted) Lookup(ctx context.Context, serial *big.Int) (*crp.IssuedCertificate, error) {
	s.n.Add(1)
	return s.Store.Lookup(ctx, serial)
}

// TestIntuneRevocationLooksUpOnce: an Intune revocation request looks its serial up
// in the inventory once (before, twice: to tell ours from others, then again to
// choose the CRL), and is recorded, by Intune's request context, in the CRL of the
// certificate's issuer; an unknown serial is Intune's "not found" and revokes nothing.
func TestIntuneRevocationLooksUpOnce(t *testing.T) {
	p := startInProcess(t, newFixture(t), "", "")
	ctx := context.Background()
	cert := p.addIssued(t, 1, "alice@example.com", "alice-laptop")[0]
	var lookups atomic.Int64
	p.g.store = lookupsCounted{p.g.store, &lookups}
	rev := p.g.intuneRevoker()

	require.NoError(t, rev.Revoke(ctx, &intune.RevocationRequest{RequestContext: "req-1",
		SerialNumber: cert.SerialNumber.Text(16), IssuerName: p.g.ca.Certificate.Subject.String()}))
	require.EqualValues(t, 1, lookups.Load(), "inventory lookups for one revocation")
	revs, err := p.g.store.RevokedSince(ctx, time.Time{})
	require.NoError(t, err)
	require.Len(t, revs, 1)
	require.Equal(t, "intune:req-1", revs[0].By)
	der, err := p.g.crl.CRL(ctx)
	require.NoError(t, err)
	crl, err := x509.ParseRevocationList(der)
	require.NoError(t, err)
	require.True(t, crlLists(crl, cert.SerialNumber))

	err = rev.Revoke(ctx, &intune.RevocationRequest{RequestContext: "req-2", SerialNumber: "0badc0de"})
	require.ErrorIs(t, err, intune.ErrCertificateNotFound)
	revs, err = p.g.store.RevokedSince(ctx, time.Time{})
	require.NoError(t, err)
	require.Len(t, revs, 1, "nothing more revoked")
}

// TestAdminListsWithheld: withheld=true lists the certificates withheld from their
// device alone (with user= too), each once when the pages are followed, and so does
// scepkit admin certs -withheld; a value other than true is 400. A page reads a
// bounded share of the inventory (here 5 batches of 50): where withheld certificates
// are dense it fills up (and the next page resumes after its last entry, within a
// batch), where they are rare it comes back short, or empty, with next set, and
// following next still reaches every one. Before, withheld= was ignored and the whole
// inventory listed.
func TestAdminListsWithheld(t *testing.T) {
	oldBatch, oldBatches := withheldBatch, withheldBatches
	withheldBatch, withheldBatches = 50, 5
	t.Cleanup(func() { withheldBatch, withheldBatches = oldBatch, oldBatches })
	p := startInProcess(t, newFixture(t), "", "")
	// Interleaved by NotAfter (each call issues an hour apart from now + 1h): in the first
	// 110 hours half the inventory is withheld (the 100th withheld is about its 215th
	// certificate), after them none is (490 more).
	p.addIssued(t, 600, "alice@example.com", "alice-laptop")
	aliceWithheld := p.addIssuedAs(t, 5, "alice@example.com", "alice-laptop", true)
	bobWithheld := p.addIssuedAs(t, 110, "bob@example.com", "bob-phone", true)
	p.addIssued(t, 20, "bob@example.com", "bob-phone")
	serials := func(certs ...[]*x509.Certificate) map[string]int {
		out := map[string]int{}
		for _, l := range certs {
			for _, c := range l {
				out[c.SerialNumber.Text(16)] = 1
			}
		}
		return out
	}

	for _, c := range []struct {
		query string
		want  map[string]int
	}{
		{"withheld=true", serials(aliceWithheld, bobWithheld)},
		{"withheld=true&user=alice@example.com", serials(aliceWithheld)},
		{"withheld=true&device=bob-phone", serials(bobWithheld)},
		{"withheld=true&user=nobody", serials()},
	} {
		t.Run(c.query, func(t *testing.T) {
			seen := map[string]int{}
			next, calls := "", 0
			var full, short, empty bool // pages with next
			for {
				calls++
				require.Less(t, calls, 40, "the pages do not end")
				u := "/v1/certificates?" + c.query
				if next != "" {
					u += "&after=" + url.QueryEscape(next)
				}
				code, body := p.call(t, http.MethodGet, u, nil)
				require.Equal(t, http.StatusOK, code, body)
				var page certificatePage
				require.NoError(t, json.Unmarshal([]byte(body), &page), body)
				require.LessOrEqual(t, len(page.Certificates), pageSize)
				for _, e := range page.Certificates {
					require.True(t, e.Withheld, "%+v", e)
					seen[e.Serial]++
				}
				if page.Next == "" {
					break
				}
				full = full || len(page.Certificates) == pageSize
				short = short || len(page.Certificates) > 0 && len(page.Certificates) < pageSize
				empty = empty || len(page.Certificates) == 0
				require.NotEqual(t, next, page.Next, "next moves on")
				next = page.Next
			}
			require.Equal(t, c.want, seen)
			if c.query == "withheld=true" {
				require.True(t, full, "a full page, with next")
				require.True(t, short, "a page that read its bound came back short, with next")
				require.True(t, empty, "a page that read its bound came back empty, with next")
				// 735 certificates, 250 read at most by a page, and one page that
				// filled up before its bound.
				require.LessOrEqual(t, calls, 5)
			}
		})
	}

	// The admin CLI follows the pages, short and empty ones included.
	out, err := exec.Command(bin, "admin", "-url", p.admin.URL, "-ca", p.f.path("inprocess-admin-ca.pem"),
		"-token-file", p.f.path("token"), "certs", "-withheld").Output()
	require.NoError(t, err)
	var entries []apiCertificate
	require.NoError(t, json.Unmarshal(out, &entries))
	got := map[string]int{}
	for _, e := range entries {
		require.True(t, e.Withheld)
		got[e.Serial]++
	}
	require.Equal(t, serials(aliceWithheld, bobWithheld), got)

	for _, bad := range []string{"1", "yes", "false", "TRUE"} {
		code, body := p.call(t, http.MethodGet, "/v1/certificates?withheld="+bad, nil)
		require.Equal(t, http.StatusBadRequest, code, "withheld=%s: %s", bad, body)
	}
}
