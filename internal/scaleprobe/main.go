// Command scaleprobe measures the stores at the size of a fleet: a year of
// certificates (1,000,000 by default over 5,000 users and 20,000 devices, NotAfter
// spread over the next 365 days, one in 333 revoked), retention sweeps of a backlog of
// expired claims and records, Open after a SIGKILL, and pgstore's migrations. The
// figures in docs/performance.md ("At a million certificates") come from it.
//
//	go run ./internal/scaleprobe -fixture F gen                   # signs the certificates into F (about 3 minutes on 2 cores)
//	go run ./internal/scaleprobe -fixture F boltfill state.db     # adds them through boltstore's Add (64 writers)
//	go run ./internal/scaleprobe -fixture F boltquery state.db queries crl list listrev
//	go run ./internal/scaleprobe -fixture F boltwrite state.db    # writes until killed (then boltquery times Open)
//	go run ./internal/scaleprobe -fixture F -n 500000 boltret ret.db  # 500,000 claims and records expire, then enrollments
//	go run ./internal/scaleprobe -fixture F boltsteady steady.db  # 8 "days" of enrollments: the file's growth
//	go run ./internal/scaleprobe -fixture F pgfill DSN            # the same through pgstore (16 writers)
//	go run ./internal/scaleprobe -fixture F pgquery DSN queries crl list listrev
//	go run ./internal/scaleprobe -fixture F -n 500000 pgret DSN   # expired rows written by SQL, then enrollments
//	go run ./internal/scaleprobe pgmig DSN 3s                     # DSN: a copy of a filled database (its later columns are dropped)
//	go run ./internal/scaleprobe -fixture F -n 100000 mem         # crp.MemoryStore's heap per certificate
//
// "queries" times Lookup, the listings by user, by device and expiring within 7 days
// (paged), RevokedSince and IsRevoked; "list" pages through the whole inventory, 100
// at a time as the admin API does, while certificates are added, and checks that each
// is listed once; "listrev" adds the admin API's revocation check of each; "crl"
// builds the CRL with crp.CRLPublisher. DSN is a PostgreSQL connection string (start
// one on loopback; internal/pgtest shows how). The certificates the retention
// commands add share one DER: they measure the store, not an inventory.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"
)

func main() {
	n := flag.Int("n", 1000000, "certificates (gen, fills, mem), or expired claims and records (boltret, pgret)")
	fix := flag.String("fixture", "", "the fixture file of certificates gen writes and the others read")
	flag.Parse()
	var err error
	switch flag.Arg(0) {
	case "gen":
		err = gen(*fix, *n, time.Now().Truncate(time.Second))
	default:
		err = run(flag.Arg(0), *fix, *n, flag.Args()[1:])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}
