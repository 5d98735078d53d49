package pkcs11key_test

import (
	"crypto/x509/pkix"
	"log"
	"os"

	"github.com/scepkit/scepkit/catemplate"
	"github.com/scepkit/scepkit/pkcs11key"
)

// A CA and an RA whose keys live in an HSM: the keys were made in the token (with
// pkcs11-tool, softhsm2-util or Token.GenerateKey) and are found by label. This
// example needs a token, so it only compiles.
func Example() {
	tok, err := pkcs11key.Open(pkcs11key.Config{
		Module:     "/usr/lib/softhsm/libsofthsm2.so",
		TokenLabel: "scepkit",
		PIN:        os.Getenv("SCEPKIT_PKCS11_PIN"),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer tok.Close()
	caKey, err := tok.Key("scepkit-ca")
	if err != nil {
		log.Fatal(err)
	}
	ca, err := catemplate.NewCA(catemplate.CAOptions{Signer: caKey, Subject: pkix.Name{CommonName: "Example CA"}})
	if err != nil {
		log.Fatal(err)
	}
	signKey, err := tok.Key("scepkit-ra-sign")
	if err != nil {
		log.Fatal(err)
	}
	encKey, err := tok.Key("scepkit-ra-encrypt") // RSA: devices encrypt requests to it
	if err != nil {
		log.Fatal(err)
	}
	ra, err := catemplate.NewRA(ca, catemplate.RAOptions{SigningKey: signKey, EncryptionKey: encKey})
	if err != nil {
		log.Fatal(err)
	}
	_ = ra // give ra to scep.Server (SignerCert, Signer, Recipients) as for software keys
}
