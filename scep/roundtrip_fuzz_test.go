package scep

import (
	"bytes"
	"math/big"
	"testing"
)

// FuzzRequestRoundTrip: a request NewRequest builds, whatever its transactionID,
// senderNonce, serial number or challenge password, is one ParsePKIMessage accepts with
// the same fields, and Decrypt gives back the payload's values. What the parser would
// refuse, NewRequest refuses to build.
func FuzzRequestRoundTrip(f *testing.F) {
	pki := newTestPKI(f)
	d := newDevice(f)
	nonce := bytes.Repeat([]byte{7}, 16)
	f.Add(uint8(PKCSReq), "tid-1", nonce, []byte(nil), "secret")
	f.Add(uint8(RenewalReq), "A/b+c=", []byte(nil), []byte(nil), "pässword")
	f.Add(uint8(GetCert), "GetCert-2A", nonce[:8], []byte{0x2a}, "")
	f.Add(uint8(GetCRL), "GetCRL-0", bytes.Repeat([]byte{9}, 32), []byte{0x80, 1}, "")
	f.Add(uint8(CertPoll), "poll", nonce, []byte(nil), "")
	f.Fuzz(func(t *testing.T, typ uint8, tid string, nonce, serial []byte, password string) {
		mt := MessageType(typ)
		var payload []byte
		var err error
		sn := new(big.Int).SetBytes(serial)
		if len(serial) > 0 && serial[0]&0x80 != 0 {
			sn.Neg(sn)
		}
		switch mt {
		case GetCert, GetCRL:
			payload, err = MarshalIssuerAndSerial(pki.ca.RawSubject, sn)
		case CertPoll:
			payload, err = MarshalIssuerAndSubject(pki.ca.RawSubject, d.self.RawSubject)
		case PKCSReq, RenewalReq:
			payload, err = AddChallengePassword(newCSR(t, d.key, "device", ""), password, d.key, nil)
			if err != nil {
				return
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(nonce) == 0 {
			nonce = nil
		}
		der, sent, err := NewRequest(RequestOptions{Type: mt, TransactionID: tid, SenderNonce: nonce, Payload: payload,
			Recipient: pki.raEnc, SignerCert: d.self, Signer: d.key})
		if err != nil {
			return
		}
		m, err := ParsePKIMessage(der, ParseOptions{})
		if err != nil {
			t.Fatalf("NewRequest built a %v (transactionID %q, nonce %x) that ParsePKIMessage refuses: %v", mt, tid, sent, err)
		}
		if m.MessageType != mt || m.TransactionID != tid || !bytes.Equal(m.SenderNonce, sent) {
			t.Fatalf("read back %v %q %x, built %v %q %x", m.MessageType, m.TransactionID, m.SenderNonce, mt, tid, sent)
		}
		if err := m.Decrypt(Recipient{pki.raEnc, pki.raEncK}); err != nil {
			t.Fatalf("%v: %v", mt, err)
		}
		switch mt {
		case GetCert, GetCRL:
			if m.IssuerAndSerial.Serial.Cmp(sn) != 0 || !bytes.Equal(m.IssuerAndSerial.Issuer, pki.ca.RawSubject) {
				t.Fatalf("serial %v read back as %v", sn, m.IssuerAndSerial.Serial)
			}
		case PKCSReq, RenewalReq:
			if m.ChallengePassword != password {
				t.Fatalf("challengePassword %q read back as %q", password, m.ChallengePassword)
			}
		}
	})
}
