package crp_test

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/catemplate"
	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/crptest"
	"github.com/scepkit/scepkit/scep"
)

// pollEnv is a gateway whose RA certificates last an hour, with a next RA under the
// same CA ready, served over HTTP on 127.0.0.1 through a handler a test can swap.
type pollEnv struct {
	*crptest.Env
	clock  *testClock
	start  time.Time
	nextRA *catemplate.RA
}

// TestClientPollAcrossRARenewal: a request waits for approval (PENDING) while the
// gateway's RA is renewed; the approval comes after. The scep.Client polling for it
// must end with the certificate when the new RA is one its pinned CA issued, fetching
// GetCACert once more; and must still refuse (ErrBadReply, as before) a server whose
// new RA the pinned CA did not issue. Before, the Client kept polling with the RA it
// fetched when the enrollment began: the completed rollover's gateway could not
// decrypt the poll and answered with a FAILURE signed by an RA the Client did not
// know, and the device lost the certificate it had been approved for.
func TestClientPollAcrossRARenewal(t *testing.T) {
	for _, tc := range []struct {
		name string
		// rollover, when set, configures an RA-only crp.Rollover at start plus it.
		rollover time.Duration
		// change runs while no request is in flight, after the request went
		// PENDING: it moves the clock and returns the handler now answering (nil
		// keeps the one serving).
		change func(t *testing.T, e *pollEnv) http.Handler
		// ok: the poll ends with the approved certificate; else with ErrBadReply,
		// and also wantErr when set.
		ok      bool
		wantErr error
		// getCACert is how many GetCACert requests the Client sends in all, polls
		// how many PKIOperations once the gateway changed (unchecked when 0: where
		// the clock passes the RA's expiry, the PENDING read just before may be
		// judged after it, and its refetch come before the next poll).
		getCACert, polls int32
		// fails: the poll ends with a FAILURE of wantFail (instead of ErrBadReply).
		fails    bool
		wantFail scep.FailInfo
	}{
		{name: "RA renewed, gateway restarted with the new RA only", ok: true, getCACert: 2, polls: 2,
			change: func(t *testing.T, e *pollEnv) http.Handler {
				e.clock.Set(e.start.Add(10 * time.Minute))
				return crp.NewServer(e.RP, e.nextRA)
			}},
		{name: "RA rollover switched, previous RA expired", rollover: 30 * time.Minute, ok: true, getCACert: 2,
			change: func(t *testing.T, e *pollEnv) http.Handler {
				e.clock.Set(e.start.Add(2 * time.Hour))
				return nil
			}},
		{name: "RA rollover switched, previous RA still valid", rollover: 30 * time.Minute, ok: true, getCACert: 1, polls: 1,
			change: func(t *testing.T, e *pollEnv) http.Handler {
				e.clock.Set(e.start.Add(31 * time.Minute)) // the gateway still answers with the previous RA
				return nil
			}},
		{name: "RA encryption certificate renewed alone", ok: true, getCACert: 2, polls: 2,
			change: func(t *testing.T, e *pollEnv) http.Handler {
				// The poll, encrypted to the previous encryption certificate, gets a
				// FAILURE badMessageCheck signed by the RA the Client knows.
				e.clock.Set(e.start.Add(10 * time.Minute))
				return crp.NewServer(e.RP, &catemplate.RA{SigningCertificate: e.RA.SigningCertificate, Signer: e.RA.Signer,
					EncryptionCertificate: e.nextRA.EncryptionCertificate, Decrypter: e.nextRA.Decrypter})
			}},
		{name: "badMessageCheck with GetCACert unchanged: the reply stands", getCACert: 2, polls: 1, fails: true, wantFail: scep.BadMessageCheck,
			change: func(t *testing.T, e *pollEnv) http.Handler {
				// The same certificates served, the encryption certificate's key lost:
				// fetching them again changes nothing, so nothing is sent again.
				return crp.NewServer(e.RP, &catemplate.RA{SigningCertificate: e.RA.SigningCertificate, Signer: e.RA.Signer,
					EncryptionCertificate: e.RA.EncryptionCertificate, Decrypter: e.nextRA.Decrypter})
			}},
		{name: "RA swapped for one another CA of the same name issued", getCACert: 2,
			change: func(t *testing.T, e *pollEnv) http.Handler {
				e.clock.Set(e.start.Add(10 * time.Minute))
				rogueCA, err := catemplate.NewCA(catemplate.CAOptions{Subject: e.CA.Certificate.Subject})
				require.NoError(t, err)
				rogueRA, err := catemplate.NewRA(rogueCA, catemplate.RAOptions{Subject: pkix.Name{CommonName: "scepkit RA"}})
				require.NoError(t, err)
				return crp.NewServer(e.RP, rogueRA) // GetCACert: the pinned CA, and an RA it did not issue
			}},
		{name: "gateway swapped for one of another CA", getCACert: 2, wantErr: scep.ErrFingerprint,
			change: func(t *testing.T, e *pollEnv) http.Handler {
				e.clock.Set(e.start.Add(10 * time.Minute))
				rogue, err := crptest.New(crptest.Options{Now: e.clock.Now})
				require.NoError(t, err)
				t.Cleanup(func() { rogue.Close() })
				return crp.NewServer(rogue.RP, rogue.RA)
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keys(t)
			start := time.Now()
			clock := &testClock{now: start}
			ca, err := catemplate.NewCA(catemplate.CAOptions{Subject: pkix.Name{CommonName: "scepkit CA"}})
			require.NoError(t, err)
			ra, err := catemplate.NewRA(ca, catemplate.RAOptions{Validity: time.Hour})
			require.NoError(t, err)
			nextRA, err := catemplate.NewRA(ca, catemplate.RAOptions{Subject: pkix.Name{CommonName: "scepkit RA 2"}})
			require.NoError(t, err)
			env, err := crptest.New(crptest.Options{CA: ca, RA: ra, Now: clock.Now})
			require.NoError(t, err)
			t.Cleanup(func() { env.Close() })
			env.Templates[crptest.TemplateName].RequiresApproval = true
			if tc.rollover != 0 {
				env.RP.Rollover = &crp.Rollover{At: start.Add(tc.rollover), RA: nextRA}
			}
			require.NoError(t, env.RP.Validate())
			e := &pollEnv{Env: env, clock: clock, start: start, nextRA: nextRA}

			first := crp.NewServer(env.RP, env.RA)
			require.NoError(t, first.Validate())
			var serving atomic.Pointer[http.Handler]
			var h http.Handler = first
			serving.Store(&h)
			var gate sync.RWMutex // held by the test: requests wait
			var getCACert, pkiOperation atomic.Int32
			ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				gate.RLock()
				defer gate.RUnlock()
				switch r.URL.Query().Get("operation") {
				case "GetCACert":
					getCACert.Add(1)
				case "PKIOperation":
					pkiOperation.Add(1)
				}
				(*serving.Load()).ServeHTTP(w, r)
			}))
			defer ts.Close()

			client := &scep.Client{URL: ts.URL, CAFingerprint: env.CAFingerprint(), Now: clock.Now,
				PollInterval: 20 * time.Millisecond}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			type result struct {
				cert *x509.Certificate
				err  error
			}
			done := make(chan result, 1)
			go func() {
				cert, err := client.Enroll(ctx, csr(t, deviceKey, "alice@example.com", mint(t, env, "alice@example.com", "alice-laptop")).Raw, deviceKey)
				done <- result{cert, err}
			}()
			var id string
			require.Eventually(t, func() bool {
				recs, err := env.Store.Pending(ctx, "", 0)
				if err != nil || len(recs) == 0 {
					return false
				}
				id = recs[0].TransactionID
				// The first CertPoll is sent: the PENDING was read with the
				// clock before the change.
				return pkiOperation.Load() >= 2
			}, 10*time.Second, 10*time.Millisecond, "the request is pending, and polled")

			// While no request is in flight: the gateway changes, then the request is
			// approved; the next poll is the first the changed gateway sees.
			gate.Lock()
			before := pkiOperation.Load()
			if next := tc.change(t, e); next != nil {
				serving.Store(&next)
			}
			approved, err := env.RP.Approve(ctx, id)
			require.NoError(t, err)
			gate.Unlock()

			r := <-done
			if tc.ok {
				require.NoError(t, r.err, "the device gets the certificate it was approved for")
				require.True(t, r.cert.Equal(approved))
				require.NoError(t, r.cert.CheckSignatureFrom(ca.Certificate))
			} else if tc.fails {
				var fe *scep.FailError
				require.ErrorAs(t, r.err, &fe)
				require.Equal(t, tc.wantFail, fe.Info)
				require.Nil(t, r.cert)
			} else {
				require.ErrorIs(t, r.err, scep.ErrBadReply)
				if tc.wantErr != nil {
					require.ErrorIs(t, r.err, tc.wantErr)
				}
				require.NotErrorIs(t, r.err, scep.ErrPending)
				require.Nil(t, r.cert)
			}
			require.Equal(t, tc.getCACert, getCACert.Load(), "GetCACert requests")
			if tc.polls != 0 {
				require.Equal(t, tc.polls, pkiOperation.Load()-before, "PKIOperations once the gateway changed")
			}
		})
	}
}
