package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"math/big"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/scepkit/scepkit/boltstore"
	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/scep"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

type retStore interface {
	Claim(ctx context.Context, id string, until time.Time) error
	RecordIssuance(ctx context.Context, c *crp.IssuedCertificate, r *crp.Record) error
	Put(ctx context.Context, r *crp.Record) error
}

var request = make([]byte, 1024) // a PKCS#7 request's size
var csr = make([]byte, 400)

// load writes n claims and n records (each expiring a day after clk) with conc writers.
func load(s retStore, clk *clock, prefix string, n, conc int) {
	var next atomic.Int64
	var wg sync.WaitGroup
	t0 := time.Now()
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				id := fmt.Sprintf("%s-%d", prefix, i)
				now := clk.Now()
				if err := s.Claim(ctx, id, now.Add(25*time.Hour)); err != nil {
					panic(err)
				}
				if err := s.Put(ctx, &crp.Record{TransactionID: id, Request: request, CSR: csr, Status: scep.Failure,
					UserID: "u", DeviceID: "d", Expires: now.Add(24 * time.Hour)}); err != nil {
					panic(err)
				}
				if i%100000 == 0 {
					fmt.Printf("  loaded %d in %v\n", i, time.Since(t0).Round(time.Second))
				}
			}
		}()
	}
	wg.Wait()
	fmt.Printf("loaded %d claims+records in %v\n", n, time.Since(t0).Round(time.Millisecond))
}

// enroll runs conc enrollments (claim, then certificate + record) for d, and reports
// their latencies.
func enroll(s retStore, clk *clock, cert *x509.Certificate, prefix string, d time.Duration, conc int) {
	var mu sync.Mutex
	var lat []time.Duration
	var serial atomic.Int64
	serial.Store(time.Now().UnixNano())
	stop := time.Now().Add(d)
	var wg sync.WaitGroup
	for g := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for i := 0; time.Now().Before(stop); i++ {
				id := fmt.Sprintf("%s-%d-%d", prefix, g, i)
				now := clk.Now()
				t := time.Now()
				if err := s.Claim(ctx, id, now.Add(25*time.Hour)); err != nil {
					panic(err)
				}
				c := *cert
				c.SerialNumber = big.NewInt(serial.Add(1))
				if err := s.RecordIssuance(ctx, &crp.IssuedCertificate{Certificate: &c, UserID: "u", DeviceID: "d"},
					&crp.Record{TransactionID: id, Request: request, CSR: csr, Status: scep.Success, Certificate: &c,
						Expires: now.Add(24 * time.Hour)}); err != nil {
					panic(err)
				}
				mine = append(mine, time.Since(t))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	slices.Sort(lat)
	if len(lat) == 0 {
		return
	}
	q := func(p float64) time.Duration { return lat[int(float64(len(lat)-1)*p)].Round(10 * time.Microsecond) }
	fmt.Printf("  enrollments=%d (%.0f/s) p50=%v p99=%v p999=%v max=%v %s\n", len(lat), float64(len(lat))/d.Seconds(), q(.5), q(.99), q(.999), lat[len(lat)-1].Round(10*time.Microsecond), heap()+" "+rss())
}

// boltCounts counts the keys of the file's buckets (the store closed).
func boltCounts(path string) string {
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		return err.Error()
	}
	defer db.Close()
	out := ""
	db.View(func(tx *bolt.Tx) error {
		for _, b := range []string{"claims", "claims-exp", "tx", "tx-exp", "certs"} {
			out += fmt.Sprintf("%s=%d ", b, tx.Bucket([]byte(b)).Stats().KeyN)
		}
		st := db.Stats()
		out += fmt.Sprintf("freePages=%d pendingPages=%d freelistBytes=%d", st.FreePageN, st.PendingPageN, st.FreelistInuse)
		return nil
	})
	fi, _ := os.Stat(path)
	return fmt.Sprintf("size=%dMB %s", fi.Size()>>20, out)
}

// testCert is the fixture's first certificate.
func testCert(fix string) *x509.Certificate {
	fx, err := openFixture(fix)
	if err != nil {
		panic(err)
	}
	fc, _ := fx.next()
	c, _ := x509.ParseCertificate(fc.der)
	return c
}

func boltRetention(path, fix string, n int) error {
	clk := &clock{t: time.Now()}
	cert := testCert(fix)
	open := func() *boltstore.Store {
		t0 := time.Now()
		s, err := boltstore.Open(path, &boltstore.Options{Now: clk.Now})
		if err != nil {
			panic(err)
		}
		fmt.Println("open", time.Since(t0).Round(time.Millisecond))
		return s
	}
	size := func() int64 { fi, _ := os.Stat(path); return fi.Size() >> 20 }
	s := open()
	fmt.Println("baseline, nothing expired:")
	enroll(s, clk, cert, "base", 5*time.Second, 8)
	load(s, clk, "old", n, 64)
	s.Close()
	fmt.Println("after load:", boltCounts(path))
	s = open()
	clk.Add(49 * time.Hour)
	fmt.Println("clock +49h: everything loaded has expired; enrollments while the backlog is swept:")
	for w := range 6 {
		enroll(s, clk, cert, fmt.Sprint("sweep", w), 10*time.Second, 8)
		fmt.Println("  file", size(), "MB")
	}
	s.Close()
	fmt.Println("after 60 s of enrollments:", boltCounts(path))
	s = open()
	fmt.Println("steady state: a 'day' of 10 s of enrollments, then the clock +25h")
	return boltDays(s, clk, cert, path, size)
}

// boltSteady: a fresh file, 8 "days" of enrollments for 10 s each, the clock a day
// on after each: the file's growth per day, next to the certificates' share of it.
func boltSteady(path, fix string) error {
	clk := &clock{t: time.Now()}
	cert := testCert(fix)
	s, err := boltstore.Open(path, &boltstore.Options{Now: clk.Now})
	if err != nil {
		return err
	}
	size := func() int64 { fi, _ := os.Stat(path); return fi.Size() >> 20 }
	return boltDays(s, clk, cert, path, size)
}

// boltDays runs 8 "days" of enrollments for 10 s each on s (the file at path, of
// size in MB), the clock a day on after each, printing the file's size after each
// day, then closes s and prints what the file holds.
func boltDays(s *boltstore.Store, clk *clock, cert *x509.Certificate, path string, size func() int64) error {
	for day := range 8 {
		enroll(s, clk, cert, fmt.Sprint("day", day), 10*time.Second, 8)
		clk.Add(25 * time.Hour)
		fmt.Println("  day", day, "file", size(), "MB")
	}
	s.Close()
	fmt.Println("end:", boltCounts(path))
	return nil
}
