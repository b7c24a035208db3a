package attest

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/verify/trust"
)

// FakeProductName is the AMD product the fake VCEK claims to be.
const FakeProductName = "Milan-B1"

// Report layout offsets (AMD SEV-SNP ABI, ATTESTATION_REPORT table).
const (
	offVersion     = 0x00
	offPolicy      = 0x08
	offSigAlgo     = 0x34
	offReportData  = 0x50
	offMeasurement = 0x90
	offHostData    = 0xC0
	offReportID    = 0x140
	offReportedTCB = 0x180
)

// fakePolicy is the guest policy of Azure confidential containers (from the
// reference report): ABI 0.31, SMT allowed, debugging not allowed.
const fakePolicy = 0x3001f

var (
	fakeOnce   sync.Once
	fakeSigner *fakeAMDSigner
	fakeErr    error
)

// fakeChain builds the fake ARK/ASK/VCEK (fakechain.go) once. The keys are
// public test keys compiled into go-sev-guest, so every process gets the
// same chain; the fixed creation time keeps the certificates identical too.
func fakeChain() (*fakeAMDSigner, error) {
	fakeOnce.Do(func() {
		created := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
		fakeSigner, fakeErr = fakeCertChain(FakeProductName, created)
		if fakeErr != nil {
			fakeErr = fmt.Errorf("attest: fake AMD chain: %w", fakeErr)
		}
	})
	return fakeSigner, fakeErr
}

// FakeAMDRoots are the test-only ARK and ASK that sign fake VCEKs; a verifier
// that trusts them accepts fake evidence. Never trust them in production.
func FakeAMDRoots() (*trust.AMDRootCerts, error) {
	s, err := fakeChain()
	if err != nil {
		return nil, err
	}
	r := trust.AMDRootCertsProduct("Milan")
	r.ProductCerts = &trust.ProductCerts{Ark: s.Ark, Ask: s.Ask}
	return r, nil
}

// FakeHostData is the HOST_DATA the fake provider puts in its reports for a
// UVM security policy: sha256(policy), as the Azure host does.
func FakeHostData(policy []byte) [32]byte { return sha256.Sum256(policy) }

// FakeOptions configure the fake provider.
type FakeOptions struct {
	// Policy is the UVM security policy whose hash becomes HOST_DATA. If nil,
	// the policy from the UVM security context is used, or an empty policy.
	Policy []byte
	// Context overrides LoadSecurityContext (for its policy and reference info).
	Context *SecurityContext
	// NoReferenceInfo sends no UVM reference info (endorsement) when the
	// security context has none, instead of FakeReferenceInfo: Azure
	// Attestation, and mock-kms, then give no x-ms-compliance-status, and
	// the default release policy refuses the key.
	NoReferenceInfo bool
	Logger          *slog.Logger
}

// FakeReferenceInfo is the UVM reference info the fake provider sends when
// the security context has none, so that mock-kms sees an endorsed UVM as
// Azure Attestation would for a real confidential container. It has the
// shape of the real thing, a COSE_Sign1 (CBOR tag 18, [protected,
// unprotected, payload, signature]), but an empty signature: mock-kms
// checks the shape, not Microsoft's signature.
var FakeReferenceInfo = fakeCOSESign1([]byte("chestfs fake UVM reference info: not signed, proves nothing"))

// fakeCOSESign1 encodes 18([h”, {}, payload, h”]) for a payload under 256 bytes.
func fakeCOSESign1(payload []byte) []byte {
	b := []byte{0xd2, 0x84, 0x40, 0xa0, 0x58, byte(len(payload))}
	b = append(b, payload...)
	return append(b, 0x40)
}

// Fake produces SEV-SNP reports signed by go-sev-guest's test-only AMD keys.
// Anyone can forge such reports: it proves nothing and exists so that the
// whole release flow can run on a laptop or in CI against mockkms.
type Fake struct {
	hostData [32]byte
	refInfo  []byte
	log      *slog.Logger
}

// NewFake returns the fake provider and logs loudly that it is insecure.
func NewFake(opts FakeOptions) (*Fake, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	sc := opts.Context
	if sc == nil {
		var err error
		sc, err = LoadSecurityContext()
		if err != nil && !errors.Is(err, ErrNoSecurityContext) {
			return nil, err
		}
	}
	policy := opts.Policy
	f := &Fake{log: log}
	if sc != nil {
		if policy == nil {
			policy = sc.SecurityPolicy
		}
		f.refInfo = sc.ReferenceInfo
	}
	if len(f.refInfo) == 0 && !opts.NoReferenceInfo {
		f.refInfo = FakeReferenceInfo
	}
	f.hostData = FakeHostData(policy)
	if _, err := fakeChain(); err != nil {
		return nil, err
	}
	log.Warn("INSECURE: using the fake SEV-SNP attestation provider; reports are signed with public test keys and prove nothing",
		"hostdata", fmt.Sprintf("%x", f.hostData))
	return f, nil
}

// HostData is the HOST_DATA this provider reports.
func (f *Fake) HostData() [32]byte { return f.hostData }

// Evidence builds and signs a fake report bound to runtimeData.
func (f *Fake) Evidence(ctx context.Context, runtimeData []byte) (*Evidence, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s, err := fakeChain()
	if err != nil {
		return nil, err
	}
	report := make([]byte, abi.ReportSize)
	binary.LittleEndian.PutUint32(report[offVersion:], 2)
	binary.LittleEndian.PutUint64(report[offPolicy:], fakePolicy)
	binary.LittleEndian.PutUint32(report[offSigAlgo:], abi.SignEcdsaP384Sha384)
	rd := ReportData(runtimeData)
	copy(report[offReportData:], rd[:])
	m := sha512.Sum384([]byte("chestfs fake SEV-SNP launch measurement"))
	copy(report[offMeasurement:], m[:])
	copy(report[offHostData:], f.hostData[:])
	if _, err := rand.Read(report[offReportID : offReportID+32]); err != nil {
		return nil, err
	}
	binary.LittleEndian.PutUint64(report[offReportedTCB:], uint64(s.TCB))
	digest := sha512.Sum384(abi.SignedComponent(report))
	r, sig, err := ecdsa.Sign(rand.Reader, s.Keys.Vcek, digest[:])
	if err != nil {
		return nil, fmt.Errorf("attest: fake report signature: %w", err)
	}
	if err := abi.SetSignature(r, sig, report); err != nil {
		return nil, fmt.Errorf("attest: fake report signature: %w", err)
	}
	var chain []byte
	for _, c := range [][]byte{s.Vcek.Raw, s.Ask.Raw, s.Ark.Raw} {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c})...)
	}
	f.log.Warn("INSECURE: issuing a fake SEV-SNP report")
	return &Evidence{Report: report, CertChain: chain, ReferenceInfo: f.refInfo, RuntimeData: runtimeData, Fake: true}, nil
}
