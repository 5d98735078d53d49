package main

import (
	"bufio"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"fmt"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"os"
	"sync"
	"time"
)

// A fixture file holds the base time (Unix seconds, int64), then for each
// certificate its user and device numbers and its DER's length (three uint32) and the
// DER, all big-endian.

const (
	nUsers   = 5000
	nDevices = 20000
)

var caSeed = make([]byte, 32)

func caKey() (ed25519.PrivateKey, *x509.Certificate) {
	key := ed25519.NewKeyFromSeed(caSeed)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "scale CA", Organization: []string{"Example"}},
		NotBefore: time.Unix(1700000000, 0), NotAfter: time.Unix(2000000000, 0), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		panic(err)
	}
	c, _ := x509.ParseCertificate(der)
	return key, c
}

func gen(path string, n int, base time.Time) error {
	key, ca := caKey()
	leaf, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	binary.Write(w, binary.BigEndian, base.Unix())
	type item struct {
		user, dev uint32
		der       []byte
	}
	const workers = 2
	out := make([]chan item, workers)
	var wg sync.WaitGroup
	for g := range workers {
		out[g] = make(chan item, 1024)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(out[g])
			r := mrand.New(mrand.NewPCG(uint64(g), 7))
			for i := g; i < n; i += workers {
				dev := uint32(r.IntN(nDevices))
				user := dev / (nDevices / nUsers) // 4 devices per user
				sb := make([]byte, 16)
				rand.Read(sb)
				sb[0] &= 0x7f
				sb[0] |= 0x01
				// NotAfter uniform over the next 365 days; validity one year.
				na := base.Add(time.Duration(r.Int64N(int64(365 * 24 * time.Hour)))).Truncate(time.Second)
				tmpl := &x509.Certificate{SerialNumber: new(big.Int).SetBytes(sb),
					Subject:   pkix.Name{CommonName: fmt.Sprintf("dev-%05d", dev), Organization: []string{"Example Corp"}},
					NotBefore: na.Add(-365 * 24 * time.Hour), NotAfter: na,
					KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
					ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
					EmailAddresses:        []string{fmt.Sprintf("user%04d@example.com", user)},
					DNSNames:              []string{fmt.Sprintf("dev-%05d.corp.example.com", dev)},
					CRLDistributionPoints: []string{"http://pki.example.com/crl"}}
				der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &leaf.PublicKey, key)
				if err != nil {
					panic(err)
				}
				out[g] <- item{user, dev, der}
			}
		}()
	}
	t0 := time.Now()
	for i := 0; i < n; i++ {
		it, ok := <-out[i%workers]
		if !ok {
			return io.ErrUnexpectedEOF
		}
		binary.Write(w, binary.BigEndian, [3]uint32{it.user, it.dev, uint32(len(it.der))})
		w.Write(it.der)
		if i%100000 == 0 {
			fmt.Fprintln(os.Stderr, "gen", i, time.Since(t0))
		}
	}
	wg.Wait()
	return w.Flush()
}

type fixture struct {
	base time.Time
	r    *bufio.Reader
	f    *os.File
}

type fcert struct {
	user, dev string
	der       []byte
}

func openFixture(path string) (*fixture, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	r := bufio.NewReaderSize(f, 1<<20)
	var b int64
	if err := binary.Read(r, binary.BigEndian, &b); err != nil {
		return nil, err
	}
	return &fixture{base: time.Unix(b, 0), r: r, f: f}, nil
}

func (fx *fixture) next() (*fcert, error) {
	var h [3]uint32
	if err := binary.Read(fx.r, binary.BigEndian, &h); err != nil {
		return nil, err
	}
	der := make([]byte, h[2])
	if _, err := io.ReadFull(fx.r, der); err != nil {
		return nil, err
	}
	return &fcert{user: fmt.Sprintf("user%04d", h[0]), dev: fmt.Sprintf("dev-%05d", h[1]), der: der}, nil
}

// fixtureLen is the number of certificates in the fixture at path.
func fixtureLen(path string) int {
	fx, err := openFixture(path)
	if err != nil {
		return 0
	}
	defer fx.f.Close()
	n := 0
	for {
		if _, err := fx.next(); err != nil {
			return n
		}
		n++
	}
}
