package crp_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/crp/storetest"
)

func TestMemoryStoreConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Backend { return storetest.Of(&crp.MemoryStore{}) })
}

// A MemoryNotifier keeps the latest notifications only: its memory is bounded under
// sustained load (before, it kept every notification, with its certificate, CSR and
// trace, for the life of the process).
func TestMemoryNotifierBounded(t *testing.T) {
	m := &crp.MemoryNotifier{Keep: 10}
	for i := 0; i < 1000; i++ {
		require.NoError(t, m.Notify(context.Background(), &crp.Notification{TransactionID: fmt.Sprint(i)}))
	}
	got := m.Notifications()
	require.Len(t, got, 10)
	require.Equal(t, "990", got[0].TransactionID)
	require.Equal(t, "999", got[9].TransactionID)
}
