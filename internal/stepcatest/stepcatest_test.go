package stepcatest_test

import (
	"testing"

	"github.com/scepkit/scepkit/internal/stepcatest"
)

// TestStart: step-ca starts with the generated configuration and takes a webhook
// through its admin API, returning the secret it generated.
func TestStart(t *testing.T) {
	ca := stepcatest.Start(t, stepcatest.Options{})
	secret := ca.AddWebhook(stepcatest.Webhook{Name: "scepkit", URL: "https://127.0.0.1:1/challenge", Kind: "SCEPCHALLENGE"})
	if len(secret) < 32 {
		t.Fatalf("secret of %d bytes", len(secret))
	}
}
