package pgstore_test

import (
	"context"
	"log"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/scepkit/scepkit/crp/crptest"
	"github.com/scepkit/scepkit/pgstore"
)

// Gateways side by side: each opens the same database and uses the Store for
// everything it remembers (challenge claims, transaction records and pending
// requests, issued certificates, revocations), so that a challenge is accepted once
// whichever gateway gets it and a poll finds its answer on any of them. Open creates
// or migrates the schema. (crptest stands for the gateway assembly; a real gateway
// sets the Store as challenge.Verifier.Replay and as the Transactions, Certificates
// and Revocation fields of crp.RegistrationPoint.)
func ExampleOpen() {
	ctx := context.Background()
	store, err := pgstore.Open(ctx, "postgres://scepkit@127.0.0.1:5432/scepkit?sslmode=disable",
		&pgstore.Options{Timeout: 3 * time.Second}) // a device is waiting: fail fast when PostgreSQL is down
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()

	gw, err := crptest.New(crptest.Options{Gateway: "gateway.example", Dir: "/var/lib/scepkit", Store: store})
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(http.ListenAndServe("127.0.0.1:8080", gw.Server))
}

// A program that already has a connection pool (for its own tables, say) shares it:
// New does not close the pool, and Store.Close leaves it open.
func ExampleNew() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, "postgres://scepkit@127.0.0.1:5432/scepkit?sslmode=disable")
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()

	store, err := pgstore.New(ctx, pool, nil)
	if err != nil {
		log.Fatal(err)
	}
	version, err := store.SchemaVersion(ctx)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("scepkit schema version %d", version)
}
