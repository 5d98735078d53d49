package profile

import (
	"bytes"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// marshalRDNsASN1 is the reference for marshalRDNs: the same RDNSequence built
// as pkix values and encoded by encoding/asn1.
func marshalRDNsASN1(attrs []Attribute) ([]byte, error) {
	var seq pkix.RDNSequence
	last := -1
	for _, a := range attrs {
		tag := asn1.TagUTF8String
		if t := attrByOID(a.Type); t != nil {
			tag = t.tag
		}
		atv := pkix.AttributeTypeAndValue{
			Type:  a.Type,
			Value: asn1.RawValue{Tag: tag, Class: asn1.ClassUniversal, Bytes: []byte(a.Value)},
		}
		if len(seq) == 0 || a.RDN != last {
			seq = append(seq, pkix.RelativeDistinguishedNameSET{atv})
			last = a.RDN
			continue
		}
		seq[len(seq)-1] = append(seq[len(seq)-1], atv)
	}
	if seq == nil {
		seq = pkix.RDNSequence{}
	}
	return asn1.Marshal(seq)
}

func requireSameDER(t *testing.T, attrs []Attribute) {
	t.Helper()
	want, wantErr := marshalRDNsASN1(attrs)
	got, gotErr := marshalRDNs(attrs)
	if wantErr != nil {
		require.Error(t, gotErr, "%v", attrs)
		require.Equal(t, wantErr.Error(), gotErr.Error())
		return
	}
	require.NoError(t, gotErr, "%v", attrs)
	require.True(t, bytes.Equal(want, got), "%v\nwant %x\ngot  %x", attrs, want, got)
}

// TestMarshalRDNsMatchesASN1 checks that the hand-written encoder produces
// what encoding/asn1 produces, for random subjects: known and unknown types,
// multi-valued RDNs (sorted as a SET OF), values across the DER length forms,
// and the OIDs asn1.Marshal refuses or encodes oddly.
func TestMarshalRDNsMatchesASN1(t *testing.T) {
	requireSameDER(t, nil)
	requireSameDER(t, []Attribute{})
	oids := []asn1.ObjectIdentifier{
		oidCN, oidC, oidEmail, oidDC, oidSerial, {2, 5, 4, 10}, {2, 5, 4, 11},
		{1, 2, 3}, {2, 999, 3}, {0, 39}, {1, 3, 6, 1, 4, 1, 311, 60, 2, 1, 3},
		{1, 2, 1 << 40}, {2, -5, 7}, {1, 2, -1}, {-1, 3}, {0, 0},
		{1, 40}, {3, 1}, {1}, {}, nil, {2, math.MaxInt32, 0},
	}
	lengths := []int{0, 1, 2, 30, 127, 128, 129, 255, 256, 1000, 65535, 65536, 70000}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 3000 {
		n := rng.IntN(7)
		attrs := make([]Attribute, n)
		rdn := 0
		for i := range attrs {
			if rng.IntN(3) != 0 {
				rdn += rng.IntN(3) - 0 // same RDN, next, or skip one
			}
			if rng.IntN(20) == 0 {
				rdn = rng.IntN(4) // out of order
			}
			l := rng.IntN(40)
			if rng.IntN(8) == 0 {
				l = lengths[rng.IntN(len(lengths))]
			}
			v := strings.Repeat(string(rune('a'+rng.IntN(3))), l)
			if rng.IntN(4) == 0 && l > 0 {
				v = v[:l-1] + "\x00"
			}
			oid := oids[rng.IntN(7)]
			if rng.IntN(5) == 0 {
				oid = oids[rng.IntN(len(oids))]
			}
			attrs[i] = Attribute{Type: oid, Value: v, RDN: rdn}
		}
		requireSameDER(t, attrs)
	}
}

func FuzzMarshalRDNs(f *testing.F) {
	f.Add([]byte{0, 1, 2}, "CN=x", 3)
	f.Fuzz(func(t *testing.T, rdns []byte, values string, arc int) {
		if len(rdns) > 16 {
			rdns = rdns[:16]
		}
		oids := []asn1.ObjectIdentifier{oidCN, oidC, oidEmail, {2, 5, 4, 10}, {1, 2, arc}, {2, arc}, {arc, 1}}
		var attrs []Attribute
		for i, r := range rdns {
			v := values
			if i < len(values) {
				v = values[i:]
			}
			attrs = append(attrs, Attribute{Type: oids[int(r)%len(oids)], Value: v, RDN: int(r) >> 5})
		}
		requireSameDER(t, attrs)
	})
}

// TestValidOIDMatchesParseOID checks validOID against what Validate used to
// run: parseOID of the dotted form, and at least two arcs.
func TestValidOIDMatchesParseOID(t *testing.T) {
	arcs := []int{0, 1, 2, 3, 39, 40, 41, 79, 80, 311, 999999999, 1000000000, -1, -40, math.MaxInt32, math.MaxInt64}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 20000 {
		oid := make(asn1.ObjectIdentifier, rng.IntN(6))
		if rng.IntN(50) == 0 {
			oid = make(asn1.ObjectIdentifier, 60+rng.IntN(10))
		}
		for i := range oid {
			oid[i] = arcs[rng.IntN(len(arcs))]
		}
		_, ok := parseOID(oid.String())
		require.Equal(t, ok && len(oid) >= 2, validOID(oid), "%v", []int(oid))
	}
}

// TestCanonicalSubject checks Check's shortcut: whenever canonicalSubject
// accepts an encoding, encoding/asn1 parses it back into the same pairs.
func TestCanonicalSubject(t *testing.T) {
	oids := []asn1.ObjectIdentifier{oidCN, oidC, oidEmail, oidDC, oidSerial, {2, 5, 4, 10},
		{1, 2, 3}, {2, 999, 3}, {1, 2, 1 << 40}, {2, -5, 7}, {1, 2, math.MaxInt32}, {1, 40}}
	values := []string{"", "a", "Contoso", "jane@contoso.com", "US", "a*b", "a&b", "a@b", "é", "\xff", "x\x00", "a_b"}
	rng := rand.New(rand.NewPCG(5, 6))
	accepted := 0
	for range 20000 {
		attrs := make([]Attribute, rng.IntN(5))
		for i := range attrs {
			attrs[i] = Attribute{Type: oids[rng.IntN(len(oids))], Value: values[rng.IntN(len(values))], RDN: rng.IntN(3)}
		}
		raw, err := marshalRDNsASN1(attrs)
		if err != nil {
			require.False(t, canonicalSubject(nil, attrs))
			continue
		}
		if !canonicalSubject(raw, attrs) {
			continue
		}
		accepted++
		var seq pkix.RDNSequence
		rest, err := asn1.Unmarshal(raw, &seq)
		require.NoError(t, err, "%v", attrs)
		require.Empty(t, rest)
		var want, got []string
		for _, a := range attrs {
			want = append(want, pairKey(a.Type, a.Value))
		}
		for _, rdn := range seq {
			for _, atv := range rdn {
				s, ok := atv.Value.(string)
				require.True(t, ok)
				got = append(got, pairKey(atv.Type, s))
			}
		}
		require.True(t, sameMultiset(want, got, false), "%v: %v", want, got)
		if len(raw) > 2 {
			raw[len(raw)-1] ^= 1
			require.False(t, canonicalSubject(raw, attrs))
		}
	}
	require.Greater(t, accepted, 1000)
}

// TestLookupBuiltinCase checks the allocation-free lower-casing against
// strings.ToLower, including non-ASCII names that fold to ASCII.
func TestLookupBuiltinCase(t *testing.T) {
	names := []string{"", "UserName", "USERNAME", "username", "userName ", "DeviceId", "deviceID",
		"\u212Aelvin", "EASID", "eas\u0130d", "OnPrem_Distinguished_Name", "ONPREMISESSECURITYIDENTIFIER",
		strings.Repeat("a", 32), strings.Repeat("A", 33), "Device_IMEI\xff"}
	for _, v := range builtins {
		names = append(names, v.name, strings.ToUpper(v.name), strings.ToLower(v.name))
	}
	for _, n := range names {
		require.Equal(t, builtinIndex[strings.ToLower(n)], lookupBuiltin(n), "%q", n)
	}
}

// TestValidateEKUsMatchReference checks the EKU checks of Validate against
// the former implementation (parseOID of the dotted form, a map of seen
// OIDs), below and above MaxEKUs, where Validate switches to a map.
func TestValidateEKUsMatchReference(t *testing.T) {
	pool := []asn1.ObjectIdentifier{EKUClientAuth.OID, EKUServerAuth.OID, {1}, {3, 1}, {1, 2, -1}, {1, 2, 1000000000}, nil, {2, 999}}
	rng := rand.New(rand.NewPCG(7, 8))
	for _, n := range []int{1, 2, 5, MaxEKUs, MaxEKUs + 1, 80} {
		for range 50 {
			p := testProfile()
			p.ExtendedKeyUsages = nil
			for range n {
				p.ExtendedKeyUsages = append(p.ExtendedKeyUsages, EKU{OID: pool[rng.IntN(len(pool))]})
			}
			var want []string
			seen := map[string]bool{}
			for i, e := range p.ExtendedKeyUsages {
				field := fmt.Sprintf("ExtendedKeyUsages[%d].OID", i)
				if _, ok := parseOID(e.OID.String()); !ok || len(e.OID) < 2 {
					want = append(want, field+": not a valid OID")
					continue
				}
				if seen[e.OID.String()] {
					want = append(want, field+": duplicate")
				}
				seen[e.OID.String()] = true
			}
			var got []string
			var errs []error
			if err := p.Validate(); err != nil {
				errs = err.(interface{ Unwrap() []error }).Unwrap()
			}
			for _, err := range errs {
				var fe *FieldError
				require.True(t, errors.As(err, &fe))
				if strings.HasPrefix(fe.Field, "ExtendedKeyUsages[") {
					got = append(got, fe.Field+": "+fe.Reason)
				}
			}
			require.Equal(t, want, got)
		}
	}
}
