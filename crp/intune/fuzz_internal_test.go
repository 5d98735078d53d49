package intune

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// FuzzAnswers feeds arbitrary bytes to the readers of what Intune answers: the
// validation service's answer (scepAnswer), a revocation download (its requests
// and their serials) and a revocation result's errorCode. Properties: no panic; an
// answer read is read the same once written back; a serial read is positive and
// SerialHex writes it back to the same number; an errorCode read is a member of the
// enumeration, and MarshalJSON writes it back to the same code.
func FuzzAnswers(f *testing.F) {
	for _, name := range []string{"download.json", "upload-csharp.json", "upload-java.json", "upload-number-refused.json",
		"upload-unknown-refused.json", "validate.json"} {
		b, err := os.ReadFile(filepath.Join("intunetest", "testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		`{"code":"Success","errorDescription":""}`,
		`{"code":"SubjectNameMismatch","CODE":"Success"}`,
		`{"code":"ChallengeDecryptionError","code":"Success"}`,
		`{"code":null,"errorDescription":null}`,
		`{"value":[{"requestContext":"c","serialNumber":"0A:1B 2C","issuerName":"CN=x"}]}`,
		`{"value":[{"requestContext":"c","serialNumber":"-01"}]}`,
		`"4004"`, `"CertificateNotFoundError"`, `4004`, `"04004"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var a scepAnswer
		if err := json.Unmarshal(b, &a); err == nil {
			var code any
			if a.Code != nil {
				code = *a.Code
			}
			out, err := json.Marshal(map[string]any{"code": code, "errorDescription": a.ErrorDescription})
			if err != nil {
				t.Fatal(err)
			}
			var back scepAnswer
			if err := json.Unmarshal(out, &back); err != nil {
				t.Fatalf("%s written back as %s, refused: %v", b, out, err)
			}
			if (a.Code == nil) != (back.Code == nil) || a.Code != nil && *a.Code != *back.Code || a.ErrorDescription != back.ErrorDescription {
				t.Fatalf("%s written back as %s, read otherwise", b, out)
			}
		}

		var dl struct {
			Value *[]RevocationRequest `json:"value"`
		}
		if json.Unmarshal(b, &dl) == nil && dl.Value != nil {
			for _, r := range *dl.Value {
				n, err := r.Serial()
				if err != nil {
					continue
				}
				if n.Sign() <= 0 {
					t.Fatalf("serial %q read as %v", r.SerialNumber, n)
				}
				back, err := (&RevocationRequest{SerialNumber: SerialHex(n)}).Serial()
				if err != nil || back.Cmp(n) != 0 {
					t.Fatalf("serial %q read as %v, written back as %s: %v, %v", r.SerialNumber, n, SerialHex(n), back, err)
				}
			}
		}

		var c ErrorCode
		if err := c.UnmarshalJSON(b); err == nil {
			if !c.Known() {
				t.Fatalf("%s read as the unknown code %d", b, c)
			}
			out, err := c.MarshalJSON()
			if err != nil {
				t.Fatal(err)
			}
			var back ErrorCode
			if err := back.UnmarshalJSON(out); err != nil || back != c {
				t.Fatalf("%s read as %v, written back as %s: %v, %v", b, c, out, back, err)
			}
		}
	})
}
