package main

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/scepkit/scepkit/catemplate"
	"github.com/scepkit/scepkit/crp"
)

// listAll pages through the whole inventory, pages of 100 as the admin API does, with
// an IsRevoked per certificate (the admin API's certJSON), while another goroutine adds
// certificates. Every certificate present at the start must be seen exactly once.
func listAll(s store, fix string, revCheck bool) error {
	want := fixtureLen(fix)
	key, cacert := caKey()
	stop := make(chan struct{})
	var added atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r := mrand.New(mrand.NewPCG(1, 2))
		base := time.Now()
		for i := int64(1); ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			tmpl := &x509.Certificate{SerialNumber: new(big.Int).Lsh(big.NewInt(i), 130), // apart from the fixture's
				Subject:  pkix.Name{CommonName: "late"},
				NotAfter: base.Add(time.Duration(r.Int64N(int64(365 * 24 * time.Hour)))).Truncate(time.Second)}
			der, err := x509.CreateCertificate(rand.Reader, tmpl, cacert, key.Public(), key)
			if err != nil {
				panic(err)
			}
			c, _ := x509.ParseCertificate(der)
			if err := s.Add(ctx, &crp.IssuedCertificate{Certificate: c, UserID: "late", DeviceID: "late"}); err != nil {
				fmt.Println("inserter:", err)
				return
			}
			added.Add(1)
			time.Sleep(5 * time.Millisecond)
		}
	}()
	seen := make(map[string]int, want+10000)
	var dups, late, revoked int
	pages := 0
	var worst time.Duration
	var after *crp.IssuedCertificate
	t0 := time.Now()
	var prev *crp.IssuedCertificate
	defer func() { close(stop); wg.Wait() }()
	for {
		t := time.Now()
		l, err := s.Certificates(ctx, crp.CertificateQuery{After: after, Limit: 100})
		if err != nil {
			return fmt.Errorf("page %d: %w", pages+1, err)
		}
		if revCheck {
			for _, c := range l {
				r, err := s.IsRevoked(ctx, c.Certificate)
				if err != nil {
					return err
				}
				if r {
					revoked++
				}
			}
		}
		if d := time.Since(t); d > worst {
			worst = d
		}
		pages++
		for _, c := range l {
			if c.UserID != "late" {
				if prev != nil && crp.CertificateOrder(prev, c) >= 0 {
					return fmt.Errorf("out of order at page %d", pages)
				}
				prev = c
			}
			if c.UserID == "late" {
				late++
				continue
			}
			k := string(c.Certificate.SerialNumber.Bytes())
			seen[k]++
			if seen[k] > 1 {
				dups++
			}
		}
		if len(l) < 100 {
			break
		}
		after = l[len(l)-1]
	}
	fmt.Printf("listed %d pages in %v (worst page %v): distinct=%d dups=%d fixture=%d (want %d) added-during=%d late-rows-seen=%d revoked=%d\n",
		pages, time.Since(t0).Round(time.Millisecond), worst, len(seen), dups, len(seen), want, added.Load(), late, revoked)
	return nil
}

func crlBuild(s store) error {
	key, cacert := caKey()
	ca := &catemplate.CA{Certificate: cacert, Signer: key}
	p := &crp.CRLPublisher{CA: ca, Revocations: s}
	var der []byte
	err := measure("CRL build (CRLPublisher.CRL)", func() (string, error) {
		var err error
		der, err = p.CRL(ctx)
		return fmt.Sprint("bytes=", len(der)), err
	})
	if err != nil {
		return err
	}
	rl, err := x509.ParseRevocationList(der)
	if err != nil {
		return err
	}
	fmt.Println("CRL entries", len(rl.RevokedCertificateEntries))
	return measure("CRL after a Revoke", func() (string, error) {
		_, err := p.Revoke(ctx, &crp.Revocation{Serial: big.NewInt(time.Now().UnixNano()), Reason: 1, RevokedAt: time.Now()})
		if err != nil {
			return "", err
		}
		der, err = p.CRL(ctx)
		return fmt.Sprint("bytes=", len(der)), err
	})
}
