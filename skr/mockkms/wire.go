package mockkms

// The mock's own view of the wire formats, written from Azure's REST
// documentation (Attestation "Attest Sev Snp Vm", Key Vault "Import Key" and
// "Release", the secure key release policy grammar) and not shared with
// the chestfs client, so that a client bug in one of them is not mirrored
// here.

import (
	"encoding/base64"
	"strings"
)

// kvImport is the body of PUT /keys/{name}: a JWK, hsm, attributes and the
// release policy (data: base64url of the policy JSON).
type kvImport struct {
	Key        map[string]any `json:"key"`
	HSM        *bool          `json:"hsm"`
	Attributes struct {
		Exportable *bool `json:"exportable"`
		Enabled    *bool `json:"enabled"`
	} `json:"attributes"`
	ReleasePolicy *struct {
		ContentType string `json:"contentType"`
		Data        string `json:"data"`
		Immutable   bool   `json:"immutable"`
	} `json:"release_policy"`
}

// kvRelease is the body of POST /keys/{name}[/{version}]/release.
type kvRelease struct {
	Target string `json:"target"`
	Nonce  string `json:"nonce"`
	Enc    string `json:"enc"`
}

// maaAttest is the body of POST /attest/SevSnpVm.
type maaAttest struct {
	Report      string       `json:"report"`
	RuntimeData *maaDataItem `json:"runtimeData"`
	InitTime    *maaDataItem `json:"initTimeData"`
	Nonce       any          `json:"nonce"` // a string in the 2022 API, a number from the sidecar
	DraftPolicy string       `json:"draftPolicyForAttestation"`
}

type maaDataItem struct {
	Data     string `json:"data"`
	DataType string `json:"dataType"`
}

// maaSNPReport is the JSON inside maaAttest.Report.
type maaSNPReport struct {
	SnpReport     string `json:"SnpReport"`
	VcekCertChain string `json:"VcekCertChain"`
	Endorsements  string `json:"Endorsements"`
}

// maaEndorsements is the JSON inside maaSNPReport.Endorsements.
type maaEndorsements struct {
	Uvm []string `json:"Uvm"`
}

// releasePolicy is Key Vault's release policy grammar, version 1.0.0.
type releasePolicy struct {
	Version string        `json:"version"`
	AnyOf   []releaseRule `json:"anyOf"`
	AllOf   []releaseRule `json:"allOf"`
}

type releaseRule struct {
	Authority string        `json:"authority"`
	AnyOf     []releaseRule `json:"anyOf"`
	AllOf     []releaseRule `json:"allOf"`
	Claim     string        `json:"claim"`
	Equals    any           `json:"equals"`
}

// releaseAnswer is the signed payload of a release: the request echoed and
// the key, whose key_hsm carries the wrapped material.
type releaseAnswer struct {
	Request struct {
		APIVersion string `json:"api-version"`
		Enc        string `json:"enc"`
		KID        string `json:"kid"`
	} `json:"request"`
	Response struct {
		Key struct {
			Key struct {
				KID    string   `json:"kid"`
				KTY    string   `json:"kty"`
				KeyOps []string `json:"key_ops"`
				KeyHSM string   `json:"key_hsm"`
			} `json:"key"`
			Attributes    map[string]any `json:"attributes"`
			ReleasePolicy map[string]any `json:"release_policy"`
		} `json:"key"`
	} `json:"response"`
}

// keyHSMBlob is the JSON inside key_hsm.
type keyHSMBlob struct {
	SchemaVersion string `json:"schema_version"`
	Header        struct {
		KID string `json:"kid"`
		Alg string `json:"alg"`
		Enc string `json:"enc"`
	} `json:"header"`
	Ciphertext string `json:"ciphertext"`
}

// unb64 takes base64 in any of the forms clients send: URL or standard
// alphabet, padded or not (the sidecar pads its attestation request).
func unb64(s string) ([]byte, error) {
	s = strings.TrimRight(strings.TrimSpace(s), "=")
	if strings.ContainsAny(s, "+/") {
		return base64.RawStdEncoding.DecodeString(s)
	}
	return base64.RawURLEncoding.DecodeString(s)
}
