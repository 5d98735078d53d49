package boltstore_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/scepkit/scepkit/boltstore"
	"github.com/scepkit/scepkit/challenge"
	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/scep"
)

// A gateway's state directory: OpenDir creates it and its state.db on first use, and
// what was written is there after a restart. One Store is every storage part of a
// gateway: give it to challenge.Verifier.Replay and to the Transactions,
// Certificates and Revocation fields of crp.RegistrationPoint.
func ExampleOpenDir() {
	parent, err := os.MkdirTemp("", "scepkit-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(parent)
	dir := filepath.Join(parent, "state") // /var/lib/scepkit, say
	ctx := context.Background()

	store, migrated, err := boltstore.OpenDir(dir, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("certificates migrated from an older layout:", migrated)

	// A challenge is claimed once (its jti, until it expires).
	until := time.Now().Add(time.Hour)
	fmt.Println("first claim:", store.Claim(ctx, "jti-1", until))
	err = store.Claim(ctx, "jti-1", until)
	fmt.Println("second claim replayed:", errors.Is(err, challenge.ErrReplayed))

	// A transaction's answer, for the device's poll or resend.
	if err := store.Put(ctx, &crp.Record{TransactionID: "tx-1", Status: scep.Pending, Expires: until}); err != nil {
		log.Fatal(err)
	}
	if err := store.Close(); err != nil {
		log.Fatal(err)
	}

	// After a restart.
	store, _, err = boltstore.OpenDir(dir, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	rec, err := store.Get(ctx, "tx-1")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("tx-1 after reopening:", rec.Status)
	err = store.Claim(ctx, "jti-1", until)
	fmt.Println("claim after reopening replayed:", errors.Is(err, challenge.ErrReplayed))
	// Output:
	// certificates migrated from an older layout: 0
	// first claim: <nil>
	// second claim replayed: true
	// tx-1 after reopening: PENDING
	// claim after reopening replayed: true
}

// A backup taken while the store serves, and its restore: the copy in place of
// state.db beside an empty journal, with the process stopped. What was written after
// the copy is not in it (here the second claim).
func ExampleStore_Backup() {
	parent, err := os.MkdirTemp("", "scepkit-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(parent)
	dir := filepath.Join(parent, "state")
	ctx := context.Background()
	until := time.Now().Add(time.Hour)

	store, _, err := boltstore.OpenDir(dir, nil)
	if err != nil {
		log.Fatal(err)
	}
	if err := store.Claim(ctx, "before", until); err != nil {
		log.Fatal(err)
	}
	copyPath := filepath.Join(parent, "state-copy.db")
	f, err := os.OpenFile(copyPath, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := store.Backup(ctx, f); err != nil {
		log.Fatal(err)
	}
	if err := f.Close(); err != nil {
		log.Fatal(err)
	}
	if err := store.Claim(ctx, "after", until); err != nil {
		log.Fatal(err)
	}
	if err := store.Close(); err != nil {
		log.Fatal(err)
	}

	// Restore, with the process stopped.
	path := filepath.Join(dir, boltstore.FileName)
	if err := os.Rename(copyPath, path); err != nil {
		log.Fatal(err)
	}
	if err := os.Truncate(path+"-journal", 0); err != nil { // "open the file as it is"
		log.Fatal(err)
	}
	store, _, err = boltstore.OpenDir(dir, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	fmt.Println("claimed before the copy, replayed:", errors.Is(store.Claim(ctx, "before", until), challenge.ErrReplayed))
	fmt.Println("claimed after the copy, replayed:", errors.Is(store.Claim(ctx, "after", until), challenge.ErrReplayed))
	// Output:
	// claimed before the copy, replayed: true
	// claimed after the copy, replayed: false
}
