// Package attest collects hardware attestation evidence for secure key
// release: an AMD SEV-SNP report bound to caller-supplied runtime data, the
// VCEK certificate chain that signs it, and the host's endorsements.
//
// Two providers exist: "sevsnp" (the real /dev/sev-guest or configfs-tsm
// device, Azure confidential containers) and "fake" (reports signed with
// go-sev-guest's published test-only AMD keys; insecure, for demos and CI).
package attest

import (
	"context"
	"crypto/sha256"
	"fmt"
)

// Evidence is what Azure Attestation needs to attest a SEV-SNP container.
type Evidence struct {
	// Report is the raw SEV-SNP attestation report (1184 bytes, little-endian ABI).
	Report []byte
	// CertChain is the PEM VCEK certificate followed by ASK and ARK.
	CertChain []byte
	// ReferenceInfo is the UVM reference information (COSE_Sign1), sent as
	// the "Uvm" endorsement; nil when the host provides none.
	ReferenceInfo []byte
	// RuntimeData are the exact bytes whose SHA-256 is in REPORT_DATA.
	RuntimeData []byte
	// Fake marks evidence from the insecure fake provider.
	Fake bool
}

// Provider produces evidence bound to runtimeData.
type Provider interface {
	Evidence(ctx context.Context, runtimeData []byte) (*Evidence, error)
}

// ReportData is the SEV-SNP REPORT_DATA Azure expects for runtimeData:
// sha256(runtimeData) followed by 32 zero bytes.
func ReportData(runtimeData []byte) [64]byte {
	var rd [64]byte
	h := sha256.Sum256(runtimeData)
	copy(rd[:], h[:])
	return rd
}

// New returns the provider called name: "sevsnp" (alias "snp") or "fake".
// The fake provider is never chosen implicitly.
func New(name string) (Provider, error) {
	switch name {
	case "sevsnp", "snp", "":
		return NewSNP(SNPOptions{}), nil
	case "fake":
		return NewFake(FakeOptions{})
	case "azure-cvm", "vtpm": // vTPM guests: azurecvm.go, tpmsim.go
		return NewAzureCVM(AzureCVMOptions{}), nil
	case "tpm-sim":
		return NewTPMSim(TPMSimOptions{})
	default:
		return nil, fmt.Errorf("attest: unknown evidence provider %q (want sevsnp, azure-cvm, tpm-sim or fake)", name)
	}
}
