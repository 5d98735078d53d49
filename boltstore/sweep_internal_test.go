package boltstore

import (
	"encoding/json"
	"testing"
)

// TestRecordExpires: the sweep reads a stored record's expiry without decoding the
// record, and reads what decoding it would, whatever its strings hold (a user,
// device or transactionID naming "expires" in every way JSON can write it).
func TestRecordExpires(t *testing.T) {
	for _, r := range []record{
		{ID: "tx", Request: make([]byte, 2500), CSR: []byte("csr"), Expires: 1765000000123456789},
		{ID: `","expires":1,"x":"`, UserID: `"expires":2}`, DeviceID: `\"expires\":3`, Expires: 4},
		{ID: "neg", Template: `expires":5`, Reason: `"expires":6`, Expires: -7},
		{ID: "zero"},
		{ID: "\"expires\":\u2028\"expires\":8", Validator: "<\"expires\":9>", Expires: 10},
	} {
		v, err := json.Marshal(&r)
		if err != nil {
			t.Fatal(err)
		}
		var full record
		if err := json.Unmarshal(v, &full); err != nil {
			t.Fatal(err)
		}
		got, ok := recordExpires(v)
		if !ok || got != full.Expires || got != r.Expires {
			t.Errorf("%s: recordExpires = %d, %v; decoded: %d", v, got, ok, full.Expires)
		}
	}
	for _, v := range []string{``, `{}`, `{"expires":}`, `{"expires":x}`, `{"expires":99999999999999999999}`} {
		if got, ok := recordExpires([]byte(v)); ok {
			t.Errorf("%s: recordExpires = %d, true; want no expiry", v, got)
		}
	}
}
