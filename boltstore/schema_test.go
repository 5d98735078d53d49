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
// copy) opens, reads, and is marked version 4 (the withheld mark's); a file of a newer
// version is refused.
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
	if len(v) != 1 || v[0] != 4 {
		t.Fatalf("version after opening a version 1 file: %v, want 4", v)
	}
	s.Close()

	setVersion(t, path, 5)
	if _, err := Open(path, nil); !errors.Is(err, ErrNewerSchema) {
		t.Fatalf("opening a version 5 file: %v, want refused as newer", err)
	}
}

// lastVersionWithoutWithheld is the last schema version whose releases do not know
// crp.IssuedCertificate.Withheld: they decode a certificate marked withheld as an
// ordinary one, and hand it to its requester (GetCert) and renew it.
const lastVersionWithoutWithheld = 3

// TestWithheldNotOpenedByEarlierRelease: a file this release wrote, a withheld
// certificate in it, has a schema version that a release ignoring the mark refuses
// (ErrNewerSchema there), rather than one it opens and serves the certificate from;
// a version 3 file is marked so when opened. Before, files stayed version 3, and a
// downgrade to a release before the mark opened them.
func TestWithheldNotOpenedByEarlierRelease(t *testing.T) {
	ctx := context.Background()
	version := func(path string) byte {
		t.Helper()
		db, err := bolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var v []byte
		db.View(func(tx *bolt.Tx) error { v = append(v, tx.Bucket(bMeta).Get(keyVersion)...); return nil })
		if len(v) != 1 {
			t.Fatalf("version %v", v)
		}
		return v[0]
	}
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := storetest.Certificate(t, 201, time.Now().Add(time.Hour).Truncate(time.Second))
	if err := s.Add(ctx, &crp.IssuedCertificate{Certificate: c, UserID: "u", Withheld: true}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if v := version(path); v <= lastVersionWithoutWithheld {
		t.Fatalf("a file holding a withheld certificate has schema version %d, which releases ignoring the mark open", v)
	}

	setVersion(t, path, lastVersionWithoutWithheld)
	if s, err = Open(path, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if v := version(path); v <= lastVersionWithoutWithheld {
		t.Fatalf("a version %d file opened by this release is still version %d", lastVersionWithoutWithheld, v)
	}
}
