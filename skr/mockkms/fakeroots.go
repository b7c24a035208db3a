package mockkms

import (
	"crypto/x509"
	_ "embed"
	"encoding/pem"
	"fmt"
)

// fakeAMDRootsPEM are the ARK and ASK of go-sev-guest's test-only chain
// (product Milan-B1, made at 2025-01-01 UTC), as its testing package builds
// them. Kept as certificates rather than built at start-up so that the mock
// does not import that test-helper package (it imports "testing", registers
// flags and does not build on Windows). fakeroots_test.go checks that they
// still match the package.
//
//go:embed fake_amd_roots.pem
var fakeAMDRootsPEM []byte

type fakeRootCerts struct{ Ark, Ask *x509.Certificate }

func parseFakeAMDRoots() (*fakeRootCerts, error) {
	var certs []*x509.Certificate
	for rest := fakeAMDRootsPEM; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("mockkms: fake AMD roots: %w", err)
		}
		certs = append(certs, c)
	}
	if len(certs) != 2 {
		return nil, fmt.Errorf("mockkms: fake AMD roots: %d certificates, want ARK and ASK", len(certs))
	}
	return &fakeRootCerts{Ark: certs[0], Ask: certs[1]}, nil
}
