package mockkms

import (
	"bytes"
	"crypto/sha256"
	"encoding/pem"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/go-sev-guest/abi"
	spb "github.com/google/go-sev-guest/proto/sevsnp"
	"github.com/google/go-sev-guest/verify"
	"github.com/google/go-sev-guest/verify/trust"
)

// The test-only AMD chain the fake attestation provider signs with:
// go-sev-guest's compiled-in test keys, product Milan-B1, certificates made
// at 2025-01-01 UTC. Trusting it is what AcceptFakeSNP means.
var (
	testRootsOnce sync.Once
	testRoots     *trust.AMDRootCerts
	testRootsErr  error
)

func fakeAMDRoots() (*trust.AMDRootCerts, error) {
	testRootsOnce.Do(func() {
		s, err := parseFakeAMDRoots()
		if err != nil {
			testRootsErr = err
			return
		}
		r := trust.AMDRootCertsProduct("Milan")
		r.ProductCerts = &trust.ProductCerts{Ark: s.Ark, Ask: s.Ask}
		testRoots = r
	})
	return testRoots, testRootsErr
}

// checkSNP verifies a raw report against its PEM chain (VCEK, ASK, ARK) to
// AMD's roots, or with acceptFake to the test roots, and that REPORT_DATA
// is sha256(runtime) followed by 32 zero bytes; runtimeName names the
// request field runtime came from, for the error. No certificate is fetched.
func checkSNP(report, chainPEM, runtime []byte, runtimeName string, acceptFake bool, now time.Time) (*spb.Report, bool, error) {
	if len(report) != abi.ReportSize {
		return nil, false, fmt.Errorf("SnpReport is %d bytes, want %d", len(report), abi.ReportSize)
	}
	var certs [][]byte
	for rest := chainPEM; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			certs = append(certs, b.Bytes)
		}
	}
	if len(certs) == 0 {
		return nil, false, errors.New("VcekCertChain holds no certificate")
	}
	attestation := func() (*spb.Attestation, error) {
		r, err := abi.ReportToProto(report)
		if err != nil {
			return nil, err
		}
		ch := &spb.CertificateChain{VcekCert: certs[0], Extras: map[string][]byte{}}
		if len(certs) > 1 {
			ch.AskCert = certs[1]
		}
		if len(certs) > 2 {
			ch.ArkCert = certs[2]
		}
		return &spb.Attestation{Report: r, CertificateChain: ch}, nil
	}
	a, err := attestation()
	if err != nil {
		return nil, false, err
	}
	fake := false
	if err := verify.SnpAttestation(a, &verify.Options{DisableCertFetching: true, Now: now}); err != nil {
		if !acceptFake {
			return nil, false, err
		}
		roots, rerr := fakeAMDRoots()
		if rerr != nil {
			return nil, false, rerr
		}
		a, _ = attestation()
		opts := &verify.Options{DisableCertFetching: true, Now: now, TrustedRoots: map[string][]*trust.AMDRootCerts{"Milan": {roots}}}
		if ferr := verify.SnpAttestation(a, opts); ferr != nil {
			return nil, false, fmt.Errorf("AMD roots: %v; test roots: %v", err, ferr)
		}
		fake = true
	}
	h := sha256.Sum256(runtime)
	want := append(h[:], make([]byte, 32)...)
	if !bytes.Equal(a.Report.ReportData, want) {
		return nil, false, fmt.Errorf("REPORT_DATA is not sha256(%s) followed by 32 zero bytes: the runtime claims are not the hardware's", runtimeName)
	}
	return a.Report, fake, nil
}

// isCOSESign1 reports whether b starts as a COSE_Sign1 does (RFC 9052):
// CBOR tag 18 followed by an array of four items. Azure Attestation also
// checks Microsoft's signature and the launch measurement in the payload;
// the mock only checks the shape.
func isCOSESign1(b []byte) bool {
	return len(b) > 2 && b[0] == 0xd2 && b[1] == 0x84
}
