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

// TestClientRequestAcrossRARenewal: the gateway's RA is renewed between the Client's
// GetCACert and the reply to its first request (a PKCSReq, or a RenewalReq), so the
// request is encrypted to, and its reply checked against, certificates the gateway no
// longer serves. The scep.Client must end with the certificate when the new RA is one
// its pinned CA issued, fetching GetCACert once more and resending the request once
// under the same transactionID; a gateway that had decided the request before answers
// the resend from its record, so no second certificate is issued and the challenge is
// not spent twice. It must still refuse an RA the pinned CA did not issue and a
// gateway of another CA, let a FAILURE stand when GetCACert has not changed, and
// resend at most once to a gateway whose GetCACert changes at every request. Before,
// the first request failed with "CertRep signed by a certificate GetCACert did not
// return" or badMessageCheck, although the gateway may have issued.
func TestClientRequestAcrossRARenewal(t *testing.T) {
	keys(t)
	// One CA for every case: the cases renew its RA.
	ca, err := catemplate.NewCA(catemplate.CAOptions{Subject: pkix.Name{CommonName: "scepkit CA"}, KeySize: 2048})
	require.NoError(t, err)
	// withPrevious is the gateway restarted with its next RA, which still decrypts
	// with the previous encryption key (requests in flight), so that it decides a
	// request encrypted to the previous RA and signs the reply with the new one.
	withPrevious := func(e *pollEnv) *scep.Server {
		srv := crp.NewServer(e.RP, e.nextRA)
		srv.Recipients = append(srv.Recipients, scep.Recipient{Certificate: e.RA.EncryptionCertificate, Key: e.RA.Decrypter})
		return srv
	}
	for _, tc := range []struct {
		name string
		// renew: the request is a Renew of a certificate enrolled first, before
		// anything changed; else an Enroll.
		renew bool
		// approval: the template needs approval, given once the request is recorded.
		approval bool
		// rollover, when set, configures an RA-only crp.Rollover at start plus it.
		rollover time.Duration
		// change builds, before the request, the handler that serves the request's
		// first PKIOperation and everything after (nil keeps the one serving); when
		// that PKIOperation arrives the clock is set to start plus clockAt (when set).
		change  func(t *testing.T, e *pollEnv) http.Handler
		clockAt time.Duration
		// ok: the request ends with the certificate; else with ErrBadReply, and also
		// wantErr when set; or, fails, with a FAILURE of wantFail.
		ok       bool
		wantErr  error
		fails    bool
		wantFail scep.FailInfo
		// getCACert and pkiOperation are the GetCACert requests and PKIOperations of
		// the request under test (pkiOperation unchecked when 0: polls).
		getCACert, pkiOperation int32
	}{
		{name: "RA renewed between GetCACert and the request, gateway restarted with the new RA only",
			ok: true, getCACert: 2, pkiOperation: 2,
			change: func(t *testing.T, e *pollEnv) http.Handler { return crp.NewServer(e.RP, e.nextRA) }},
		{name: "RA renewed while the request was decided: issued, the reply signed by the new RA",
			ok: true, getCACert: 2, pkiOperation: 2,
			change: func(t *testing.T, e *pollEnv) http.Handler { return withPrevious(e) }},
		{name: "RA renewed while the request was decided: PENDING signed by the new RA, approved after",
			approval: true, ok: true, getCACert: 2,
			change: func(t *testing.T, e *pollEnv) http.Handler { return withPrevious(e) }},
		{name: "RA-only rollover switched between GetCACert and the request, previous RA expired",
			rollover: 10 * time.Minute, clockAt: 30 * time.Minute, ok: true, getCACert: 2, pkiOperation: 2},
		{name: "RA encryption certificate renewed alone: badMessageCheck signed by the RA the Client knows",
			ok: true, getCACert: 2, pkiOperation: 2,
			change: func(t *testing.T, e *pollEnv) http.Handler {
				return crp.NewServer(e.RP, &catemplate.RA{SigningCertificate: e.RA.SigningCertificate, Signer: e.RA.Signer,
					EncryptionCertificate: e.nextRA.EncryptionCertificate, Decrypter: e.nextRA.Decrypter})
			}},
		{name: "badMessageCheck with GetCACert unchanged: the FAILURE stands",
			fails: true, wantFail: scep.BadMessageCheck, getCACert: 2, pkiOperation: 1,
			change: func(t *testing.T, e *pollEnv) http.Handler {
				// The same certificates served, the encryption certificate's key lost.
				return crp.NewServer(e.RP, &catemplate.RA{SigningCertificate: e.RA.SigningCertificate, Signer: e.RA.Signer,
					EncryptionCertificate: e.RA.EncryptionCertificate, Decrypter: e.nextRA.Decrypter})
			}},
		{name: "RA swapped for one another CA of the same name issued",
			// GetCACert again keeps the pinned CA alone: the request is sent once more,
			// encrypted to the CA, which the swapped gateway cannot read.
			getCACert: 2, pkiOperation: 2,
			change: func(t *testing.T, e *pollEnv) http.Handler {
				rogueCA, err := catemplate.NewCA(catemplate.CAOptions{Subject: e.CA.Certificate.Subject, KeySize: 2048})
				require.NoError(t, err)
				rogueRA, err := catemplate.NewRA(rogueCA, catemplate.RAOptions{Subject: pkix.Name{CommonName: "scepkit RA"}, Combined: true})
				require.NoError(t, err)
				return crp.NewServer(e.RP, rogueRA) // GetCACert: the pinned CA, and an RA it did not issue
			}},
		{name: "gateway swapped for one of another CA", wantErr: scep.ErrFingerprint, getCACert: 2, pkiOperation: 1,
			change: func(t *testing.T, e *pollEnv) http.Handler {
				rogue, err := crptest.New(crptest.Options{Now: e.clock.Now, CAKeySize: 2048})
				require.NoError(t, err)
				t.Cleanup(func() { rogue.Close() })
				return crp.NewServer(rogue.RP, rogue.RA)
			}},
		{name: "GetCACert different at every request: one resend, then the reply stands", getCACert: 2, pkiOperation: 2,
			change: func(t *testing.T, e *pollEnv) http.Handler {
				// Each GetCACert and PKIOperation is served by the next of these RAs,
				// all issued by the pinned CA: no reply is signed by an RA the Client
				// was given, none can read what the Client sends.
				var servers []http.Handler
				for range 6 {
					ra, err := catemplate.NewRA(e.CA, catemplate.RAOptions{Combined: true})
					require.NoError(t, err)
					servers = append(servers, crp.NewServer(e.RP, ra))
				}
				var n atomic.Int32
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					i := 0
					if op := r.URL.Query().Get("operation"); op == "GetCACert" || op == "PKIOperation" {
						i = int(n.Add(1)-1) % len(servers)
					}
					servers[i].ServeHTTP(w, r)
				})
			}},
		{name: "renewal: RA renewed between GetCACert and the RenewalReq", renew: true,
			ok: true, getCACert: 2, pkiOperation: 2,
			change: func(t *testing.T, e *pollEnv) http.Handler { return crp.NewServer(e.RP, e.nextRA) }},
		{name: "renewal: RA renewed while the RenewalReq was decided, the reply signed by the new RA", renew: true,
			ok: true, getCACert: 2, pkiOperation: 2,
			change: func(t *testing.T, e *pollEnv) http.Handler { return withPrevious(e) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			clock := &testClock{now: start}
			ra, err := catemplate.NewRA(ca, catemplate.RAOptions{Validity: 20 * time.Minute})
			require.NoError(t, err)
			nextRA, err := catemplate.NewRA(ca, catemplate.RAOptions{Subject: pkix.Name{CommonName: "scepkit RA 2"}})
			require.NoError(t, err)
			env, err := crptest.New(crptest.Options{CA: ca, RA: ra, Now: clock.Now})
			require.NoError(t, err)
			t.Cleanup(func() { env.Close() })
			env.Templates[crptest.TemplateName].RequiresApproval = tc.approval
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
			var next http.Handler
			if tc.change != nil {
				next = tc.change(t, e)
			}
			var armed atomic.Bool
			var change sync.Once
			var getCACert, pkiOperation atomic.Int32
			ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				switch r.URL.Query().Get("operation") {
				case "GetCACert":
					getCACert.Add(1)
				case "PKIOperation":
					pkiOperation.Add(1)
					if armed.Load() {
						change.Do(func() {
							if tc.clockAt != 0 {
								clock.Set(start.Add(tc.clockAt))
							}
							if next != nil {
								serving.Store(&next)
							}
						})
					}
				}
				(*serving.Load()).ServeHTTP(w, r)
			}))
			defer ts.Close()

			client := &scep.Client{URL: ts.URL, CAFingerprint: env.CAFingerprint(), Now: clock.Now,
				PollInterval: 20 * time.Millisecond}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			ch := mint(t, env, "alice@example.com", "alice-laptop")
			var old *x509.Certificate
			if tc.renew {
				old, err = client.Enroll(ctx, csr(t, deviceKey, "alice@example.com", ch).Raw, deviceKey)
				require.NoError(t, err)
			}
			issuedBefore := env.Issuer.Count()
			getCACert.Store(0)
			pkiOperation.Store(0)
			armed.Store(true)

			type result struct {
				cert *x509.Certificate
				err  error
			}
			done := make(chan result, 1)
			go func() {
				var cert *x509.Certificate
				var err error
				if tc.renew {
					cert, err = client.Renew(ctx, csr(t, deviceKey, "alice@example.com", "").Raw, old, deviceKey)
				} else {
					cert, err = client.Enroll(ctx, csr(t, deviceKey, "alice@example.com", ch).Raw, deviceKey)
				}
				done <- result{cert, err}
			}()
			var approved *x509.Certificate
			if tc.approval {
				var id string
				require.Eventually(t, func() bool {
					recs, err := env.Store.Pending(ctx, "", 0)
					if err != nil || len(recs) == 0 {
						return false
					}
					id = recs[0].TransactionID
					return true
				}, 10*time.Second, 10*time.Millisecond, "the request is pending")
				approved, err = env.RP.Approve(ctx, id)
				require.NoError(t, err)
			}

			r := <-done
			issued := env.Issuer.Count() - issuedBefore
			switch {
			case tc.ok:
				require.NoError(t, r.err, "the device gets the certificate the gateway issued")
				require.NoError(t, r.cert.CheckSignatureFrom(ca.Certificate))
				require.True(t, deviceKey.PublicKey.Equal(r.cert.PublicKey), "issued for the device key")
				if approved != nil {
					require.True(t, r.cert.Equal(approved))
				}
				require.Equal(t, 1, issued, "one certificate for the request, however often it was sent")
			case tc.fails:
				var fe *scep.FailError
				require.ErrorAs(t, r.err, &fe)
				require.Equal(t, tc.wantFail, fe.Info)
				require.Nil(t, r.cert)
				require.Zero(t, issued)
			default:
				require.ErrorIs(t, r.err, scep.ErrBadReply)
				if tc.wantErr != nil {
					require.ErrorIs(t, r.err, tc.wantErr)
				}
				require.Nil(t, r.cert)
				require.Zero(t, issued)
			}
			require.Equal(t, tc.getCACert, getCACert.Load(), "GetCACert requests")
			if tc.pkiOperation != 0 {
				require.Equal(t, tc.pkiOperation, pkiOperation.Load(), "PKIOperations")
			}
		})
	}
}
