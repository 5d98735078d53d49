package redisstore_test

import (
	"fmt"
	"testing"

	"github.com/scepkit/scepkit/crp/storetest"
	"github.com/scepkit/scepkit/internal/redistest"
	"github.com/scepkit/scepkit/redisstore"
)

// The Redis store keeps claims, transaction records and the pending index; the
// suite's other parts do not apply.
func TestConformance(t *testing.T) {
	srv := redistest.Start(t)
	n := 0
	storetest.Run(t, func(t *testing.T) storetest.Backend {
		n++ // a prefix of its own per case: a fresh, empty store
		s := &redisstore.Store{Client: srv.Client(t), Prefix: fmt.Sprintf("conf%d:", n)}
		return storetest.Backend{Claims: s, Transactions: s, Pending: s}
	})
}
