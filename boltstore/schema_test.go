package boltstore

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/storetest"
	"github.com/scepkit/scepkit/scep"
)

func setVersion(t *testing.T, path string, v byte) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bMeta).Put(keyVersion, []byte{v}) }); err != nil {
		t.Fatal(err)
	}
}

func rawRecord(t *testing.T, s *Store, id string) string {
	t.Helper()
	var v string
	if err := s.view(context.Background(), func(tx *bolt.Tx) error { v = string(tx.Bucket(bTx).Get(idKey(id))); return nil }); err != nil {
		t.Fatal(err)
	}
	return v
}

// A SUCCESS record written with its certificate (RecordIssuance) names the
// certificate by serial instead of keeping a second copy; a record written alone
// (Put) keeps its copy; both read back whole. A version 1 file (every record with its
// copy) opens, reads, and is marked version 3 (the journal's); a file of a newer version
// is refused.
func TestSchemaVersions(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Hour)
	c1 := storetest.Certificate(t, 101, exp.Truncate(time.Second))
	c2 := storetest.Certificate(t, 102, exp.Truncate(time.Second))
	if err := s.RecordIssuance(ctx, &crp.IssuedCertificate{Certificate: c1, UserID: "u"},
		&crp.Record{TransactionID: "tx-together", Status: scep.Success, Certificate: c1, Expires: exp}); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, &crp.Record{TransactionID: "tx-alone", Status: scep.Success, Certificate: c2, Expires: exp}); err != nil {
		t.Fatal(err)
	}
	if v := rawRecord(t, s, "tx-together"); strings.Contains(v, `"certificate"`) || !strings.Contains(v, `"cert_serial"`) {
		t.Fatalf("record written with its certificate: %s; want the serial, not a second copy", v)
	}
	if v := rawRecord(t, s, "tx-alone"); !strings.Contains(v, `"certificate"`) {
		t.Fatalf("record written alone: %s; want its copy of the certificate", v)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	setVersion(t, path, 1)
	if s, err = Open(path, nil); err != nil {
		t.Fatalf("opening a version 1 file: %v", err)
	}
	for id, want := range map[string]string{"tx-together": "101", "tx-alone": "102"} {
		r, err := s.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if r.Certificate == nil || r.Certificate.SerialNumber.String() != want {
			t.Fatalf("%s: certificate %v, want serial %s", id, r.Certificate, want)
		}
	}
	var v []byte
	s.db.View(func(tx *bolt.Tx) error { v = append(v, tx.Bucket(bMeta).Get(keyVersion)...); return nil })
	if len(v) != 1 || v[0] != 3 {
		t.Fatalf("version after opening a version 1 file: %v, want 3", v)
	}
	s.Close()

	setVersion(t, path, 4)
	if _, err := Open(path, nil); !errors.Is(err, ErrNewerSchema) {
		t.Fatalf("opening a version 4 file: %v, want refused as newer", err)
	}
}
