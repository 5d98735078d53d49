package redisstore_test

import (
	"context"
	"log"
	"net/http"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/scepkit/scepkit/crp/crptest"
	"github.com/scepkit/scepkit/redisstore"
)

// Two gateways side by side: each process builds its gateway as usual and sets one
// Store on the same Redis as its replay store and its transaction store. (crptest
// stands for the gateway assembly; a real gateway shares the MDM's public keys, the
// gateway identity and the RA the same way.)
func Example() {
	rdb := redis.NewClient(&redis.Options{
		Addr:        "127.0.0.1:6379",
		DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second,
		MaxRetries: 1, DialerRetries: 1, // a device is waiting: fail fast when Redis is down
	})
	defer rdb.Close()
	if err := rdb.Ping(context.Background()).Err(); err != nil {
		log.Fatal(err)
	}
	store := &redisstore.Store{Client: rdb, Prefix: "scepkit:"}

	gw, err := crptest.New(crptest.Options{Gateway: "gateway.example", Dir: "/var/lib/scepkit",
		Replay: store, Transactions: store})
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(http.ListenAndServe(":8080", gw.Server))
}
