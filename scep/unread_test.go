package scep

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"math/big"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
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
	p := newTestPKI(t)
	entries := make([]x509.RevocationListEntry, 40000)
	for i := range entries {
		entries[i] = x509.RevocationListEntry{SerialNumber: big.NewInt(int64(1e9 + i)), RevocationTime: time.Now()}
	}
	crl, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(1),
		ThisUpdate: time.Now(), NextUpdate: time.Now().Add(time.Hour), RevokedCertificateEntries: entries}, p.ca, p.caKey)
	require.NoError(t, err)
	var crls atomic.Int64
	ts, s := p.httpServer(t, false)
	s.Responder = ResponderFunc(func(ctx context.Context, req *Request) (*Response, error) {
		if req.MessageType == GetCRL {
			crls.Add(1)
			return &Response{CRL: crl}, nil
		}
		return p.respond(ctx, req)
	})
	s.MaxInFlight, s.MaxQueued = 1, -1

	// A self-signed requester, no certificate of the CA: GetCRL is answered anyway.
	d := newDevice(t)
	ias, err := MarshalIssuerAndSerial(p.ca.RawSubject, big.NewInt(7))
	require.NoError(t, err)
	msg, _, err := NewRequest(RequestOptions{Type: GetCRL, TransactionID: "unread", Payload: ias,
		Recipient: p.raEnc, SignerCert: d.self, Signer: d.key})
	require.NoError(t, err)
	c, err := net.Dial("tcp", ts.Listener.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	var reqs bytes.Buffer
	for range 30 {
		fmt.Fprintf(&reqs, "POST /?operation=PKIOperation HTTP/1.1\r\nHost: scep\r\nContent-Type: application/x-pki-message\r\nContent-Length: %d\r\n\r\n%s", len(msg), msg)
	}
	go c.Write(reqs.Bytes()) // never read

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
	require.Zero(t, s.limiter().heldBytes.Load(), "body memory is held by an answer the requester does not read")
	fp := sha256.Sum256(p.ca.Raw)
	cl := &Client{URL: ts.URL, CAFingerprint: fp[:]}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	d2 := newDevice(t)
	_, err = cl.Enroll(ctx, newCSR(t, d2.key, "device", "secret"), d2.key)
	require.NoError(t, err)
	require.Equal(t, 1, p.issuedCount())
}
