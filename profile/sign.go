package profile

import (
	"crypto"
	"crypto/x509"
	"fmt"

	"github.com/smallstep/pkcs7"
)

// SignMobileConfig wraps a .mobileconfig (from [MobileConfig]) in a CMS SignedData
// with the content attached, signed by signer with SHA-256, carrying cert and chain:
// the signed form Apple devices show as "Verified" when they trust the chain. The
// signer may be any crypto.Signer (RSA or ECDSA, software, HSM or KMS). The result is
// DER, the format Apple expects for a signed .mobileconfig.
func SignMobileConfig(mobileconfig []byte, cert *x509.Certificate, signer crypto.Signer, chain []*x509.Certificate) ([]byte, error) {
	if cert == nil || signer == nil {
		return nil, exportErr("signing needs a certificate and a signer")
	}
	sd, err := pkcs7.NewSignedData(mobileconfig)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrExport, err)
	}
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	if err := sd.AddSignerChain(cert, signer, chain, pkcs7.SignerInfoConfig{}); err != nil {
		return nil, fmt.Errorf("%w: signing: %v", ErrExport, err)
	}
	return sd.Finish()
}
