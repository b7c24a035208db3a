package skr

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/chestfs/chestfs/attest"
)

// Policy is a Key Vault release policy (version 1.0.0): anyOf/allOf trees of
// claim conditions, each top-level branch naming its attestation authority.
type Policy struct {
	Version string       `json:"version"`
	AnyOf   []PolicyRule `json:"anyOf,omitempty"`
	AllOf   []PolicyRule `json:"allOf,omitempty"`
}

// PolicyRule is either a branch (AnyOf/AllOf, with Authority at the top) or
// a condition (Claim with Equals).
type PolicyRule struct {
	Authority string       `json:"authority,omitempty"`
	AnyOf     []PolicyRule `json:"anyOf,omitempty"`
	AllOf     []PolicyRule `json:"allOf,omitempty"`
	Claim     string       `json:"claim,omitempty"`
	Equals    any          `json:"equals,omitempty"`
}

// Claims of the default release policy, as Microsoft's import tool for the
// confidential sidecar sets them (values compared as strings).
const (
	ClaimAttestationType  = "x-ms-attestation-type"
	ClaimComplianceStatus = "x-ms-compliance-status"
	ClaimHostData         = "x-ms-sevsnpvm-hostdata"
	ClaimIsDebuggable     = "x-ms-sevsnpvm-is-debuggable"
	ClaimVMPL             = "x-ms-sevsnpvm-vmpl"
	// CompliantUVM is the compliance status Azure Attestation gives a
	// report whose launch measurement matches the Microsoft-signed UVM
	// reference info sent with it (the UVM endorsement).
	CompliantUVM = "azure-compliant-uvm"
)

// PolicyForHostData is the default release policy: it admits SEV-SNP
// containers attested by authority whose HOST_DATA (sha256 of the UVM
// security policy) is hostdataHex, running a Microsoft-endorsed UVM
// (x-ms-compliance-status azure-compliant-uvm), at VMPL 0, not debuggable.
// HOST_DATA alone is not enough: whoever launches a guest chooses it, so a
// hostile host could launch its own SNP guest with the same HOST_DATA; the
// endorsed UVM is what enforces the security policy that HOST_DATA names.
// With the fake provider, hostdataHex is hex(attest.FakeHostData(policy)).
func PolicyForHostData(authority, hostdataHex string) ([]byte, error) {
	a, err := NormalizeEndpoint(authority)
	if err != nil {
		return nil, fmt.Errorf("skr: policy authority: %w", err)
	}
	hostdataHex = strings.ToLower(strings.TrimSpace(hostdataHex))
	if len(hostdataHex) != 64 {
		return nil, fmt.Errorf("skr: hostdata must be 64 hex digits, got %d characters", len(hostdataHex))
	}
	if _, err := hex.DecodeString(hostdataHex); err != nil {
		return nil, errors.New("skr: hostdata is not hex")
	}
	p := Policy{Version: "1.0.0", AnyOf: []PolicyRule{{
		Authority: a,
		AllOf: []PolicyRule{
			{Claim: ClaimAttestationType, Equals: "sevsnpvm"},
			{Claim: ClaimComplianceStatus, Equals: CompliantUVM},
			{Claim: ClaimHostData, Equals: hostdataHex},
			{Claim: ClaimIsDebuggable, Equals: "false"},
			{Claim: ClaimVMPL, Equals: "0"},
		},
	}}}
	return json.MarshalIndent(p, "", "  ")
}

// ErrNoPolicy: import-key to a vault other than a loopback mock needs an
// explicit policy or HOST_DATA; no default HOST_DATA fits a real guest.
var ErrNoPolicy = errors.New("skr: a release policy or the HOST_DATA to admit is required for a vault that is not a loopback mock")

// ParsePolicy checks that data is a release policy with at least one rule.
func ParsePolicy(data []byte) (*Policy, error) {
	var p Policy
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, fmt.Errorf("skr: release policy: %w", err)
	}
	if p.Version == "" || (len(p.AnyOf) == 0 && len(p.AllOf) == 0) {
		return nil, errors.New("skr: release policy: want a version and anyOf or allOf rules")
	}
	return &p, nil
}

// ImportPolicy chooses the release policy import-key sets on vault:
// policyJSON if given (checked to be a policy), else PolicyForHostData for
// hostdataHex. With neither, a loopback vault (mock-kms) gets the policy
// for the HOST_DATA the fake attestation provider reports here, and any
// other vault ErrNoPolicy. Giving both is an error. The caller should show
// the returned policy: it decides who gets the key.
func ImportPolicy(vault, authority string, policyJSON []byte, hostdataHex string) ([]byte, error) {
	hostdataHex = strings.TrimSpace(hostdataHex)
	switch {
	case len(policyJSON) > 0 && hostdataHex != "":
		return nil, errors.New("skr: give a release policy or a HOST_DATA, not both")
	case len(policyJSON) > 0:
		if _, err := ParsePolicy(policyJSON); err != nil {
			return nil, err
		}
		return policyJSON, nil
	case hostdataHex != "":
		return PolicyForHostData(authority, hostdataHex)
	}
	if !IsLoopbackURL(vault) {
		return nil, ErrNoPolicy
	}
	fake, err := attest.NewFake(attest.FakeOptions{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, err
	}
	h := fake.HostData()
	return PolicyForHostData(authority, hex.EncodeToString(h[:]))
}
