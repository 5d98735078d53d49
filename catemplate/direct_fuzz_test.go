package catemplate

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/big"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fuzzKeys are made once per process: an RSA-2048 CA (deterministic PKCS #1 v1.5
// signatures, so whole certificates can be compared), the same CA without a subject
// key identifier, and device keys of every kind.
var fuzzKeys struct {
	once    sync.Once
	ca      *CA
	caNoSKI *CA
	pubs    []crypto.PublicKey
	err     error
}

func loadFuzzKeys() error {
	fuzzKeys.once.Do(func() {
		ca, err := NewCA(CAOptions{KeySize: 2048, Now: func() time.Time { return testNow }})
		if err != nil {
			fuzzKeys.err = err
			return
		}
		noSKI := *ca.Certificate
		noSKI.SubjectKeyId = nil
		fuzzKeys.ca = ca
		fuzzKeys.caNoSKI = &CA{Certificate: &noSKI, Signer: ca.Signer, Now: ca.Now}
		dev, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			fuzzKeys.err = err
			return
		}
		fuzzKeys.pubs = append(fuzzKeys.pubs, &dev.PublicKey)
		for _, c := range []elliptic.Curve{elliptic.P256(), elliptic.P384(), elliptic.P521(), elliptic.P224()} {
			k, err := ecdsa.GenerateKey(c, rand.Reader)
			if err != nil {
				fuzzKeys.err = err
				return
			}
			fuzzKeys.pubs = append(fuzzKeys.pubs, &k.PublicKey)
		}
		edPub, _, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			fuzzKeys.err = err
			return
		}
		fuzzKeys.pubs = append(fuzzKeys.pubs, edPub)
	})
	return fuzzKeys.err
}

// fuzzReader hands out the fuzz input a little at a time; past its end it reads zeros,
// so every input, even an empty one, decodes to a template.
type fuzzReader struct{ b []byte }

func (r *fuzzReader) byte() byte {
	if len(r.b) == 0 {
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *fuzzReader) bytes(n int) []byte {
	out := make([]byte, n)
	for i := range out {
		out[i] = r.byte()
	}
	return out
}

func (r *fuzzReader) uint64() uint64 { return binary.BigEndian.Uint64(r.bytes(8)) }

// fuzzOIDs are the identifiers the decoder prefers: the extensions the encoder writes
// itself, a few common ones, EKUs crypto/x509 knows by name (Microsoft ones included),
// and ones crypto/x509 does not.
var fuzzOIDs = []asn1.ObjectIdentifier{
	oidKeyUsage, oidExtKeyUsage, oidBasicConstraints, oidSubjectKeyID, oidAuthorityKeyID,
	{2, 5, 29, 17},                    // subjectAltName
	{1, 3, 6, 1, 5, 5, 7, 1, 1},       // authorityInfoAccess
	{1, 3, 6, 1, 4, 1, 311, 20, 2, 2}, // smartcard logon
	{1, 3, 6, 1, 4, 1, 311, 10, 3, 3}, // Microsoft server gated crypto
	{1, 3, 6, 1, 5, 5, 7, 3, 2},       // clientAuth
	{2, 5, 29, 37, 0},                 // anyExtendedKeyUsage
	{1, 3, 6, 1, 4, 1, 311, 21, 7},    // certificate template
	{2, 999, math.MaxInt},             // large arcs
	{1, 39}, {0, 0}, {2, 40},          // valid, at the edges of the first two arcs
	{1, 40}, {3, 1}, {1}, {}, // invalid
	{1, 2, -1}, {-1, 2}, // negative arcs: encoding/asn1 writes them (malformed), cryptobyte refuses
	{2, math.MaxInt - 10}, // 40*2+arc overflows an int
	{2, 1<<31 - 50},       // 40*2+arc overflows a 32-bit int only
	{2, 1<<31 - 81, 5},    // 40*2+arc just fits a 32-bit int
}

// oid decodes an object identifier: one from fuzzOIDs, or arbitrary arcs (a byte each,
// or eight bytes, negative ones included).
func (r *fuzzReader) oid() asn1.ObjectIdentifier {
	c := r.byte()
	if int(c) < len(fuzzOIDs) {
		return append(asn1.ObjectIdentifier(nil), fuzzOIDs[c]...)
	}
	n := int(c % 7)
	oid := make(asn1.ObjectIdentifier, n)
	for i := range oid {
		a := r.byte()
		if a&0x80 == 0 {
			oid[i] = int(a)
		} else {
			oid[i] = int(int64(r.uint64()))
		}
	}
	return oid
}

var (
	fuzzMinTime = time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)
	fuzzMaxTime = time.Date(10000, 12, 31, 23, 59, 59, 999999999, time.UTC)
	fuzzEdges   = []time.Time{
		time.Date(1950, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(1949, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(2049, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(2050, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(-1, 12, 31, 23, 59, 59, 0, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		testNow,
	}
)

// time decodes an instant from year -1 to 10000 (or near a boundary of UTCTime,
// GeneralizedTime or four-digit years), with nanoseconds, in UTC, Local or a fixed
// zone up to a day away.
func (r *fuzzReader) time() time.Time {
	mode := r.byte()
	var t time.Time
	if int(mode&0x0f) < len(fuzzEdges) {
		t = fuzzEdges[mode&0x0f].Add(time.Duration(int8(r.byte())) * time.Second)
	} else {
		span := uint64(fuzzMaxTime.Unix() - fuzzMinTime.Unix())
		t = time.Unix(fuzzMinTime.Unix()+int64(r.uint64()%span), int64(r.uint64()%1e9))
	}
	switch mode >> 4 {
	case 0, 1, 2, 3:
		return t.UTC()
	case 4:
		return t.Local()
	default:
		off := int(int16(binary.BigEndian.Uint16(r.bytes(2)))) * 3 // up to about ±27 hours
		return t.In(time.FixedZone(fmt.Sprintf("F%d", off), off))
	}
}

// fuzzSubjects are the subjects the decoder picks from besides the CA's own and
// arbitrary bytes.
var fuzzSubjects = func() [][]byte {
	var out [][]byte
	for _, n := range []pkix.Name{
		{CommonName: "jane@contoso.com", Organization: []string{"Contoso"}},
		{CommonName: "scepkit CA"}, // the CA's subject, but built here
		{SerialNumber: "123", Country: []string{"US"}, OrganizationalUnit: []string{"a", "b"}},
	} {
		der, err := asn1.Marshal(n.ToRDNSequence())
		if err != nil {
			panic(err)
		}
		out = append(out, der)
	}
	return append(out, emptyRDNSequence)
}()

// decodeFuzzTemplate turns fuzz input into a template of the shape Apply makes, an
// issuing CA and a device key.
func decodeFuzzTemplate(data []byte) (*x509.Certificate, *CA, crypto.PublicKey) {
	r := &fuzzReader{b: data}
	flags := r.byte()
	ca := fuzzKeys.ca
	if flags&1 != 0 {
		ca = fuzzKeys.caNoSKI
	}
	pub := fuzzKeys.pubs[int(r.byte())%len(fuzzKeys.pubs)]
	tmpl := &x509.Certificate{PublicKey: pub, BasicConstraintsValid: flags&2 != 0}

	// Serial: 1-25 bytes, positive, or now and then zero, negative or missing.
	sb := r.byte()
	serial := new(big.Int).SetBytes(r.bytes(int(sb%25) + 1))
	switch sb >> 5 {
	case 6:
		serial.Neg(serial)
	case 7:
		if sb&1 == 0 {
			serial = nil
		} else {
			serial.SetInt64(0)
		}
	}
	tmpl.SerialNumber = serial

	switch s := r.byte(); {
	case s < 0x40:
		tmpl.RawSubject = ca.Certificate.RawSubject
	case s < 0xf0:
		tmpl.RawSubject = fuzzSubjects[int(s)%len(fuzzSubjects)]
	default:
		tmpl.RawSubject = r.bytes(int(r.byte() % 16)) // garbage, maybe none
	}

	tmpl.NotBefore = r.time()
	tmpl.NotAfter = r.time()

	// Key usage: the nine named bits, or anything an int can hold now and then.
	ku := binary.BigEndian.Uint32(r.bytes(4))
	switch ku >> 30 {
	case 0, 1:
		tmpl.KeyUsage = x509.KeyUsage(ku & 0x1ff)
	case 2:
		tmpl.KeyUsage = x509.KeyUsage(1 << (ku % 33))
	default:
		tmpl.KeyUsage = x509.KeyUsage(int32(ku))
	}

	// Extended key usages: crypto/x509's (0-13) and a few it does not define, then
	// OIDs; an empty but non-nil list now and then.
	n := int(r.byte())
	if n&0x80 != 0 {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{}
	}
	for range n % 5 {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsage(int(r.byte()%18)-2))
	}
	n = int(r.byte())
	if n&0x80 != 0 {
		tmpl.UnknownExtKeyUsage = []asn1.ObjectIdentifier{}
	}
	for range n % 4 {
		tmpl.UnknownExtKeyUsage = append(tmpl.UnknownExtKeyUsage, r.oid())
	}

	if flags&4 != 0 {
		tmpl.SubjectKeyId = r.bytes(int(r.byte() % 33))
	}

	n = int(r.byte())
	if n&0x80 != 0 {
		tmpl.ExtraExtensions = []pkix.Extension{}
	}
	for range n % 4 {
		e := pkix.Extension{Id: r.oid(), Critical: r.byte()&1 != 0}
		if l := r.byte(); l != 0xff {
			e.Value = r.bytes(int(l % 48))
		}
		tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, e)
	}
	return tmpl, ca, pub
}

// Counts of outcomes in this process, written to $SCEPKIT_FUZZ_STATS.<pid> now and then
// when that variable is set (fuzzing runs in several worker processes).
var fuzzStats struct {
	direct, notDirect, bothFailed atomic.Int64
}

func recordFuzzStats() {
	path := os.Getenv("SCEPKIT_FUZZ_STATS")
	if path == "" {
		return
	}
	d, nd, bf := fuzzStats.direct.Load(), fuzzStats.notDirect.Load(), fuzzStats.bothFailed.Load()
	if (d+nd+bf)%500 != 0 {
		return
	}
	_ = os.WriteFile(fmt.Sprintf("%s.%d", path, os.Getpid()),
		fmt.Appendf(nil, "direct %d\nnotDirect %d\nbothFailed %d\n", d, nd, bf), 0o644)
}

// FuzzSignDirect is the differential test of the direct encoder: for any template of
// the shape Apply makes (and many it never would), signDirect either declines
// (errNotDirect) or does exactly what x509.CreateCertificate does with the same
// template, parent, key and signer: the same DER, or an error from both.
func FuzzSignDirect(f *testing.F) {
	if err := loadFuzzKeys(); err != nil {
		f.Fatal(err)
	}
	f.Add([]byte{})
	// Flags, pub, serial, subject, NotBefore, NotAfter, key usage, EKUs, unknown EKUs,
	// SKI, extra extensions.
	f.Add([]byte{0x06, 0, 15, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 0x80,
		8, 0, 6, 0, 0, 0, 0, 0x05, 1, 4, 1, 7, 2, 20, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20,
		1, 5, 0, 30, 0x30, 0x1c, 0x82, 0x09, 'l', 'a', 'p', 't', 'o', 'p', '.', 'c', 'o',
		0x86, 0x0f, 'u', 'r', 'n', ':', 'i', 'n', 't', 'u', 'n', 'e', ':', 'd', 'e', 'v', '1'})
	// Own extension OIDs as extra extensions, serial with the high bit set.
	f.Add([]byte{0x02, 1, 0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
		0x90, 2, 0, 3, 0, 0, 0, 0, 0x01, 0xff, 0, 0, 0, 3, 0, 1, 2, 0, 0, 1, 1, 1, 4, 0x30, 0x00})
	// Unknown EKUs and extension IDs from fuzzOIDs and arbitrary arcs. (The input that
	// found the negative-arc mismatch is testdata/fuzz/FuzzSignDirect/ec10ce105f431daf.)
	f.Add([]byte{0x00, 2, 0, 1, 0x50, 8, 0, 8, 0, 0, 0, 0, 0, 0x80, 0x03, 18, 19, 20, 0x02, 21, 0, 0, 22, 1, 4})
	// Garbage subject, times outside 0-9999 and across zones, negative serial, missing serial.
	f.Add([]byte{0x01, 3, 0xc3, 1, 2, 3, 4, 0xf5, 5, 0x30, 0x03, 0x02, 0x01, 0x01, 0x55, 0, 0x00, 0x10, 0x57, 0x01, 0xff, 0xff})
	f.Add([]byte{0x00, 0, 0xe0, 7, 0x10, 0x50, 1, 0x03, 0x07, 0x82})
	f.Add([]byte{0x00, 0, 0xe1, 7, 0x10, 0xf3, 0x01, 0x02, 0xa2, 0x05, 0x40, 0x00, 0x00, 0x00})

	f.Fuzz(func(t *testing.T, data []byte) {
		tmpl, ca, pub := decodeFuzzTemplate(data)
		got, gotErr := ca.signDirect(tmpl, pub)
		if errors.Is(gotErr, errNotDirect) {
			fuzzStats.notDirect.Add(1)
			recordFuzzStats()
			return
		}
		want, wantErr := x509.CreateCertificate(rand.Reader, tmpl, ca.Certificate, pub, ca.Signer)
		switch {
		case gotErr != nil && wantErr != nil:
			fuzzStats.bothFailed.Add(1)
		case gotErr != nil:
			t.Fatalf("signDirect failed (%v) where CreateCertificate succeeded\ntemplate: %+v", gotErr, tmpl)
		case wantErr != nil:
			t.Fatalf("signDirect succeeded where CreateCertificate failed (%v)\ntemplate: %+v\nDER: %x", wantErr, tmpl, got)
		case !bytes.Equal(got, want):
			t.Fatalf("different certificates\ntemplate: %+v\ndirect: %x\nx509:   %x", tmpl, got, want)
		default:
			fuzzStats.direct.Add(1)
		}
		recordFuzzStats()
	})
}
