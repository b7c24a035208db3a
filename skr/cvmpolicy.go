package skr

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Claims of Azure Attestation tokens for confidential VMs (AzureGuest).
const (
	ClaimCVMAttestationType = "x-ms-attestation-type"                     // "azurevm"
	ClaimCVMTEEType         = "x-ms-isolation-tee.x-ms-attestation-type"  // "sevsnpvm"
	ClaimCVMCompliance      = "x-ms-isolation-tee.x-ms-compliance-status" // "azure-compliant-cvm"
	ClaimCVMDebuggable      = "x-ms-isolation-tee.x-ms-sevsnpvm-is-debuggable"
	ClaimSecureBoot         = "secureboot"
	// ClaimMockPCRs is mock-kms's claim of the quoted PCR values, as
	// "x-chestfs-pcrs.<index>"; Azure's default attestation policy issues
	// no PCR values (a custom attestation policy can).
	ClaimMockPCRs = "x-chestfs-pcrs"
	CompliantCVM  = "azure-compliant-cvm"
)

// CVMPolicyOptions choose what a confidential-VM release policy requires
// besides an Azure-compliant SEV-SNP confidential VM.
type CVMPolicyOptions struct {
	// SecureBoot requires UEFI secure boot (claim "secureboot").
	SecureBoot bool
	// PCRs requires these SHA-256 PCR values (hex), index -> value, through
	// mock-kms's x-chestfs-pcrs claim.
	PCRs map[int]string
}

// PolicyForCVM is a release policy for Azure confidential VMs attested
// through their vTPM (attestation type azurevm, an SEV-SNP TEE that Azure
// finds compliant, not debuggable), in the shape of Microsoft's CVM key
// release examples, plus what opts asks.
func PolicyForCVM(authority string, opts CVMPolicyOptions) ([]byte, error) {
	a, err := NormalizeEndpoint(authority)
	if err != nil {
		return nil, fmt.Errorf("skr: policy authority: %w", err)
	}
	rules := []PolicyRule{
		{Claim: ClaimCVMAttestationType, Equals: "azurevm"},
		{Claim: ClaimCVMTEEType, Equals: "sevsnpvm"},
		{Claim: ClaimCVMCompliance, Equals: CompliantCVM},
		{Claim: ClaimCVMDebuggable, Equals: "false"},
	}
	if opts.SecureBoot {
		rules = append(rules, PolicyRule{Claim: ClaimSecureBoot, Equals: "true"})
	}
	idx := make([]int, 0, len(opts.PCRs))
	for i := range opts.PCRs {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	for _, i := range idx {
		v := strings.ToLower(strings.TrimSpace(opts.PCRs[i]))
		if b, err := hex.DecodeString(v); err != nil || len(b) != 32 || i < 0 || i > 23 {
			return nil, fmt.Errorf("skr: PCR %d: want an index 0-23 and 64 hex digits (SHA-256)", i)
		}
		rules = append(rules, PolicyRule{Claim: ClaimMockPCRs + "." + strconv.Itoa(i), Equals: v})
	}
	p := Policy{Version: "1.0.0", AnyOf: []PolicyRule{{Authority: a, AllOf: rules}}}
	return json.MarshalIndent(p, "", "  ")
}
