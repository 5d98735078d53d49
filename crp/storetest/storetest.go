// Package storetest is the conformance suite of the storage seam of package crp: one
// table of behaviours that every backend (crp.MemoryStore, boltstore, pgstore,
// redisstore for the parts it implements, or a user's own) must pass. A backend's test
// calls [Run] with a function that opens a fresh, empty store; its upgrade test checks
// the state an earlier release wrote with [CheckEarlierRelease].
package storetest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scepkit/scepkit/challenge"
	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/scep"
)

// Backend names the parts of a backend under test; a nil part is not tested (Redis
// keeps claims and records only, say).
type Backend struct {
	Claims       challenge.ReplayStore // tested for challenge.Releaser too, if it implements it
	Transactions crp.TransactionStore
	Pending      crp.PendingLister
	Certificates crp.CertificateStore
	Queries      crp.CertificateQuerier
	Revocations  crp.RevocationStore
	Checker      crp.RevocationChecker
}

// Of names every part of s.
func Of(s crp.Store) Backend {
	return Backend{Claims: s, Transactions: s, Pending: s, Certificates: s, Queries: s, Revocations: s, Checker: s}
}

// A testCase is one behaviour of the suite.
type testCase struct {
	name string
	// needs says which parts the case uses; it is skipped when one is nil.
	needs func(b Backend) bool
	run   func(t *testing.T, b Backend)
}

// cases is the table Run runs; the interfaces' docs in packages crp and challenge
// state each rule a case checks.
var cases = []testCase{
	{"claim-once", needClaims, claimOnce},
	{"claim-concurrent-one-winner", needClaims, claimConcurrent},
	{"claim-empty-id-refused", needClaims, claimEmpty},
	{"claim-release", needReleaser, claimRelease},
	{"claim-past-until-kept", needClaims, claimPastUntil},
	{"record-roundtrip", needTransactions, recordRoundtrip},
	{"record-not-found", needTransactions, recordNotFound},
	{"record-replaced", needTransactions, recordReplaced},
	{"record-expired-forgotten", needTransactions, recordExpired},
	{"record-nil-refused", needTransactions, recordNil},
	{"record-long-id-own-key", needTransactions, recordLongIDOwnKey},
	{"record-create-once", needCreator, recordCreateOnce},
	{"record-create-concurrent-one-writer", needCreator, recordCreateConcurrent},
	{"issuance-create-once", needIssuanceCreator, issuanceCreateOnce},
	{"record-replace-compare-and-swap", needReplacer, recordReplaceOnce},
	{"record-replace-concurrent-one-writer", needReplacer, recordReplaceConcurrent},
	{"issuance-replace-compare-and-swap", needIssuanceReplacer, issuanceReplaceOnce},
	{"issuance-replace-concurrent-one-writer", needIssuanceReplacer, issuanceReplaceConcurrent},
	{"pending-listed-in-pages", needPending, pendingListed},
	{"certificate-roundtrip", needCertificates, certificateRoundtrip},
	{"issuance-recorded-together", needIssuanceRecorder, issuanceRecorded},
	{"certificate-queries", needQueries, certificateQueries},
	{"certificate-query-pages", needQueries, certificatePages},
	{"certificate-query-bad-after-refused", needQueries, certificateBadAfter},
	{"certificate-invalid-refused", needCertificates, certificateInvalid},
	{"revocation-first-kept", needRevocations, revocationFirstKept},
	{"revocation-first-kept-whole", needRevocations, revocationFirstKeptWhole},
	{"revocation-since", needRevocations, revocationSince},
	{"revocation-invalid-refused", needRevocations, revocationInvalid},
	{"revocation-checker", needChecker, revocationChecker},
	{"revocation-issuer", needChecker, revocationIssuer},
	{"revocation-checker-no-serial-refused", needChecker, revocationCheckerNoSerial},
}

// Run runs every case that applies as a subtest named after it ("claim-once",
// "certificate-invalid-refused", ...), each on a store open returns (fresh and empty;
// it is not reused across cases). A case whose parts of the Backend are nil is
// skipped. The rules the cases check are those the docs of challenge.ReplayStore,
// challenge.Releaser, crp.TransactionStore, crp.PendingLister, crp.CertificateStore,
// crp.IssuanceRecorder, crp.TransactionCreator, crp.IssuanceCreator,
// crp.TransactionReplacer, crp.IssuanceReplacer, crp.CertificateQuerier, crp.RevocationStore and
// crp.RevocationChecker state. Run one case with go test -run, as
// -run 'TestStore/claim-once' for a test TestStore that calls Run.
func Run(t *testing.T, open func(t *testing.T) Backend) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := open(t)
			if !c.needs(b) {
				t.Skip("the backend does not implement this part")
			}
			c.run(t, b)
		})
	}
}

func needClaims(b Backend) bool       { return b.Claims != nil }
func needTransactions(b Backend) bool { return b.Transactions != nil }
func needCertificates(b Backend) bool { return b.Certificates != nil }
func needQueries(b Backend) bool      { return b.Certificates != nil && b.Queries != nil }
func needRevocations(b Backend) bool  { return b.Revocations != nil }
func needChecker(b Backend) bool      { return b.Revocations != nil && b.Checker != nil }
func needPending(b Backend) bool      { return b.Transactions != nil && b.Pending != nil }
func needIssuanceRecorder(b Backend) bool {
	_, ok := b.Transactions.(crp.IssuanceRecorder)
	return ok && b.Certificates != nil
}
func needCreator(b Backend) bool {
	_, ok := b.Transactions.(crp.TransactionCreator)
	return ok
}
func needReplacer(b Backend) bool {
	_, ok := b.Transactions.(crp.TransactionReplacer)
	return ok
}
func needIssuanceCreator(b Backend) bool {
	_, ok := b.Transactions.(crp.IssuanceCreator)
	return ok && b.Certificates != nil
}
func needIssuanceReplacer(b Backend) bool {
	_, ok := b.Transactions.(crp.IssuanceReplacer)
	return ok && b.Certificates != nil
}
func needReleaser(b Backend) bool {
	_, ok := b.Claims.(challenge.Releaser)
	return ok
}

var ctx = context.Background()

func check(t *testing.T, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func claimOnce(t *testing.T, b Backend) {
	until := time.Now().Add(time.Hour)
	check(t, b.Claims.Claim(ctx, "jti-once", until), "first claim")
	for i := 0; i < 3; i++ {
		if err := b.Claims.Claim(ctx, "jti-once", until); !errors.Is(err, challenge.ErrReplayed) {
			t.Fatalf("claim %d of the same id: %v, want ErrReplayed", i+2, err)
		}
	}
	check(t, b.Claims.Claim(ctx, "jti-other", until), "another id")
}

func claimConcurrent(t *testing.T, b Backend) {
	const n = 32
	var wins, replays atomic.Int32
	var wg sync.WaitGroup
	until := time.Now().Add(time.Hour)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch err := b.Claims.Claim(ctx, "jti-race", until); {
			case err == nil:
				wins.Add(1)
			case errors.Is(err, challenge.ErrReplayed):
				replays.Add(1)
			default:
				t.Errorf("claim: %v", err)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 || replays.Load() != n-1 {
		t.Fatalf("%d concurrent claims of one id: %d won, %d replayed; want 1 and %d", n, wins.Load(), replays.Load(), n-1)
	}
}

func claimEmpty(t *testing.T, b Backend) {
	if err := b.Claims.Claim(ctx, "", time.Now().Add(time.Hour)); !errors.Is(err, challenge.ErrMissingClaim) {
		t.Fatalf("empty id: %v, want ErrMissingClaim", err)
	}
}

func claimRelease(t *testing.T, b Backend) {
	r := b.Claims.(challenge.Releaser)
	until := time.Now().Add(time.Hour)
	check(t, r.Release(ctx, "jti-never-claimed"), "release of an id never claimed")
	check(t, b.Claims.Claim(ctx, "jti-rel", until), "claim")
	check(t, r.Release(ctx, "jti-rel"), "release")
	check(t, b.Claims.Claim(ctx, "jti-rel", until), "claim after release")
	if err := b.Claims.Claim(ctx, "jti-rel", until); !errors.Is(err, challenge.ErrReplayed) {
		t.Fatalf("claim after the second claim: %v, want ErrReplayed", err)
	}
}

// claimPastUntil: an id claimed with a deadline already past is still refused for a
// while (the verifier refuses an expired challenge anyway; a store must not accept
// the same id twice in a row because of clock skew).
func claimPastUntil(t *testing.T, b Backend) {
	past := time.Now().Add(-time.Second)
	check(t, b.Claims.Claim(ctx, "jti-past", past), "claim")
	if err := b.Claims.Claim(ctx, "jti-past", past); !errors.Is(err, challenge.ErrReplayed) {
		t.Fatalf("second claim: %v, want ErrReplayed", err)
	}
}

// testCA makes certificates for the cases (Ed25519: fast).
type testCA struct {
	key  ed25519.PrivateKey
	cert *x509.Certificate
}

var (
	caOnce sync.Once
	ca     testCA
)

func theCA(t *testing.T) *testCA {
	caOnce.Do(func() {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			panic(err)
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "storetest CA"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(10 * 365 * 24 * time.Hour),
			IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
		if err != nil {
			panic(err)
		}
		c, _ := x509.ParseCertificate(der)
		ca = testCA{key: k, cert: c}
	})
	return &ca
}

// Certificate makes a certificate with this serial and NotAfter, signed by a test CA.
func Certificate(t *testing.T, serial int64, notAfter time.Time) *x509.Certificate {
	t.Helper()
	c := theCA(t)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: fmt.Sprint("device ", serial)},
		NotBefore: notAfter.Add(-24 * time.Hour), NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, c.key.Public(), c.key)
	check(t, err, "certificate")
	cert, err := x509.ParseCertificate(der)
	check(t, err, "parse")
	return cert
}

func recordRoundtrip(t *testing.T, b Backend) {
	cert := Certificate(t, 77, time.Now().Add(time.Hour).Truncate(time.Second))
	want := &crp.Record{TransactionID: "tx-1", SignerKey: []byte{1, 2, 3}, Request: []byte{4, 5, 6}, CSR: []byte{7, 8},
		Status: scep.Success, Certificate: cert, Phase: crp.PhaseIssue, Reason: crp.ReasonCARefused,
		UserID: "u", DeviceID: "d", ProfileID: "p", Template: "t", Validator: "intune:contoso", CAHash: []byte{9, 10},
		Expires: time.Now().Add(time.Hour).Truncate(time.Millisecond), Written: time.Now().Truncate(time.Millisecond)}
	check(t, b.Transactions.Put(ctx, want), "put")
	got, err := b.Transactions.Get(ctx, "tx-1")
	check(t, err, "get")
	if got.TransactionID != want.TransactionID || string(got.SignerKey) != string(want.SignerKey) ||
		string(got.Request) != string(want.Request) || string(got.CSR) != string(want.CSR) ||
		got.Status != want.Status || got.Certificate == nil || !got.Certificate.Equal(cert) ||
		got.Phase != want.Phase || got.Reason != want.Reason || got.UserID != want.UserID ||
		got.DeviceID != want.DeviceID || got.ProfileID != want.ProfileID || got.Template != want.Template ||
		got.Validator != want.Validator || !bytes.Equal(got.CAHash, want.CAHash) {
		t.Fatalf("get returned %+v, want %+v", got, want)
	}
	if d := got.Expires.Sub(want.Expires); d < -time.Second || d > time.Second {
		t.Fatalf("expires %v, want %v", got.Expires, want.Expires)
	}
	if d := got.Written.Sub(want.Written); got.Written.IsZero() || d < -time.Second || d > time.Second {
		t.Fatalf("written %v, want %v", got.Written, want.Written)
	}
	fail := &crp.Record{TransactionID: "tx-2", SignerKey: []byte{1}, Request: []byte{2}, Status: scep.Failure,
		Phase: crp.PhaseMapping, Reason: crp.ReasonDeviceUnknown, Expires: time.Now().Add(time.Hour)}
	check(t, b.Transactions.Put(ctx, fail), "put failure")
	got, err = b.Transactions.Get(ctx, "tx-2")
	check(t, err, "get failure")
	if got.Status != scep.Failure || got.Phase != crp.PhaseMapping || got.Reason != crp.ReasonDeviceUnknown || got.Certificate != nil {
		t.Fatalf("failure record came back as %+v", got)
	}
	if !got.Written.IsZero() {
		t.Fatalf("a record written without Written came back written %v, want zero", got.Written)
	}
}

func recordNotFound(t *testing.T, b Backend) {
	if _, err := b.Transactions.Get(ctx, "tx-none"); !errors.Is(err, crp.ErrNotFound) {
		t.Fatalf("unknown transaction: %v, want ErrNotFound", err)
	}
}

func recordReplaced(t *testing.T, b Backend) {
	exp := time.Now().Add(time.Hour)
	check(t, b.Transactions.Put(ctx, &crp.Record{TransactionID: "tx-r", Status: scep.Pending, CSR: []byte{1}, Expires: exp}), "put")
	check(t, b.Transactions.Put(ctx, &crp.Record{TransactionID: "tx-r", Status: scep.Failure, Phase: crp.PhaseIssue,
		Reason: crp.ReasonRejected, Expires: exp}), "replace")
	got, err := b.Transactions.Get(ctx, "tx-r")
	check(t, err, "get")
	if got.Status != scep.Failure || got.Reason != crp.ReasonRejected {
		t.Fatalf("replaced record came back as %+v", got)
	}
}

func recordExpired(t *testing.T, b Backend) {
	check(t, b.Transactions.Put(ctx, &crp.Record{TransactionID: "tx-old", Status: scep.Pending,
		Expires: time.Now().Add(-time.Second)}), "put")
	if _, err := b.Transactions.Get(ctx, "tx-old"); !errors.Is(err, crp.ErrNotFound) {
		t.Fatalf("expired record: %v, want ErrNotFound", err)
	}
	if b.Pending != nil {
		list, err := b.Pending.Pending(ctx, "", 0)
		check(t, err, "pending")
		if len(list) != 0 {
			t.Fatalf("an expired pending record is listed: %+v", list[0])
		}
	}
}

// recordLongIDOwnKey: a transactionID is chosen by the client. A store that keys
// long ids by their hash ("sha256:" and hex, as boltstore and pgstore do) must not let
// an id that reads like such a key name the record, the pending entry or the claim of
// the long id: writing the look-alike would replace another device's record, and
// claiming it would find a fresh challenge "replayed".
func recordLongIDOwnKey(t *testing.T, b Backend) {
	long := fmt.Sprintf("%0300d", 7)
	sum := sha256.Sum256([]byte(long))
	lookalike := "sha256:" + hex.EncodeToString(sum[:])
	exp := time.Now().Add(time.Hour)
	check(t, b.Transactions.Put(ctx, &crp.Record{TransactionID: long, Status: scep.Pending, CSR: []byte{1},
		UserID: "long", Expires: exp}), "put long")
	if _, err := b.Transactions.Get(ctx, lookalike); !errors.Is(err, crp.ErrNotFound) {
		t.Fatalf("the look-alike id found a record (%v): it names the long id's key", err)
	}
	check(t, b.Transactions.Put(ctx, &crp.Record{TransactionID: lookalike, Status: scep.Failure,
		Reason: crp.ReasonRejected, UserID: "lookalike", Expires: exp}), "put look-alike")
	for id, user := range map[string]string{long: "long", lookalike: "lookalike"} {
		got, err := b.Transactions.Get(ctx, id)
		check(t, err, "get "+user)
		if got.TransactionID != id || got.UserID != user {
			t.Fatalf("%s: got the record of %q (user %q)", user, got.TransactionID, got.UserID)
		}
	}
	if b.Pending != nil {
		list, err := b.Pending.Pending(ctx, "", 0)
		check(t, err, "pending")
		if len(list) != 1 || list[0].TransactionID != long {
			t.Fatalf("pending lists %d records, want the long id's alone", len(list))
		}
	}
	if b.Claims == nil {
		return
	}
	check(t, b.Claims.Claim(ctx, long, exp), "claim long")
	check(t, b.Claims.Claim(ctx, lookalike, exp), "claim look-alike (a fresh id)")
	if err := b.Claims.Claim(ctx, long, exp); !errors.Is(err, challenge.ErrReplayed) {
		t.Fatalf("claiming the long id again: %v, want ErrReplayed", err)
	}
	if r, ok := b.Claims.(challenge.Releaser); ok {
		check(t, r.Release(ctx, lookalike), "release look-alike")
		if err := b.Claims.Claim(ctx, long, exp); !errors.Is(err, challenge.ErrReplayed) {
			t.Fatalf("releasing the look-alike released the long id: %v", err)
		}
	}
}

func pendingListed(t *testing.T, b Backend) {
	exp := time.Now().Add(time.Hour)
	for i := 0; i < 7; i++ {
		check(t, b.Transactions.Put(ctx, &crp.Record{TransactionID: fmt.Sprintf("p-%02d", i), Status: scep.Pending,
			CSR: []byte{byte(i)}, UserID: "u", Expires: exp}), "put")
	}
	check(t, b.Transactions.Put(ctx, &crp.Record{TransactionID: "p-03x", Status: scep.Success, Expires: exp}), "put")
	check(t, b.Transactions.Put(ctx, &crp.Record{TransactionID: "p-03y", Status: scep.Failure, Expires: exp}), "put")
	// A decided request leaves the list.
	check(t, b.Transactions.Put(ctx, &crp.Record{TransactionID: "p-06", Status: scep.Failure, Reason: crp.ReasonRejected, Expires: exp}), "decide")
	var ids []string
	after := ""
	for pages := 0; pages < 10; pages++ {
		page, err := b.Pending.Pending(ctx, after, 4)
		check(t, err, "pending")
		if len(page) > 4 {
			t.Fatalf("page of %d, limit 4", len(page))
		}
		for _, r := range page {
			if r.Status != scep.Pending || len(r.CSR) != 1 || r.UserID != "u" {
				t.Fatalf("listed %+v", r)
			}
			ids = append(ids, r.TransactionID)
		}
		if len(page) < 4 {
			break
		}
		after = page[len(page)-1].TransactionID
	}
	if want := "[p-00 p-01 p-02 p-03 p-04 p-05]"; fmt.Sprint(ids) != want {
		t.Fatalf("pending listed %v, want %s", ids, want)
	}
}

func issued(t *testing.T, serial int64, notAfter time.Time, user, device string) *crp.IssuedCertificate {
	return &crp.IssuedCertificate{Certificate: Certificate(t, serial, notAfter), UserID: user, DeviceID: device,
		ProfileID: "prof", Template: "tmpl", TransactionID: fmt.Sprint("tx-", serial), IssuedAt: time.Now().Truncate(time.Second)}
}

func certificateRoundtrip(t *testing.T, b Backend) {
	c := issued(t, 1<<40+5, time.Now().Add(time.Hour), "alice", "laptop")
	check(t, b.Certificates.Add(ctx, c), "add")
	got, err := b.Certificates.Lookup(ctx, c.Certificate.SerialNumber)
	check(t, err, "lookup")
	if !got.Certificate.Equal(c.Certificate) || got.UserID != "alice" || got.DeviceID != "laptop" ||
		got.ProfileID != "prof" || got.Template != "tmpl" || got.TransactionID != c.TransactionID ||
		!got.IssuedAt.Equal(c.IssuedAt) || got.Withheld {
		t.Fatalf("lookup returned %+v, want %+v", got, c)
	}
	// Withheld is kept, by Lookup and by a query.
	w := issued(t, 1<<40+8, time.Now().Add(time.Hour), "withheld-user", "laptop")
	w.Withheld = true
	check(t, b.Certificates.Add(ctx, w), "add withheld")
	got, err = b.Certificates.Lookup(ctx, w.Certificate.SerialNumber)
	check(t, err, "lookup withheld")
	if !got.Withheld || !got.Certificate.Equal(w.Certificate) {
		t.Fatalf("lookup of a withheld certificate returned %+v, want Withheld", got)
	}
	if b.Queries != nil {
		list, err := b.Queries.Certificates(ctx, crp.CertificateQuery{UserID: "withheld-user"})
		check(t, err, "query withheld")
		if len(list) != 1 || !list[0].Withheld {
			t.Fatalf("query of a withheld certificate returned %+v, want it Withheld", list)
		}
	}
	for _, s := range []*big.Int{big.NewInt(6), big.NewInt(1<<40 + 6)} {
		if _, err := b.Certificates.Lookup(ctx, s); !errors.Is(err, crp.ErrNotFound) {
			t.Fatalf("lookup of unknown serial %v: %v, want ErrNotFound", s, err)
		}
	}
}

// issuanceRecorded: RecordIssuance writes the certificate and its transaction record
// together, and neither when it fails.
func issuanceRecorded(t *testing.T, b Backend) {
	r := b.Transactions.(crp.IssuanceRecorder)
	c := issued(t, 1<<40+7, time.Now().Add(time.Hour), "alice", "laptop")
	rec := &crp.Record{TransactionID: "tx-issued", Status: scep.Success, Certificate: c.Certificate, UserID: "alice",
		DeviceID: "laptop", Expires: time.Now().Add(time.Hour)}
	check(t, r.RecordIssuance(ctx, c, rec), "record issuance")
	got, err := b.Certificates.Lookup(ctx, c.Certificate.SerialNumber)
	check(t, err, "lookup")
	if !got.Certificate.Equal(c.Certificate) || got.UserID != "alice" || got.TransactionID != c.TransactionID {
		t.Fatalf("lookup returned %+v, want %+v", got, c)
	}
	gotRec, err := b.Transactions.Get(ctx, "tx-issued")
	check(t, err, "get")
	if gotRec.Status != scep.Success || gotRec.Certificate == nil || !gotRec.Certificate.Equal(c.Certificate) {
		t.Fatalf("record %+v, want SUCCESS with the certificate", gotRec)
	}

	bad := issued(t, 1<<40+8, time.Now().Add(time.Hour), "bob", "phone")
	bad.Certificate.SerialNumber = big.NewInt(0) // refused by every backend
	rec = &crp.Record{TransactionID: "tx-refused", Status: scep.Success, Certificate: bad.Certificate,
		Expires: time.Now().Add(time.Hour)}
	if err := r.RecordIssuance(ctx, bad, rec); err == nil {
		t.Fatal("RecordIssuance of a certificate with serial 0 succeeded")
	}
	if _, err := b.Transactions.Get(ctx, "tx-refused"); !errors.Is(err, crp.ErrNotFound) {
		t.Fatalf("the record of a refused issuance: %v, want ErrNotFound (neither written)", err)
	}
}

// recordCreateOnce: Create writes a record only where none lives: a second Create of
// the id is refused (ErrRecordExists) and changes nothing; a record whose Expires has
// passed counts as none; Put still replaces.
func recordCreateOnce(t *testing.T, b Backend) {
	c := b.Transactions.(crp.TransactionCreator)
	exp := time.Now().Add(time.Hour)
	check(t, c.Create(ctx, &crp.Record{TransactionID: "tx-c", Status: scep.Pending, UserID: "alice", CSR: []byte{1}, Expires: exp}), "create")
	err := c.Create(ctx, &crp.Record{TransactionID: "tx-c", Status: scep.Failure, UserID: "bob", Phase: crp.PhaseIssue,
		Reason: crp.ReasonRejected, Expires: exp})
	if !errors.Is(err, crp.ErrRecordExists) {
		t.Fatalf("second Create: %v, want ErrRecordExists", err)
	}
	got, err := b.Transactions.Get(ctx, "tx-c")
	check(t, err, "get")
	if got.UserID != "alice" || got.Status != scep.Pending {
		t.Fatalf("a refused Create changed the record: %+v", got)
	}
	if b.Pending != nil {
		list, err := b.Pending.Pending(ctx, "", 0)
		check(t, err, "pending")
		if len(list) != 1 || list[0].UserID != "alice" {
			t.Fatalf("pending after a refused Create: %+v, want alice's record alone", list)
		}
	}
	check(t, b.Transactions.Put(ctx, &crp.Record{TransactionID: "tx-c", Status: scep.Failure, UserID: "carol",
		Phase: crp.PhaseIssue, Reason: crp.ReasonRejected, Expires: exp}), "put over a created record")
	if got, err := b.Transactions.Get(ctx, "tx-c"); err != nil || got.UserID != "carol" {
		t.Fatalf("Put after Create: %+v, %v; want carol's record", got, err)
	}

	check(t, b.Transactions.Put(ctx, &crp.Record{TransactionID: "tx-c-old", Status: scep.Pending, UserID: "alice",
		Expires: time.Now().Add(-time.Second)}), "put expired")
	check(t, c.Create(ctx, &crp.Record{TransactionID: "tx-c-old", Status: scep.Failure, UserID: "bob",
		Phase: crp.PhaseIssue, Reason: crp.ReasonRejected, Expires: exp}), "create over an expired record")
	if got, err := b.Transactions.Get(ctx, "tx-c-old"); err != nil || got.UserID != "bob" {
		t.Fatalf("Create over an expired record: %+v, %v; want bob's record", got, err)
	}
}

// recordCreateConcurrent: of many Creates of one id at once, exactly one writes, and
// the record is that one's.
func recordCreateConcurrent(t *testing.T, b Backend) {
	c := b.Transactions.(crp.TransactionCreator)
	winner := oneWriter(t, "Create", 16, func(i int) error {
		return c.Create(ctx, &crp.Record{TransactionID: "tx-race", Status: scep.Failure, UserID: fmt.Sprintf("user-%d", i),
			Phase: crp.PhaseIssue, Reason: crp.ReasonRejected, Expires: time.Now().Add(time.Hour)})
	})
	got, err := b.Transactions.Get(ctx, "tx-race")
	check(t, err, "get")
	if want := fmt.Sprintf("user-%d", winner); got.UserID != want {
		t.Fatalf("the record is %s's, but %s's Create wrote", got.UserID, want)
	}
}

// oneWriter runs write(0), ..., write(n-1) at once, and fails t unless exactly one
// wrote (returned nil) and every other was refused with an error matching
// crp.ErrRecordExists; it returns the i of the one that wrote. what names the write.
func oneWriter(t *testing.T, what string, n int, write func(i int) error) int {
	t.Helper()
	var wg sync.WaitGroup
	var wrote, winner atomic.Int32
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			switch err := write(i); {
			case err == nil:
				wrote.Add(1)
				winner.Store(int32(i))
			case !errors.Is(err, crp.ErrRecordExists):
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("%s: %v", what, err)
	}
	if wrote.Load() != 1 {
		t.Fatalf("%d of %d concurrent %ss wrote, want 1", wrote.Load(), n, what)
	}
	return int(winner.Load())
}

// notifyingRecord is the record of a certificate withheld while its notification is
// made (crp.ReasonNotifying), which keeps the certificate.
func notifyingRecord(t *testing.T, id string) *crp.Record {
	return &crp.Record{TransactionID: id, SignerKey: []byte{1}, Request: []byte{2}, CSR: []byte{3},
		Status: scep.Failure, Certificate: Certificate(t, 78, time.Now().Add(time.Hour).Truncate(time.Second)),
		Phase: crp.PhaseNotify, Reason: crp.ReasonNotifying, UserID: "alice", Validator: "intune:contoso",
		Expires: time.Now().Add(time.Hour)}
}

// recordReplaceOnce: Replace writes its record only in place of the version of the
// record it names, as Get returned it (with its certificate, although its status is
// FAILURE); once replaced, that version is gone: a second Replace of it is refused
// (ErrRecordExists) and changes nothing, and so is one of a version that differs in
// Reason alone. Where no live record is stored (none, or one expired), Replace
// writes nothing (ErrNotFound).
func recordReplaceOnce(t *testing.T, b Backend) {
	r := b.Transactions.(crp.TransactionReplacer)
	check(t, b.Transactions.Put(ctx, notifyingRecord(t, "tx-cas")), "put")
	old, err := b.Transactions.Get(ctx, "tx-cas")
	check(t, err, "get")
	if old.Certificate == nil || old.Certificate.SerialNumber.Int64() != 78 || old.Validator != "intune:contoso" {
		t.Fatalf("a FAILURE record that keeps its certificate came back as %+v", old)
	}
	final := *old
	final.Reason, final.UserID = crp.ReasonNotifyFailed, "ended"
	check(t, r.Replace(ctx, old, &final), "replace")
	got, err := b.Transactions.Get(ctx, "tx-cas")
	check(t, err, "get")
	if got.Reason != crp.ReasonNotifyFailed || got.UserID != "ended" || got.Certificate == nil {
		t.Fatalf("replaced record came back as %+v", got)
	}
	again := *old
	again.UserID = "twice"
	if err := r.Replace(ctx, old, &again); !errors.Is(err, crp.ErrRecordExists) {
		t.Fatalf("second Replace of one version: %v, want ErrRecordExists", err)
	}
	stale := *got
	stale.Reason = crp.ReasonNotifying
	if err := r.Replace(ctx, &stale, &again); !errors.Is(err, crp.ErrRecordExists) {
		t.Fatalf("Replace of a version with another Reason: %v, want ErrRecordExists", err)
	}
	if got, err := b.Transactions.Get(ctx, "tx-cas"); err != nil || got.UserID != "ended" {
		t.Fatalf("a refused Replace changed the record: %+v, %v", got, err)
	}

	none := notifyingRecord(t, "tx-cas-none")
	if err := r.Replace(ctx, none, none); !errors.Is(err, crp.ErrNotFound) {
		t.Fatalf("Replace where no record is stored: %v, want ErrNotFound", err)
	}
	if _, err := b.Transactions.Get(ctx, "tx-cas-none"); !errors.Is(err, crp.ErrNotFound) {
		t.Fatalf("a refused Replace wrote a record: %v", err)
	}
	expired := notifyingRecord(t, "tx-cas-old")
	expired.Expires = time.Now().Add(-time.Second)
	check(t, b.Transactions.Put(ctx, expired), "put expired")
	next := *expired
	next.Expires = time.Now().Add(time.Hour)
	if err := r.Replace(ctx, expired, &next); !errors.Is(err, crp.ErrNotFound) {
		t.Fatalf("Replace of an expired record: %v, want ErrNotFound", err)
	}
}

// recordReplaceConcurrent: of many Replaces of one version at once, exactly one
// writes, even when they all write the same record (as gateways ending one
// transaction do): a Replace refused because another wrote is not taken for its own
// write.
func recordReplaceConcurrent(t *testing.T, b Backend) {
	r := b.Transactions.(crp.TransactionReplacer)
	check(t, b.Transactions.Put(ctx, notifyingRecord(t, "tx-cas-race")), "put")
	old, err := b.Transactions.Get(ctx, "tx-cas-race")
	check(t, err, "get")
	next := *old
	next.Reason = crp.ReasonNotifyFailed
	oneWriter(t, "Replace", 16, func(int) error {
		mine := next
		return r.Replace(ctx, old, &mine)
	})
	got, err := b.Transactions.Get(ctx, "tx-cas-race")
	check(t, err, "get")
	if got.Reason != crp.ReasonNotifyFailed {
		t.Fatalf("the record is %+v, not the one written", got)
	}
}

// issuanceCreateOnce: CreateIssuance writes the certificate and its record where no
// record lives, and neither where one does.
func issuanceCreateOnce(t *testing.T, b Backend) {
	r := b.Transactions.(crp.IssuanceCreator)
	exp := time.Now().Add(time.Hour)
	first := issued(t, 1<<41+1, exp, "alice", "laptop")
	check(t, r.CreateIssuance(ctx, first, &crp.Record{TransactionID: "tx-ci", Status: scep.Success,
		Certificate: first.Certificate, UserID: "alice", Expires: exp}), "create issuance")
	got, err := b.Transactions.Get(ctx, "tx-ci")
	check(t, err, "get")
	if got.Certificate == nil || !got.Certificate.Equal(first.Certificate) {
		t.Fatalf("record %+v, want alice's certificate", got)
	}
	if _, err := b.Certificates.Lookup(ctx, first.Certificate.SerialNumber); err != nil {
		t.Fatalf("the certificate of a CreateIssuance: %v", err)
	}

	second := issued(t, 1<<41+2, exp, "bob", "phone")
	err = r.CreateIssuance(ctx, second, &crp.Record{TransactionID: "tx-ci", Status: scep.Success,
		Certificate: second.Certificate, UserID: "bob", Expires: exp})
	if !errors.Is(err, crp.ErrRecordExists) {
		t.Fatalf("CreateIssuance over a live record: %v, want ErrRecordExists", err)
	}
	if got, err := b.Transactions.Get(ctx, "tx-ci"); err != nil || got.UserID != "alice" {
		t.Fatalf("a refused CreateIssuance changed the record: %+v, %v", got, err)
	}
	if _, err := b.Certificates.Lookup(ctx, second.Certificate.SerialNumber); !errors.Is(err, crp.ErrNotFound) {
		t.Fatalf("the certificate of a refused CreateIssuance: %v, want ErrNotFound (neither written)", err)
	}
}

// heldIssuance writes the record of a certificate withheld while its notification is
// made, under id, and the certificate (serial) listed withheld in the inventory, as a
// RegistrationPoint writes them (together when the store is a crp.IssuanceRecorder),
// and returns the record as Get returns it and the inventory's entry unmarked.
func heldIssuance(t *testing.T, b Backend, id string, serial int64) (*crp.Record, *crp.IssuedCertificate) {
	t.Helper()
	c := issued(t, serial, time.Now().Add(time.Hour), "alice", "laptop")
	c.TransactionID = id
	held := notifyingRecord(t, id)
	held.Certificate = c.Certificate
	withheld := *c
	withheld.Withheld = true
	if r, ok := b.Transactions.(crp.IssuanceRecorder); ok {
		check(t, r.RecordIssuance(ctx, &withheld, held), "record the held issuance")
	} else {
		check(t, b.Certificates.Add(ctx, &withheld), "add withheld")
		check(t, b.Transactions.Put(ctx, held), "put held")
	}
	old, err := b.Transactions.Get(ctx, id)
	check(t, err, "get")
	return old, c
}

// issuedRecord is old's transaction recorded as issued with cert.
func issuedRecord(old *crp.Record, cert *x509.Certificate) *crp.Record {
	r := *old
	r.Status, r.Phase, r.Reason, r.Certificate, r.CSR = scep.Success, crp.PhaseGateway, "", cert, nil
	return &r
}

// untouched fails t unless the record of id is still want's version (Reason
// included) and the certificate of serial is listed withheld (withheld) or not at
// all.
func untouched(t *testing.T, b Backend, what, id string, want *crp.Record, serial int64, withheld bool) {
	t.Helper()
	got, err := b.Transactions.Get(ctx, id)
	switch {
	case want == nil && !errors.Is(err, crp.ErrNotFound):
		t.Fatalf("%s wrote a record: %+v, %v", what, got, err)
	case want != nil && (err != nil || got.Status != want.Status || got.Reason != want.Reason || got.UserID != want.UserID):
		t.Fatalf("%s changed the record: %+v, %v; want %+v", what, got, err, want)
	}
	c, err := b.Certificates.Lookup(ctx, big.NewInt(serial))
	switch {
	case !withheld && !errors.Is(err, crp.ErrNotFound):
		t.Fatalf("%s wrote its certificate: %+v, %v", what, c, err)
	case withheld && (err != nil || !c.Withheld):
		t.Fatalf("%s changed the inventory's entry: %+v, %v; want it withheld still", what, c, err)
	}
}

// issuanceReplaceOnce: ReplaceIssuance writes the certificate and its record only in
// place of the version of the record it names: the record says SUCCESS and the
// inventory's entry is unmarked, together. A version replaced meanwhile (another
// Reason), one replaced by this very write, no record, an expired one, or a
// certificate no store can file, and it writes neither the record nor the
// certificate.
func issuanceReplaceOnce(t *testing.T, b Backend) {
	r := b.Transactions.(crp.IssuanceReplacer)
	old, c := heldIssuance(t, b, "tx-ri", 1<<42+1)
	stale := *old
	stale.Reason = crp.ReasonNotifyFailed
	if err := r.ReplaceIssuance(ctx, c, &stale, issuedRecord(old, c.Certificate)); !errors.Is(err, crp.ErrRecordExists) {
		t.Fatalf("ReplaceIssuance of a version with another Reason: %v, want ErrRecordExists", err)
	}
	untouched(t, b, "a refused ReplaceIssuance", "tx-ri", old, 1<<42+1, true)
	bad := issued(t, 1<<42+9, time.Now().Add(time.Hour), "alice", "laptop")
	bad.Certificate.SerialNumber = big.NewInt(0)
	if err := r.ReplaceIssuance(ctx, bad, old, issuedRecord(old, bad.Certificate)); err == nil {
		t.Fatal("ReplaceIssuance of a certificate with serial 0 succeeded")
	}
	untouched(t, b, "a ReplaceIssuance of a certificate with serial 0", "tx-ri", old, 1<<42+1, true)

	final := issuedRecord(old, c.Certificate)
	check(t, r.ReplaceIssuance(ctx, c, old, final), "replace issuance")
	got, err := b.Transactions.Get(ctx, "tx-ri")
	check(t, err, "get")
	if got.Status != scep.Success || got.Certificate == nil || !got.Certificate.Equal(c.Certificate) {
		t.Fatalf("the record of a ReplaceIssuance came back as %+v, want SUCCESS with its certificate", got)
	}
	gotC, err := b.Certificates.Lookup(ctx, c.Certificate.SerialNumber)
	check(t, err, "lookup")
	if gotC.Withheld || gotC.UserID != "alice" || gotC.TransactionID != "tx-ri" || !gotC.IssuedAt.Equal(c.IssuedAt) {
		t.Fatalf("the inventory's entry of a ReplaceIssuance is %+v, want %+v", gotC, c)
	}
	other := issued(t, 1<<42+2, time.Now().Add(time.Hour), "bob", "phone")
	if err := r.ReplaceIssuance(ctx, other, old, issuedRecord(old, other.Certificate)); !errors.Is(err, crp.ErrRecordExists) {
		t.Fatalf("second ReplaceIssuance of one version: %v, want ErrRecordExists", err)
	}
	untouched(t, b, "a second ReplaceIssuance", "tx-ri", final, 1<<42+2, false)

	none := notifyingRecord(t, "tx-ri-none")
	c3 := issued(t, 1<<42+3, time.Now().Add(time.Hour), "alice", "laptop")
	if err := r.ReplaceIssuance(ctx, c3, none, issuedRecord(none, c3.Certificate)); !errors.Is(err, crp.ErrNotFound) {
		t.Fatalf("ReplaceIssuance where no record is stored: %v, want ErrNotFound", err)
	}
	untouched(t, b, "a ReplaceIssuance where no record is stored", "tx-ri-none", nil, 1<<42+3, false)
	expired := notifyingRecord(t, "tx-ri-old")
	expired.Expires = time.Now().Add(-time.Second)
	check(t, b.Transactions.Put(ctx, expired), "put expired")
	next := issuedRecord(expired, c3.Certificate)
	next.Expires = time.Now().Add(time.Hour)
	if err := r.ReplaceIssuance(ctx, c3, expired, next); !errors.Is(err, crp.ErrNotFound) {
		t.Fatalf("ReplaceIssuance of an expired record: %v, want ErrNotFound", err)
	}
	untouched(t, b, "a ReplaceIssuance of an expired record", "tx-ri-old", nil, 1<<42+3, false)
}

// issuanceReplaceConcurrent: of many ReplaceIssuances of one version at once, each
// with a certificate of its own, exactly one writes: the record carries its
// certificate, and the inventory holds none of the others'. Readers meanwhile never
// see the record without its certificate in the inventory, nor a certificate in the
// inventory without the record that carries it.
func issuanceReplaceConcurrent(t *testing.T, b Backend) {
	r := b.Transactions.(crp.IssuanceReplacer)
	const base = 1<<42 + 100
	old, _ := heldIssuance(t, b, "tx-ri-race", base)
	const n = 16
	certs := make([]*crp.IssuedCertificate, n)
	for i := range certs {
		certs[i] = issued(t, base+1+int64(i), time.Now().Add(time.Hour), fmt.Sprint("user-", i), "laptop")
	}
	stop := make(chan struct{})
	readErrs := make(chan error, 2)
	var readers sync.WaitGroup
	stopReaders := sync.OnceFunc(func() { close(stop); readers.Wait() })
	defer stopReaders()
	for i := range 2 {
		readers.Go(func() {
			for ; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if err := seenTogether(b, "tx-ri-race", certs[(i*7)%n]); err != nil {
					readErrs <- err
					return
				}
			}
		})
	}
	winner := oneWriter(t, "ReplaceIssuance", n, func(i int) error {
		return r.ReplaceIssuance(ctx, certs[i], old, issuedRecord(old, certs[i].Certificate))
	})
	stopReaders()
	close(readErrs)
	for err := range readErrs {
		t.Fatalf("read while ReplaceIssuances ran: %v", err)
	}
	got, err := b.Transactions.Get(ctx, "tx-ri-race")
	check(t, err, "get")
	if got.Status != scep.Success || got.Certificate == nil || !got.Certificate.Equal(certs[winner].Certificate) {
		t.Fatalf("the record is %+v, not the one written", got)
	}
	for i, c := range certs {
		l, err := b.Certificates.Lookup(ctx, c.Certificate.SerialNumber)
		switch {
		case i == winner && (err != nil || l.Withheld):
			t.Fatalf("the certificate written: %+v, %v; want it listed, not withheld", l, err)
		case i != winner && !errors.Is(err, crp.ErrNotFound):
			t.Fatalf("the certificate of a refused ReplaceIssuance: %+v, %v; want ErrNotFound", l, err)
		}
	}
}

// seenTogether reads the record of id and the entry of the certificate it carries,
// then c's entry and the record: a record that says SUCCESS must find its
// certificate listed, not withheld, and a c listed must find the record carrying it.
func seenTogether(b Backend, id string, c *crp.IssuedCertificate) error {
	rec, err := b.Transactions.Get(ctx, id)
	if err != nil {
		return err
	}
	if rec.Status == scep.Success {
		l, err := b.Certificates.Lookup(ctx, rec.Certificate.SerialNumber)
		if err != nil || l.Withheld {
			return fmt.Errorf("the record says SUCCESS, its certificate's entry: %+v, %v", l, err)
		}
	}
	if _, err := b.Certificates.Lookup(ctx, c.Certificate.SerialNumber); errors.Is(err, crp.ErrNotFound) {
		return nil
	} else if err != nil {
		return err
	}
	rec, err = b.Transactions.Get(ctx, id)
	if err != nil {
		return err
	}
	if rec.Status != scep.Success || !rec.Certificate.Equal(c.Certificate) {
		return fmt.Errorf("certificate %v listed, but the record is %v (%s)", c.Certificate.SerialNumber, rec.Status, rec.Reason)
	}
	return nil
}

// certificateInvalid: what cannot be filed by serial is refused with an error, not a
// panic, and leaves nothing behind.
// recordNil: every write of a record refuses a nil one (or a nil old record to
// replace) with an error, not a panic, and writes nothing.
func recordNil(t *testing.T, b Backend) {
	rec := &crp.Record{TransactionID: "tx-nil", Request: []byte("req"), Status: scep.Pending, Expires: time.Now().Add(time.Hour)}
	writes := map[string]func() error{"Put": func() error { return b.Transactions.Put(ctx, nil) }}
	if c, ok := b.Transactions.(crp.TransactionCreator); ok {
		writes["Create"] = func() error { return c.Create(ctx, nil) }
	}
	if r, ok := b.Transactions.(crp.TransactionReplacer); ok {
		writes["Replace, nil old"] = func() error { return r.Replace(ctx, nil, rec) }
		writes["Replace, nil new"] = func() error { return r.Replace(ctx, rec, nil) }
	}
	ic := issued(t, 41, time.Now().Add(time.Hour), "alice", "dev-1")
	if r, ok := b.Transactions.(crp.IssuanceRecorder); ok && b.Certificates != nil {
		writes["RecordIssuance"] = func() error { return r.RecordIssuance(ctx, ic, nil) }
	}
	if r, ok := b.Transactions.(crp.IssuanceCreator); ok && b.Certificates != nil {
		writes["CreateIssuance"] = func() error { return r.CreateIssuance(ctx, ic, nil) }
	}
	if r, ok := b.Transactions.(crp.IssuanceReplacer); ok && b.Certificates != nil {
		writes["ReplaceIssuance, nil old"] = func() error { return r.ReplaceIssuance(ctx, ic, nil, rec) }
		writes["ReplaceIssuance, nil new"] = func() error { return r.ReplaceIssuance(ctx, ic, rec, nil) }
	}
	for name, write := range writes {
		func() {
			defer func() {
				if p := recover(); p != nil {
					t.Errorf("%s: panicked: %v", name, p)
				}
			}()
			if err := write(); err == nil {
				t.Errorf("%s: accepted a nil record", name)
			}
		}()
	}
	if _, err := b.Transactions.Get(ctx, rec.TransactionID); !errors.Is(err, crp.ErrNotFound) {
		t.Errorf("a record was written: %v", err)
	}
	if b.Certificates != nil {
		if _, err := b.Certificates.Lookup(ctx, ic.Certificate.SerialNumber); !errors.Is(err, crp.ErrNotFound) {
			t.Errorf("the certificate of a refused issuance was recorded: %v", err)
		}
	}
}

func certificateInvalid(t *testing.T, b Backend) {
	noSerial := Certificate(t, 33, time.Now().Add(time.Hour))
	noSerial.SerialNumber = nil
	negative := Certificate(t, 34, time.Now().Add(time.Hour))
	negative.SerialNumber = big.NewInt(-34)
	for name, c := range map[string]*crp.IssuedCertificate{
		"nil": nil, "no certificate": {UserID: "alice"}, "no serial": {Certificate: noSerial},
		"negative serial": {Certificate: negative},
	} {
		if err := b.Certificates.Add(ctx, c); err == nil {
			t.Errorf("%s: Add accepted it", name)
		}
	}
	if _, err := b.Certificates.Lookup(ctx, big.NewInt(-34)); !errors.Is(err, crp.ErrNotFound) {
		t.Errorf("a refused certificate was recorded: %v", err)
	}
}

// certificateBadAfter: a page that resumes after an IssuedCertificate without a
// certificate (or without a serial) is refused with ErrBadQuery, not a panic.
func certificateBadAfter(t *testing.T, b Backend) {
	check(t, b.Certificates.Add(ctx, issued(t, 31, time.Now().Add(time.Hour), "alice", "laptop")), "add")
	noSerial := Certificate(t, 32, time.Now().Add(time.Hour))
	noSerial.SerialNumber = nil
	for name, after := range map[string]*crp.IssuedCertificate{
		"no certificate": {UserID: "alice"},
		"no serial":      {Certificate: noSerial},
	} {
		for _, q := range []crp.CertificateQuery{{After: after}, {After: after, UserID: "alice"}, {After: after, DeviceID: "laptop"}} {
			if _, err := b.Queries.Certificates(ctx, q); !errors.Is(err, crp.ErrBadQuery) {
				t.Fatalf("%s, query %+v: %v, want ErrBadQuery", name, q, err)
			}
		}
	}
}

func serials(list []*crp.IssuedCertificate) string {
	s := make([]string, len(list))
	for i, c := range list {
		s[i] = c.Certificate.SerialNumber.String()
	}
	return fmt.Sprint(s)
}

// farFuture is 99991231235959Z, the latest time a certificate can name.
var farFuture = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)

func certificateQueries(t *testing.T, b Backend) {
	now := time.Now().Truncate(time.Second)
	day := 24 * time.Hour
	for _, c := range []*crp.IssuedCertificate{
		issued(t, 10, now.Add(30*day), "alice", "laptop"),
		issued(t, 11, now.Add(3*day), "alice", "phone"),
		issued(t, 12, now.Add(5*day), "bob", "tablet"),
		issued(t, 13, now.Add(-day), "bob", "laptop-old"),
		issued(t, 14, now.Add(3*day), "carol", "phone-c"),
	} {
		check(t, b.Certificates.Add(ctx, c), "add")
	}
	for _, tc := range []struct {
		name string
		q    crp.CertificateQuery
		want string
	}{
		{"all", crp.CertificateQuery{}, "[13 11 14 12 10]"},
		{"by user", crp.CertificateQuery{UserID: "alice"}, "[11 10]"},
		{"by device", crp.CertificateQuery{DeviceID: "tablet"}, "[12]"},
		{"by user and device", crp.CertificateQuery{UserID: "bob", DeviceID: "laptop-old"}, "[13]"},
		{"unknown user", crp.CertificateQuery{UserID: "dave"}, "[]"},
		{"expiring within a week", crp.CertificateQuery{ExpiresAfter: now, ExpiresBefore: now.Add(7 * day)}, "[11 14 12]"},
		{"expired", crp.CertificateQuery{ExpiresBefore: now}, "[13]"},
		{"user expiring", crp.CertificateQuery{UserID: "alice", ExpiresAfter: now, ExpiresBefore: now.Add(7 * day)}, "[11]"},
		{"limit", crp.CertificateQuery{Limit: 2}, "[13 11]"},
		// A page holds Limit certificates when that many match: one whose NotAfter is
		// in ExpiresAfter's second, but before it, is not one of them.
		{"limit, from within a NotAfter's second", crp.CertificateQuery{ExpiresAfter: now.Add(3*day + 500*time.Millisecond), Limit: 1}, "[12]"},
		// Bounds past 2262, where nanoseconds since 1970 overflow an int64: the admin
		// API's expiring_within takes up to Go's longest duration (292 years), and a
		// certificate may name any time up to 9999 (RFC 5280, section 4.1.2.5).
		{"expiring within 300 years", crp.CertificateQuery{ExpiresAfter: now, ExpiresBefore: now.AddDate(300, 0, 0)}, "[11 14 12 10]"},
		{"expiring before 9999", crp.CertificateQuery{ExpiresBefore: farFuture}, "[13 11 14 12 10]"},
		{"expiring after 2300", crp.CertificateQuery{ExpiresAfter: time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC)}, "[]"},
		{"expiring from 1600", crp.CertificateQuery{ExpiresAfter: time.Date(1600, 1, 1, 0, 0, 0, 0, time.UTC), Limit: 2}, "[13 11]"},
	} {
		got, err := b.Queries.Certificates(ctx, tc.q)
		check(t, err, tc.name)
		if serials(got) != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, serials(got), tc.want)
		}
		for _, c := range got {
			if c.UserID == "" || c.DeviceID == "" || c.Template != "tmpl" {
				t.Errorf("%s: listed %+v without what it was issued for", tc.name, c)
			}
		}
	}
}

func certificatePages(t *testing.T, b Backend) {
	exp := time.Now().Add(48 * time.Hour).Truncate(time.Second)
	for i := int64(0); i < 9; i++ {
		// Three share a NotAfter: the serial orders them.
		check(t, b.Certificates.Add(ctx, issued(t, 100+i, exp.Add(time.Duration(i/3)*time.Hour), "u", fmt.Sprint("d", i))), "add")
	}
	var all []*crp.IssuedCertificate
	q := crp.CertificateQuery{UserID: "u", Limit: 2}
	for pages := 0; pages < 10; pages++ {
		page, err := b.Queries.Certificates(ctx, q)
		check(t, err, "page")
		all = append(all, page...)
		if len(page) < 2 {
			break
		}
		q.After = page[len(page)-1]
	}
	if want := "[100 101 102 103 104 105 106 107 108]"; serials(all) != want {
		t.Fatalf("pages gave %s, want %s", serials(all), want)
	}
}

func revocationFirstKept(t *testing.T, b Backend) {
	at := time.Now().Add(-time.Minute).Truncate(time.Second)
	first := &crp.Revocation{Serial: big.NewInt(42), Reason: 1, RevokedAt: at, By: "admin"}
	got, err := b.Revocations.Revoke(ctx, first)
	check(t, err, "revoke")
	if got.Serial.Cmp(first.Serial) != 0 || got.Reason != 1 || !got.RevokedAt.Equal(at) || got.By != "admin" {
		t.Fatalf("revoke returned %+v", got)
	}
	got, err = b.Revocations.Revoke(ctx, &crp.Revocation{Serial: big.NewInt(42), Reason: 4, RevokedAt: at.Add(time.Hour), By: "intune:x"})
	check(t, err, "revoke again")
	if got.Reason != 1 || !got.RevokedAt.Equal(at) || got.By != "admin" {
		t.Fatalf("revoking again returned %+v, want the first revocation", got)
	}
	list, err := b.Revocations.RevokedSince(ctx, time.Time{})
	check(t, err, "since")
	if len(list) != 1 || list[0].Reason != 1 || !list[0].RevokedAt.Equal(at) {
		t.Fatalf("listed %+v, want the first revocation only", list)
	}
}

// revocationFirstKeptWhole: revoking again returns the first revocation as it was
// recorded, none of its fields taken from the second (here By, empty the first time).
func revocationFirstKeptWhole(t *testing.T, b Backend) {
	at := time.Now().Add(-time.Minute).Truncate(time.Second)
	_, err := b.Revocations.Revoke(ctx, &crp.Revocation{Serial: big.NewInt(43), Reason: 1, RevokedAt: at})
	check(t, err, "revoke")
	got, err := b.Revocations.Revoke(ctx, &crp.Revocation{Serial: big.NewInt(43), Reason: 4, RevokedAt: at.Add(time.Hour),
		By: "intune:second"})
	check(t, err, "revoke again")
	if got.Reason != 1 || !got.RevokedAt.Equal(at) || got.By != "" {
		t.Fatalf("revoking again returned %+v, want the first revocation (no By)", got)
	}
}

func revocationSince(t *testing.T, b Backend) {
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	for i, s := range []int64{5, 3, 9, 1} {
		_, err := b.Revocations.Revoke(ctx, &crp.Revocation{Serial: big.NewInt(s), RevokedAt: base.Add(time.Duration(i%3) * time.Minute)})
		check(t, err, "revoke")
	}
	for _, tc := range []struct {
		since time.Time
		want  string
	}{
		{time.Time{}, "[1 5 3 9]"},
		{base.Add(time.Minute), "[3 9]"},
		{base.Add(2 * time.Minute), "[9]"},
		{base.Add(time.Hour), "[]"},
	} {
		list, err := b.Revocations.RevokedSince(ctx, tc.since)
		check(t, err, "since")
		s := make([]string, len(list))
		for i, r := range list {
			s[i] = r.Serial.String()
		}
		if fmt.Sprint(s) != tc.want {
			t.Errorf("since %v: %v, want %s", tc.since, s, tc.want)
		}
	}
}

func revocationInvalid(t *testing.T, b Backend) {
	now := time.Now()
	for _, r := range []*crp.Revocation{
		{Serial: nil, RevokedAt: now},
		{Serial: big.NewInt(0), RevokedAt: now},
		{Serial: big.NewInt(-3), RevokedAt: now},
		{Serial: big.NewInt(3), Reason: 7, RevokedAt: now},
		// removeFromCRL: delta CRLs only (RFC 5280 section 5.3.1); in a full CRL,
		// OpenSSL takes the certificate for valid.
		{Serial: big.NewInt(3), Reason: 8, RevokedAt: now},
		{Serial: big.NewInt(3), Reason: 11, RevokedAt: now},
		{Serial: big.NewInt(3)},
	} {
		if _, err := b.Revocations.Revoke(ctx, r); err == nil {
			t.Errorf("revocation %+v accepted", r)
		}
	}
	list, err := b.Revocations.RevokedSince(ctx, time.Time{})
	check(t, err, "since")
	if len(list) != 0 {
		t.Fatalf("refused revocations were kept: %+v", list)
	}
}

func revocationChecker(t *testing.T, b Backend) {
	c := Certificate(t, 555, time.Now().Add(time.Hour))
	other := Certificate(t, 556, time.Now().Add(time.Hour))
	_, err := b.Revocations.Revoke(ctx, &crp.Revocation{Serial: c.SerialNumber, RevokedAt: time.Now()})
	check(t, err, "revoke")
	if ok, err := b.Checker.IsRevoked(ctx, c); err != nil || !ok {
		t.Fatalf("IsRevoked of the revoked certificate: %v, %v", ok, err)
	}
	if ok, err := b.Checker.IsRevoked(ctx, other); err != nil || ok {
		t.Fatalf("IsRevoked of another certificate: %v, %v", ok, err)
	}
}

// revocationIssuer: a revocation keeps its certificate's issuer name; IsRevoked
// matches a certificate of that issuer, not one of another CA with the same serial
// (serials are unique per issuer only). A revocation without an issuer, as stored
// before issuers were, matches a certificate of any issuer.
func revocationIssuer(t *testing.T, b Backend) {
	now := time.Now().Truncate(time.Second)
	c := Certificate(t, 557, now.Add(time.Hour))
	got, err := b.Revocations.Revoke(ctx, &crp.Revocation{Serial: c.SerialNumber, RevokedAt: now, Issuer: c.RawIssuer})
	check(t, err, "revoke")
	if !bytes.Equal(got.Issuer, c.RawIssuer) {
		t.Fatalf("Revoke returned issuer %x, want %x", got.Issuer, c.RawIssuer)
	}
	_, err = b.Revocations.Revoke(ctx, &crp.Revocation{Serial: big.NewInt(558), RevokedAt: now})
	check(t, err, "revoke without issuer")
	list, err := b.Revocations.RevokedSince(ctx, time.Time{})
	check(t, err, "since")
	if len(list) != 2 || !bytes.Equal(list[0].Issuer, c.RawIssuer) || list[1].Issuer != nil {
		t.Fatalf("listed %+v, want 557 with its issuer and 558 without", list)
	}
	if ok, err := b.Checker.IsRevoked(ctx, c); err != nil || !ok {
		t.Fatalf("IsRevoked of the revoked certificate: %v, %v", ok, err)
	}
	if ok, err := b.Checker.IsRevoked(ctx, otherIssuer(t, 557)); err != nil || ok {
		t.Fatalf("IsRevoked of another CA's certificate with the revoked serial: %v, %v", ok, err)
	}
	if ok, err := b.Checker.IsRevoked(ctx, otherIssuer(t, 558)); err != nil || !ok {
		t.Fatalf("IsRevoked for a revocation stored without issuer: %v, %v", ok, err)
	}
}

// otherIssuer is a certificate with serial whose issuer is named "other CA".
func otherIssuer(t *testing.T, serial int64) *x509.Certificate {
	t.Helper()
	c := theCA(t)
	parent := &x509.Certificate{Subject: pkix.Name{CommonName: "other CA"}, SerialNumber: big.NewInt(1)}
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(serial),
		Subject: pkix.Name{CommonName: "device"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)},
		parent, c.key.Public(), c.key)
	check(t, err, "certificate")
	cert, err := x509.ParseCertificate(der)
	check(t, err, "parse")
	return cert
}

// revocationCheckerNoSerial: a certificate without a serial (or none at all) is an
// error, never a panic nor an answer.
func revocationCheckerNoSerial(t *testing.T, b Backend) {
	for name, c := range map[string]*x509.Certificate{"nil": nil, "no serial": {}} {
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Fatalf("IsRevoked(%s) panicked: %v", name, r)
				}
			}()
			if ok, err := b.Checker.IsRevoked(ctx, c); err == nil || ok {
				t.Fatalf("IsRevoked(%s) = %v, %v; want an error", name, ok, err)
			}
		}()
	}
}
