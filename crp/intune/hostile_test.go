package intune_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/intune"
	"github.com/scepkit/scepkit/crp/intune/intunetest"
	"github.com/stretchr/testify/require"
)

// A validation service that redirects: the answer of the host it names is no
// verdict, and that host never sees the CSR (Microsoft's library does not follow a
// POST's redirect either). Nothing is issued.
func TestRedirectIsNoVerdict(t *testing.T) {
	for _, status := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther,
		http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			var hits atomic.Int32
			other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				hits.Add(1)
				w.Header().Set("Content-Type", "application/json")
				io.WriteString(w, `{"code":"Success","errorDescription":""}`)
			}))
			defer other.Close()
			g := newGateway(t, false)
			g.Emu.SetFault(intunetest.OpValidate, intunetest.Fault{Status: status,
				Header: http.Header{"Location": {other.URL + "/ScepActions/validateRequest"}}})
			ch := g.Emu.Challenge(intunetest.Verdict{})
			res, err := g.RP.Enroll(context.Background(), &crp.EnrollRequest{TransactionID: "tx-redirect",
				CSR: csr(t, "d", ch), Challenge: ch})
			require.ErrorIs(t, err, intune.ErrService)
			require.ErrorIs(t, err, crp.ErrUnavailable)
			require.Nil(t, res.Certificate)
			require.Zero(t, g.Issuer.Count())
			require.Zero(t, hits.Load(), "the redirect was followed")
			require.Empty(t, g.Emu.Successes())
		})
	}
}

// The answer's members are read by their exact names, and one given twice is no
// answer: encoding/json alone would read {"Code":"Success"} as a Success, and the
// last of two codes.
func TestAnswerMemberNames(t *testing.T) {
	for _, c := range []struct {
		name, body string
		issued     bool
		want       error  // with issued false
		code       string // a refusal's code, when want is nil
	}{
		{"exact", `{"code":"Success","errorDescription":""}`, true, nil, ""},
		{"other members ignored", `{"code":"Success","Code":"ChallengeExpired","x":[1,{"code":2}]}`, true, nil, ""},
		{"capitalised code", `{"Code":"Success","errorDescription":""}`, false, intune.ErrResponse, ""},
		{"upper-case code", `{"CODE":"Success"}`, false, intune.ErrResponse, ""},
		{"refusal beside a case variant", `{"code":"SubjectNameMismatch","CODE":"Success","errorDescription":""}`,
			false, nil, string(intune.CodeSubjectNameMismatch)},
		{"code twice", `{"code":"SubjectNameMismatch","code":"Success"}`, false, intune.ErrResponse, ""},
		{"null", `null`, false, intune.ErrResponse, ""},
		{"code not a string", `{"code":1}`, false, intune.ErrResponse, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := newGateway(t, false)
			g.Emu.SetFault(intunetest.OpValidate, intunetest.Fault{Body: c.body, Times: 1})
			ch := g.Emu.Challenge(intunetest.Verdict{})
			res, err := g.RP.Enroll(context.Background(), &crp.EnrollRequest{TransactionID: "tx-names",
				CSR: csr(t, "d", ch), Challenge: ch})
			if c.issued {
				require.NoError(t, err)
				require.NotNil(t, res.Certificate)
				return
			}
			require.Error(t, err)
			require.Nil(t, res.Certificate)
			require.Zero(t, g.Issuer.Count())
			if c.want != nil {
				require.ErrorIs(t, err, c.want)
				return
			}
			var se *intune.ServiceError
			require.ErrorAs(t, err, &se)
			require.Equal(t, c.code, string(se.Code))
			require.NotEmpty(t, se.RequestID, "a refusal names the call for Microsoft support")
			require.Equal(t, g.Emu.RequestIDs(intunetest.OpValidate)[0], se.RequestID)
		})
	}
}

// A 429 or 503 with Retry-After is tried again no sooner than the service asks; one
// asking for longer than MaxRetryAfter is not waited for.
func TestRetryAfter(t *testing.T) {
	g := newGateway(t, false)
	ctx := context.Background()
	g.Emu.SetFault(intunetest.OpValidate, intunetest.Fault{Status: http.StatusTooManyRequests,
		Header: http.Header{"Retry-After": {"1"}}, Times: 1})
	ch := g.Emu.Challenge(intunetest.Verdict{})
	start := time.Now()
	_, err := g.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "tx-429", CSR: csr(t, "d", ch), Challenge: ch})
	require.NoError(t, err)
	require.GreaterOrEqual(t, time.Since(start), time.Second, "Retry-After: 1 was not waited for")
	require.Equal(t, 2, g.Emu.Calls(intunetest.OpValidate))

	g.Emu.SetFault(intunetest.OpValidate, intunetest.Fault{Status: http.StatusServiceUnavailable,
		Header: http.Header{"Retry-After": {"3600"}}})
	ch = g.Emu.Challenge(intunetest.Verdict{})
	start = time.Now()
	res, err := g.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "tx-503", CSR: csr(t, "d", ch), Challenge: ch})
	require.ErrorIs(t, err, crp.ErrUnavailable)
	require.Nil(t, res.Certificate)
	require.Less(t, time.Since(start), 10*time.Second)
	require.Equal(t, 3, g.Emu.Calls(intunetest.OpValidate), "an hour's Retry-After fails the call without a retry")
}

// A failure's errorDescription fits the service's 255 characters as Java and .NET
// count them (UTF-16 code units), and its hResult is a signed 32-bit integer.
func TestFailureNotificationLimits(t *testing.T) {
	g := newGateway(t, false)
	csrDER := csrDER(t, "d", "")
	long := strings.Repeat("\U0001F512", 300) // each two UTF-16 code units
	require.NoError(t, g.Client.NotifyFailure(context.Background(), "tx-desc", csrDER, intune.HResultAccessDenied, long))
	f := g.Emu.Failures()
	require.Len(t, f, 1)
	d := f[0].Notification.ErrorDescription
	require.LessOrEqual(t, len(utf16.Encode([]rune(d))), intune.MaxErrorDescription)
	require.True(t, strings.HasSuffix(d, "…"))
	require.Equal(t, int64(-2147024891), f[0].Notification.HResult, "E_ACCESSDENIED as an int32")
	require.Empty(t, g.Emu.Violations())
}

// A full batch of revocation requests none of which can be answered (no
// requestContext) is not downloaded again at once, over and over: the poller waits
// its Interval.
func TestPollerFullBatchUnanswerable(t *testing.T) {
	emu := intunetest.NewServer()
	defer emu.Close()
	c := emu.Client("scepkit-test/1.0")
	emu.SetFault(intunetest.OpDownload, intunetest.Fault{ // no requestContext
		Body: `{"value":[{"serialNumber":"01"},{"serialNumber":"02"}]}`})
	p := &intune.Poller{Client: c, Batch: 2, Interval: time.Minute, Backoff: 5 * time.Millisecond,
		Revoker: intune.RevokerFunc(func(context.Context, *intune.RevocationRequest) error { return nil })}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	err := p.Run(ctx)
	require.True(t, errors.Is(err, context.DeadlineExceeded))
	require.Equal(t, 1, emu.Calls(intunetest.OpDownload), "the unanswerable batch was downloaded again without a pause")
}
