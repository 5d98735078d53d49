package catemplate

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func ndesStore() MapStore {
	mk := func(name string, ku x509.KeyUsage, published bool) *Template {
		return &Template{Name: name, Validity: time.Hour, KeyUsage: ku, Published: published}
	}
	return MapStore{
		"SigTemplate":    mk("SigTemplate", x509.KeyUsageDigitalSignature, true),
		"EncTemplate":    mk("EncTemplate", x509.KeyUsageKeyEncipherment, true),
		"BothTemplate":   mk("BothTemplate", x509.KeyUsageDigitalSignature|x509.KeyUsageKeyEncipherment, true),
		"HiddenTemplate": mk("HiddenTemplate", x509.KeyUsageDigitalSignature, false),
	}
}

func csrWithKU(t *testing.T, ku x509.KeyUsage) *x509.CertificateRequest {
	t.Helper()
	keys(t)
	var b byte
	for i := 0; i < 8; i++ {
		if ku&(1<<uint(i)) != 0 {
			b |= 0x80 >> uint(i)
		}
	}
	v, err := asn1.Marshal(asn1.BitString{Bytes: []byte{b}, BitLength: 8})
	require.NoError(t, err)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:         pkix.Name{CommonName: "x"},
		ExtraExtensions: []pkix.Extension{{Id: oidKeyUsage, Value: v}},
	}, rsa2048)
	require.NoError(t, err)
	csr, err := x509.ParseCertificateRequest(der)
	require.NoError(t, err)
	return csr
}

func TestNDESResolver(t *testing.T) {
	full := &NDESResolver{SignatureTemplate: "SigTemplate", EncryptionTemplate: "EncTemplate", GeneralPurposeTemplate: "BothTemplate", Templates: ndesStore()}
	ctx := context.Background()
	cases := []struct {
		name string
		res  *NDESResolver
		req  *ResolveRequest
		want string
		err  error
	}{
		{"signature", full, &ResolveRequest{KeyUsage: x509.KeyUsageDigitalSignature}, "SigTemplate", nil},
		{"signature+nonRepudiation", full, &ResolveRequest{KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment}, "SigTemplate", nil},
		{"encryption", full, &ResolveRequest{KeyUsage: x509.KeyUsageKeyEncipherment}, "EncTemplate", nil},
		{"data encipherment", full, &ResolveRequest{KeyUsage: x509.KeyUsageDataEncipherment}, "EncTemplate", nil},
		{"both", full, &ResolveRequest{KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment}, "BothTemplate", nil},
		{"none", full, &ResolveRequest{}, "BothTemplate", nil},
		{"from CSR: signature", full, &ResolveRequest{CSR: csrWithKU(t, x509.KeyUsageDigitalSignature)}, "SigTemplate", nil},
		{"from CSR: encryption", full, &ResolveRequest{CSR: csrWithKU(t, x509.KeyUsageKeyEncipherment)}, "EncTemplate", nil},
		{"explicit beats CSR", full, &ResolveRequest{KeyUsage: x509.KeyUsageKeyEncipherment, CSR: csrWithKU(t, x509.KeyUsageDigitalSignature)}, "EncTemplate", nil},
		{"not configured", &NDESResolver{GeneralPurposeTemplate: "BothTemplate", Templates: ndesStore()}, &ResolveRequest{KeyUsage: x509.KeyUsageDigitalSignature}, "", ErrNoTemplate},
		{"unknown", &NDESResolver{SignatureTemplate: "Nope", Templates: ndesStore()}, &ResolveRequest{KeyUsage: x509.KeyUsageDigitalSignature}, "", ErrUnknownTemplate},
		{"unpublished", &NDESResolver{SignatureTemplate: "HiddenTemplate", Templates: ndesStore()}, &ResolveRequest{KeyUsage: x509.KeyUsageDigitalSignature}, "", ErrNotPublished},
		{"no store", &NDESResolver{SignatureTemplate: "SigTemplate"}, &ResolveRequest{KeyUsage: x509.KeyUsageDigitalSignature}, "", ErrUnknownTemplate},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tp, err := c.res.Resolve(ctx, c.req)
			if c.err != nil {
				require.ErrorIs(t, err, c.err)
				var te *TemplateError
				require.True(t, errors.As(err, &te))
				return
			}
			require.NoError(t, err)
			require.Equal(t, c.want, tp.Name)
		})
	}
}

func TestProfileResolver(t *testing.T) {
	ctx := context.Background()
	fallback := ResolverFunc(func(context.Context, *ResolveRequest) (*Template, error) {
		return ndesStore()["EncTemplate"], nil
	})
	pr := &ProfileResolver{ByProfile: map[string]string{"p1": "SigTemplate", "p2": "HiddenTemplate", "p3": "Missing"}, Templates: ndesStore()}
	tp, err := pr.Resolve(ctx, &ResolveRequest{ProfileID: "p1"})
	require.NoError(t, err)
	require.Equal(t, "SigTemplate", tp.Name)
	_, err = pr.Resolve(ctx, &ResolveRequest{ProfileID: "p2"})
	require.ErrorIs(t, err, ErrNotPublished)
	_, err = pr.Resolve(ctx, &ResolveRequest{ProfileID: "p3"})
	require.ErrorIs(t, err, ErrUnknownTemplate)
	_, err = pr.Resolve(ctx, &ResolveRequest{ProfileID: "other"})
	require.ErrorIs(t, err, ErrNoTemplate)
	require.Contains(t, err.Error(), "profile other")
	pr.Fallback = fallback
	tp, err = pr.Resolve(ctx, &ResolveRequest{ProfileID: "other"})
	require.NoError(t, err)
	require.Equal(t, "EncTemplate", tp.Name)

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = pr.Resolve(cctx, &ResolveRequest{ProfileID: "p1"})
	require.ErrorIs(t, err, context.Canceled)
}

// TestPurposeString: the three purposes have their names, and a value outside them
// says so rather than passing for the general purpose (as scep's and crp's enums do).
func TestPurposeString(t *testing.T) {
	for _, tc := range []struct {
		p    Purpose
		want string
	}{
		{GeneralPurpose, "general purpose"},
		{Signature, "signature"},
		{Encryption, "encryption"},
		{Purpose(3), "unknown(3)"},
		{Purpose(-1), "unknown(-1)"},
	} {
		require.Equal(t, tc.want, tc.p.String(), "Purpose(%d)", int(tc.p))
	}
}
