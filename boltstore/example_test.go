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
