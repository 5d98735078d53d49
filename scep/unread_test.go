package scep

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// TestUnreadAnswerHoldsNoTurn: a requester that sends PKIOperations and never reads
// the answers holds no turn (MaxInFlight) and no body memory while its answer waits to
// be sent. Before, the answer was written while the request still held its turn: a
// GetCRL, which any self-signed requester may send, answered with a CRL larger than
// the socket buffers blocked in the write until the http.Server's WriteTimeout, so
// that MaxInFlight such connections kept every enrollment out for minutes. Here one
// turn, none waiting, a connection pipelining GetCRLs it never reads, and an
// enrollment still gets its certificate.
func TestUnreadAnswerHoldsNoTurn(t *testing.T) {
	p, ts, s, crls, msg := bigCRLServer(t)
	pipelineUnread(t, ts, msg)

	// The server's answers fill the socket buffers, and the one being written blocks.
	last, since := int64(-1), time.Now()
	waitFor(t, "the GetCRL answers to stall", func() bool {
		if n := crls.Load(); n != last {
			last, since = n, time.Now()
		}
		return last >= 2 && time.Since(since) > 500*time.Millisecond
	})
	require.Less(t, last, int64(30), "every answer was taken: the socket buffers did not fill")

	require.Zero(t, len(s.limiter().slots), "a turn is held by an answer the requester does not read")
	require.Zero(t, s.limiter().bodies.held.Load(), "body memory is held by an answer the requester does not read")
	fp := sha256.Sum256(p.ca.Raw)
	cl := &Client{URL: ts.URL, CAFingerprint: fp[:]}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	d2 := newDevice(t)
	_, err := cl.Enroll(ctx, newCSR(t, d2.key, "device", "secret"), d2.key)
	require.NoError(t, err)
	require.Equal(t, 1, p.issuedCount())
}

// TestUnreadAnswersBounded: the answers waiting to be sent after their turn are
// bounded together. One that would exceed the bound while others wait is refused
// with 503 (what the operation decided is recorded; a resend gets it), and one larger
// than the bound is sent within its turn, so that it is still answered. Before, answers
// held after their turn were not counted: requesters that did not read their GetCRL
// answers held a CRL each, without bound.
func TestUnreadAnswersBounded(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	_, ts, s, _, msg := bigCRLServer(t, func(s *Server) { s.MeterProvider = sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)) })
	const (
		sentCRL    = "scep.message_type=GetCRL,scep.operation=PKIOperation,scep.status=SUCCESS"
		overloaded = "scep.operation=PKIOperation,scep.status=overloaded"
	)
	l := s.limiter()
	post := func() (int, []byte) {
		resp, err := http.Post(ts.URL+"/?operation=PKIOperation", "application/x-pki-message", bytes.NewReader(msg))
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, b
	}
	code, answer := post()
	require.Equal(t, http.StatusOK, code)
	size := int64(len(answer))
	require.Zero(t, l.answers.held.Load(), "a sent answer is given back")

	// Room for one answer: a requester that does not read holds it.
	l.answers.max = size + size/2
	pipelineUnread(t, ts, msg)
	// The socket buffers fill, and the answer being written then stays counted.
	var since time.Time
	waitFor(t, "an unread answer to stay counted", func() bool {
		if l.answers.held.Load() != size {
			since = time.Time{}
			return false
		}
		if since.IsZero() {
			since = time.Now()
		}
		return time.Since(since) > 500*time.Millisecond
	})

	before := requestCounts(t, reader)
	code, _ = post()
	require.Equal(t, http.StatusServiceUnavailable, code, "no room for a second answer while the first waits")
	// Counted as the 503 it was, not as the CertRep SUCCESS the requester did not get.
	after := requestCounts(t, reader)
	require.Equal(t, before[sentCRL], after[sentCRL], "the refused answer was counted as sent")
	require.Equal(t, before[overloaded]+1, after[overloaded])
	require.Equal(t, size, l.answers.held.Load())
	require.Zero(t, len(l.slots), "no turn held")

	// An answer larger than the bound is sent within its turn, and arrives.
	l.answers.max = size / 2
	code, b := post()
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, len(answer), len(b))
}

// bigCRLServer serves a test PKI with one turn and no queue, answering GetCRL with a
// CRL of 40,000 entries (larger than the socket buffers), counted in crls; msg is a
// GetCRL from a self-signed requester with no certificate of the CA, which is
// answered anyway. Each of configure is given the Server before it is validated.
func bigCRLServer(t *testing.T, configure ...func(*Server)) (p *testPKI, ts *httptest.Server, s *Server, crls *atomic.Int64, msg []byte) {
	p = newTestPKI(t)
	entries := make([]x509.RevocationListEntry, 40000)
	for i := range entries {
		entries[i] = x509.RevocationListEntry{SerialNumber: big.NewInt(int64(1e9 + i)), RevocationTime: time.Now()}
	}
	crl, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(1),
		ThisUpdate: time.Now(), NextUpdate: time.Now().Add(time.Hour), RevokedCertificateEntries: entries}, p.ca, p.caKey)
	require.NoError(t, err)
	crls = new(atomic.Int64)
	s = p.server(false)
	s.Logger = slog.New(slog.NewTextHandler(testWriter{t}, nil))
	for _, c := range configure {
		c(s)
	}
	require.NoError(t, s.Validate())
	ts = httptest.NewServer(s)
	t.Cleanup(ts.Close)
	s.Responder = ResponderFunc(func(ctx context.Context, req *Request) (*Response, error) {
		if req.MessageType == GetCRL {
			crls.Add(1)
			return &Response{CRL: crl}, nil
		}
		return p.respond(ctx, req)
	})
	s.MaxInFlight, s.MaxQueued = 1, -1
	d := newDevice(t)
	ias, err := MarshalIssuerAndSerial(p.ca.RawSubject, big.NewInt(7))
	require.NoError(t, err)
	msg, _, err = NewRequest(RequestOptions{Type: GetCRL, TransactionID: "unread", Payload: ias,
		Recipient: p.raEnc, SignerCert: d.self, Signer: d.key})
	require.NoError(t, err)
	return p, ts, s, crls, msg
}

// pipelineUnread sends msg 30 times on one connection to ts and never reads the
// answers.
func pipelineUnread(t *testing.T, ts *httptest.Server, msg []byte) {
	c, err := net.Dial("tcp", ts.Listener.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	var reqs bytes.Buffer
	for range 30 {
		fmt.Fprintf(&reqs, "POST /?operation=PKIOperation HTTP/1.1\r\nHost: scep\r\nContent-Type: application/x-pki-message\r\nContent-Length: %d\r\n\r\n%s", len(msg), msg)
	}
	go c.Write(reqs.Bytes()) // never read
}
