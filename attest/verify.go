package attest

import (
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"github.com/google/go-sev-guest/abi"
	spb "github.com/google/go-sev-guest/proto/sevsnp"
	"github.com/google/go-sev-guest/verify"
	"github.com/google/go-sev-guest/verify/trust"
)

// VerifyOptions configure VerifyReport.
type VerifyOptions struct {
	// AcceptFake also trusts go-sev-guest's test-only AMD roots (mock KMS only).
	AcceptFake bool
	// Now is the time for certificate validity; zero means time.Now().
	Now time.Time
}

// Verified is a report whose signature chains to a trusted AMD root.
type Verified struct {
	Report *spb.Report
	Fake   bool // signed by the test-only chain
}

// maxChainPEM bounds the PEM certificate chain accepted.
const maxChainPEM = 64 << 10

// SplitPEMCerts returns the DER bytes of every CERTIFICATE block in data.
func SplitPEMCerts(data []byte) [][]byte {
	var out [][]byte
	for len(data) > 0 {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			out = append(out, b.Bytes)
		}
	}
	return out
}

// VerifyReport checks that report is a well-formed SEV-SNP report signed by
// the VCEK (first certificate of chainPEM, then ASK, ARK) and that the VCEK
// chains to AMD's embedded roots, or with AcceptFake to the test roots. No
// network access: certificates are never fetched.
func VerifyReport(report, chainPEM []byte, opts VerifyOptions) (*Verified, error) {
	if len(report) != abi.ReportSize {
		return nil, fmt.Errorf("attest: SNP report is %d bytes, want %d", len(report), abi.ReportSize)
	}
	if len(chainPEM) > maxChainPEM {
		return nil, errors.New("attest: VCEK certificate chain too large")
	}
	certs := SplitPEMCerts(chainPEM)
	if len(certs) == 0 {
		return nil, errors.New("attest: no VCEK certificate in the chain")
	}
	attestation := func() (*spb.Attestation, error) {
		r, err := abi.ReportToProto(report)
		if err != nil {
			return nil, fmt.Errorf("attest: SNP report: %w", err)
		}
		chain := &spb.CertificateChain{VcekCert: certs[0], Extras: map[string][]byte{}}
		if len(certs) > 1 {
			chain.AskCert = certs[1]
		}
		if len(certs) > 2 {
			chain.ArkCert = certs[2]
		}
		return &spb.Attestation{Report: r, CertificateChain: chain}, nil
	}
	a, err := attestation()
	if err != nil {
		return nil, err
	}
	vopts := &verify.Options{DisableCertFetching: true, Now: opts.Now}
	err = verify.SnpAttestation(a, vopts)
	if err == nil {
		return &Verified{Report: a.Report}, nil
	}
	if !opts.AcceptFake {
		return nil, fmt.Errorf("attest: SNP report verification: %w", err)
	}
	roots, ferr := FakeAMDRoots()
	if ferr != nil {
		return nil, ferr
	}
	a, _ = attestation()
	fopts := &verify.Options{DisableCertFetching: true, Now: opts.Now,
		TrustedRoots: map[string][]*trust.AMDRootCerts{"Milan": {roots}}}
	if ferr := verify.SnpAttestation(a, fopts); ferr != nil {
		return nil, fmt.Errorf("attest: SNP report verification: AMD roots: %v; test roots: %v", err, ferr)
	}
	return &Verified{Report: a.Report, Fake: true}, nil
}
