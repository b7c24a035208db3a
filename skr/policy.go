package skr

import (
	"encoding/json"
	"fmt"
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

// PolicyForHostData is the release policy that admits SEV-SNP containers
// whose HOST_DATA (sha256 of the UVM security policy) is hostdataHex, as
// attested by authority. With the fake provider, hostdataHex is
// hex(attest.FakeHostData(policy)).
func PolicyForHostData(authority, hostdataHex string) ([]byte, error) {
	a, err := NormalizeEndpoint(authority)
	if err != nil {
		return nil, fmt.Errorf("skr: policy authority: %w", err)
	}
	if len(hostdataHex) != 64 {
		return nil, fmt.Errorf("skr: hostdata must be 64 hex digits, got %d characters", len(hostdataHex))
	}
	if _, err := decodeSalt(hostdataHex); err != nil {
		return nil, fmt.Errorf("skr: hostdata: %w", err)
	}
	p := Policy{Version: "1.0.0", AnyOf: []PolicyRule{{
		Authority: a,
		AllOf: []PolicyRule{
			{Claim: "x-ms-attestation-type", Equals: "sevsnpvm"},
			{Claim: "x-ms-sevsnpvm-hostdata", Equals: hostdataHex},
			{Claim: "x-ms-sevsnpvm-is-debuggable", Equals: "false"},
		},
	}}}
	return json.MarshalIndent(p, "", "  ")
}
