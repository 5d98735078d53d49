package main

import (
	"crypto/x509"
	"fmt"
	"runtime"
	"time"

	"github.com/scepkit/scepkit/crp"
)

func memStore(fix string, n int) error {
	fx, err := openFixture(fix)
	if err != nil {
		return err
	}
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	s := &crp.MemoryStore{}
	for i := 0; i < n; i++ {
		fc, err := fx.next()
		if err != nil {
			return err
		}
		c, err := x509.ParseCertificate(fc.der)
		if err != nil {
			return err
		}
		s.Add(ctx, &crp.IssuedCertificate{Certificate: c, UserID: fc.user, DeviceID: fc.dev, ProfileID: "wifi", Template: "device",
			TransactionID: c.SerialNumber.Text(16), IssuedAt: c.NotBefore})
	}
	fx = nil
	runtime.GC()
	runtime.ReadMemStats(&m1)
	fmt.Printf("memory store: %d certificates, heap %d MB, %d bytes per certificate (DER %d bytes)\n", n,
		(m1.HeapInuse-m0.HeapInuse)>>20, (m1.HeapInuse-m0.HeapInuse)/uint64(n), 716)
	base := time.Now()
	measure("mem: by user (page 1)", func() (string, error) {
		l, err := s.Certificates(ctx, crp.CertificateQuery{UserID: "user0042", Limit: 100})
		return fmt.Sprint("rows=", len(l)), err
	})
	measure("mem: everything, page 1 of 100", func() (string, error) {
		l, err := s.Certificates(ctx, crp.CertificateQuery{Limit: 100})
		return fmt.Sprint("rows=", len(l)), err
	})
	measure("mem: expiring 7d, page 1 of 100", func() (string, error) {
		l, err := s.Certificates(ctx, crp.CertificateQuery{ExpiresAfter: base, ExpiresBefore: base.Add(7 * 24 * time.Hour), Limit: 100})
		return fmt.Sprint("rows=", len(l)), err
	})
	runtime.KeepAlive(s)
	return nil
}
