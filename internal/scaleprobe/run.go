package main

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/scepkit/scepkit/boltstore"
	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/pgstore"
)

var ctx = context.Background()

func rss() string {
	b, _ := os.ReadFile("/proc/self/status")
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS") || strings.HasPrefix(l, "VmHWM") {
			out = append(out, strings.Join(strings.Fields(l), " "))
		}
	}
	return strings.Join(out, " ")
}

func heap() string {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return fmt.Sprintf("heapInuse=%dMB totalAlloc=%dMB", m.HeapInuse>>20, m.TotalAlloc>>20)
}

// measure runs f, reporting wall time and bytes allocated.
func measure(name string, f func() (string, error)) error {
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	t0 := time.Now()
	s, err := f()
	d := time.Since(t0)
	runtime.ReadMemStats(&m1)
	fmt.Printf("%-40s %12v alloc=%7.1fMB mallocs=%d %s\n", name, d.Round(time.Microsecond), float64(m1.TotalAlloc-m0.TotalAlloc)/(1<<20), m1.Mallocs-m0.Mallocs, s)
	return err
}

type store interface {
	crp.CertificateStore
	crp.CertificateQuerier
	crp.RevocationStore
	crp.RevocationChecker
}

// fill adds the fixture's certificates with conc writers; every 333rd is revoked.
func fill(s store, fix string, n, conc int) error {
	fx, err := openFixture(fix)
	if err != nil {
		return err
	}
	ch := make(chan *fcert, 4096)
	var done atomic.Int64
	var wg sync.WaitGroup
	var ferr error
	var once sync.Once
	t0 := time.Now()
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for fc := range ch {
				c, err := x509.ParseCertificate(fc.der)
				if err != nil {
					once.Do(func() { ferr = err })
					continue
				}
				ic := &crp.IssuedCertificate{Certificate: c, UserID: fc.user, DeviceID: fc.dev, ProfileID: "wifi", Template: "device",
					TransactionID: c.SerialNumber.Text(16), IssuedAt: c.NotBefore}
				if err := s.Add(ctx, ic); err != nil {
					once.Do(func() { ferr = err })
				}
				i := done.Add(1)
				if i%333 == 0 {
					at := fx.base.Add(-time.Duration(i%365) * 24 * time.Hour)
					if _, err := s.Revoke(ctx, &crp.Revocation{Serial: c.SerialNumber, Reason: 1, RevokedAt: at, By: "probe", Issuer: c.RawIssuer}); err != nil {
						once.Do(func() { ferr = err })
					}
				}
				if i%50000 == 0 {
					fmt.Printf("filled %d in %v (%.0f/s) %s\n", i, time.Since(t0).Round(time.Second), float64(i)/time.Since(t0).Seconds(), rss())
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		fc, err := fx.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		ch <- fc
	}
	close(ch)
	wg.Wait()
	fmt.Printf("filled %d in %v\n", done.Load(), time.Since(t0))
	return ferr
}

func run(cmd, fix string, n int, args []string) error {
	switch cmd {
	case "boltfill":
		t0 := time.Now()
		s, err := boltstore.Open(args[0], nil)
		if err != nil {
			return err
		}
		fmt.Println("open", time.Since(t0))
		if err := fill(s, fix, n, 64); err != nil {
			return err
		}
		t0 = time.Now()
		err = s.Close()
		fmt.Println("close", time.Since(t0), err)
		fi, _ := os.Stat(args[0])
		fmt.Println("file size", fi.Size())
		return err
	case "boltquery":
		var s *boltstore.Store
		err := measure("boltstore.Open", func() (string, error) {
			var err error
			s, err = boltstore.Open(args[0], nil)
			return rss(), err
		})
		if err != nil {
			return err
		}
		defer s.Close()
		return extra(s, fix, args[1:])
	case "mem":
		return memStore(fix, n)
	case "boltwrite":
		return boltWrite(args[0])
	case "pgmig":
		hold, _ := time.ParseDuration(args[1])
		return pgMigration(args[0], hold)
	case "pgret":
		return pgRetention(args[0], fix, n)
	case "boltsteady":
		return boltSteady(args[0], fix)
	case "boltret":
		return boltRetention(args[0], fix, n)
	case "pgfill":
		t0 := time.Now()
		s, err := pgstore.Open(ctx, args[0], nil)
		if err != nil {
			return err
		}
		defer s.Close()
		fmt.Println("open", time.Since(t0))
		return fill(s, fix, n, 16)
	case "pgquery":
		var s *pgstore.Store
		err := measure("pgstore.Open", func() (string, error) {
			var err error
			s, err = pgstore.Open(ctx, args[0], nil)
			return "", err
		})
		if err != nil {
			return err
		}
		defer s.Close()
		return extra(s, fix, args[1:])
	}
	return fmt.Errorf("unknown %q", cmd)
}

// queries: the operator's inventory questions.
func queries(s store, fix string) error {
	fx, err := openFixture(fix)
	if err != nil {
		return err
	}
	var serials []*big.Int
	for range 1000 {
		fc, err := fx.next()
		if err != nil {
			return err
		}
		c, _ := x509.ParseCertificate(fc.der)
		serials = append(serials, c.SerialNumber)
	}
	base := fx.base
	measure("Lookup x1000", func() (string, error) {
		for _, sn := range serials {
			if _, err := s.Lookup(ctx, sn); err != nil {
				return "", err
			}
		}
		return "", nil
	})
	for _, u := range []string{"user0042", "user4999"} {
		var got int
		measure("by user "+u+" (limit 1000)", func() (string, error) {
			l, err := s.Certificates(ctx, crp.CertificateQuery{UserID: u, Limit: 1000})
			got = len(l)
			return fmt.Sprint("rows=", got), err
		})
	}
	measure("by device dev-00042", func() (string, error) {
		l, err := s.Certificates(ctx, crp.CertificateQuery{DeviceID: "dev-00042", Limit: 1000})
		return fmt.Sprint("rows=", len(l)), err
	})
	for _, lim := range []int{100, 1000} {
		measure(fmt.Sprintf("expiring within 7d, pages of %d", lim), func() (string, error) {
			q := crp.CertificateQuery{ExpiresAfter: base, ExpiresBefore: base.Add(7 * 24 * time.Hour), Limit: lim}
			rows, pages := 0, 0
			var worst time.Duration
			for {
				t := time.Now()
				l, err := s.Certificates(ctx, q)
				if d := time.Since(t); d > worst {
					worst = d
				}
				if err != nil {
					return "", err
				}
				pages++
				rows += len(l)
				if len(l) < lim {
					break
				}
				q.After = l[len(l)-1]
			}
			return fmt.Sprintf("rows=%d pages=%d worstPage=%v", rows, pages, worst), nil
		})
	}
	measure("revoked since base-30d", func() (string, error) {
		l, err := s.RevokedSince(ctx, base.Add(-30*24*time.Hour))
		return fmt.Sprint("rows=", len(l)), err
	})
	measure("revoked since zero (all)", func() (string, error) {
		l, err := s.RevokedSince(ctx, time.Time{})
		return fmt.Sprint("rows=", len(l)), err
	})
	measure("IsRevoked x1000", func() (string, error) {
		n := 0
		for _, sn := range serials {
			c := &x509.Certificate{SerialNumber: sn}
			r, err := s.IsRevoked(ctx, c)
			if err != nil {
				return "", err
			}
			if r {
				n++
			}
		}
		return fmt.Sprint("revoked=", n), nil
	})
	return nil
}

func extra(s store, fix string, what []string) error {
	for _, w := range what {
		var err error
		switch w {
		case "queries":
			err = queries(s, fix)
		case "list":
			err = listAll(s, fix, false)
		case "listrev":
			err = listAll(s, fix, true)
		case "crl":
			err = crlBuild(s)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// boltWrite adds certificates to the store at path from 16 writers until it is
// killed, for a measure of Open after a SIGKILL.
func boltWrite(path string) error {
	s, err := boltstore.Open(path, nil)
	if err != nil {
		return err
	}
	fmt.Println("writing; kill me")
	key, ca := caKey()
	var wg sync.WaitGroup
	var k atomic.Int64
	k.Store(time.Now().UnixNano())
	for range 16 {
		wg.Go(func() {
			for {
				tmpl := &x509.Certificate{SerialNumber: new(big.Int).Lsh(big.NewInt(k.Add(1)), 70),
					Subject: pkix.Name{CommonName: "w"}, NotAfter: time.Now().Add(24 * time.Hour).Truncate(time.Second)}
				der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), key)
				if err != nil {
					panic(err)
				}
				c, _ := x509.ParseCertificate(der)
				if err := s.Add(ctx, &crp.IssuedCertificate{Certificate: c, UserID: "w", DeviceID: "w"}); err != nil {
					panic(err)
				}
			}
		})
	}
	wg.Wait()
	return nil
}
