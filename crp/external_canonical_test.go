package crp_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/scepkit/scepkit/crp"
	"github.com/scepkit/scepkit/profile"
)

// lenientValidator accepts one base64 challenge the way a service that decodes it
// leniently does (.NET's Convert.FromBase64String skips white space, and no decoder
// but a strict one looks at the bits after the last whole byte): by its bytes, not its
// text.
type lenientValidator struct{ want []byte }

func (v *lenientValidator) Accepts(ch string) bool {
	return strings.HasPrefix(strings.TrimSpace(ch), "TURN")
}

func (v *lenientValidator) Validate(_ context.Context, tx *crp.Transaction) error {
	b, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(tx.Challenge), ""))
	if err != nil || string(b) != string(v.want) {
		return errors.New("refused")
	}
	tx.Profile = &profile.Profile{ID: "mdm-profile"}
	return nil
}

// TestExternalChallengeSpellingsClaimedOnce: an MDM challenge is claimed once, under
// what the MDM reads, not how it is spelt. It was claimed by the SHA-256 of its text,
// so the same challenge with a line break or a space in it, or with other bits after
// its last byte, was a new claim, which an MDM that decodes leniently accepted
// again: a second certificate from one challenge.
func TestExternalChallengeSpellingsClaimedOnce(t *testing.T) {
	want := []byte("MDM\x00one challenge, 34 bytes long!?")
	genuine := base64.StdEncoding.EncodeToString(want) // "TURN..." ends in "Pw=="
	require.True(t, strings.HasSuffix(genuine, "Pw=="))
	for _, respelt := range []string{
		genuine[:8] + "\n" + genuine[8:],
		genuine[:8] + " " + genuine[8:],
		genuine[:len(genuine)-3] + "x==", // 'x' sets a bit that 'w' leaves clear after the last byte
		"\t" + genuine + "\r\n",
	} {
		t.Run(strings.NewReplacer("\n", `\n`, "\r", `\r`, "\t", `\t`).Replace(respelt), func(t *testing.T) {
			env, _ := externalEnv(t)
			env.RP.Validators = []crp.ChallengeValidator{&lenientValidator{want: want}}
			require.NoError(t, env.RP.Validate())
			ctx := context.Background()
			_, err := env.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "first",
				CSR: csr(t, deviceKey, "device-42", genuine), Challenge: genuine})
			require.NoError(t, err)
			key, err := rsa.GenerateKey(rand.Reader, 2048)
			require.NoError(t, err)
			issued := env.Issuer.Count()
			res, err := env.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "second",
				CSR: csr(t, key, "device-42", respelt), Challenge: respelt})
			var e *crp.Error
			require.ErrorAs(t, err, &e, "the challenge respelt got %+v", res)
			require.Equal(t, crp.ReasonReplayed, e.Reason, "%v", err)
			require.Equal(t, issued, env.Issuer.Count(), "a second certificate from one challenge")
		})
	}
}

// otpValidator accepts its one-time codes by their text, as an MDM that hands out
// short codes (a six-digit PIN) does.
type otpValidator struct{ codes map[string]bool }

func (v *otpValidator) Accepts(string) bool { return true }

func (v *otpValidator) Validate(_ context.Context, tx *crp.Transaction) error {
	if !v.codes[tx.Challenge] {
		return errors.New("refused")
	}
	tx.Profile = &profile.Profile{ID: "mdm-profile"}
	return nil
}

// TestDistinctShortChallengesClaimedApart: two different one-time codes are two
// claims, though each happens to be unpadded base64 and they differ only in bits after
// the last whole byte (six digits are four bytes and four bits: "123450" to "123459"
// decode alike). Canonicalising those bits made the second device's genuine code a
// replay of the first's.
func TestDistinctShortChallengesClaimedApart(t *testing.T) {
	env, _ := externalEnv(t)
	env.RP.Validators = []crp.ChallengeValidator{&otpValidator{codes: map[string]bool{"123450": true, "123451": true}}}
	require.NoError(t, env.RP.Validate())
	ctx := context.Background()
	for i, code := range []string{"123450", "123451"} {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		require.NoError(t, err)
		_, err = env.RP.Enroll(ctx, &crp.EnrollRequest{TransactionID: "otp-" + code,
			CSR: csr(t, key, "device-4"+code[5:], code), Challenge: code})
		require.NoError(t, err, "device %d, code %s", i, code)
	}
	require.Equal(t, 2, env.Issuer.Count())
}
