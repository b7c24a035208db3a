// Package skr releases a key from Azure Key Vault or Managed HSM through
// attestation-gated Secure Key Release: evidence (package attest) goes to
// Azure Attestation, whose token goes to Key Vault, which wraps the key to
// an ephemeral RSA key that exists only in this process's memory.
package skr

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
)

// maxKeyBlob bounds the key blob JSON accepted.
const maxKeyBlob = 64 << 10

// KeyBlob is the confidential sidecar's key description (the "key" object of
// its azure_filesystems entries), plus an optional key_derivation for RSA-HSM keys.
type KeyBlob struct {
	KID           string         `json:"kid"`
	KTY           string         `json:"kty,omitempty"`
	Authority     Endpoint       `json:"authority"`
	AKV           Endpoint       `json:"akv"`
	KeyDerivation *KeyDerivation `json:"key_derivation,omitempty"`
	// VerityRootHash (hex) pins the image to one dm-verity tree, a chestfs
	// extension the sidecar ignores. Where the key blob is part of an
	// attested configuration, it pins one exact image version.
	VerityRootHash string `json:"verity_root_hash,omitempty"`
}

// Endpoint is an Azure Attestation or Key Vault endpoint: a host[:port] or an
// https URL. BearerToken (akv only) is the sidecar's way to pass a token.
type Endpoint struct {
	Endpoint    string `json:"endpoint"`
	APIVersion  string `json:"api_version,omitempty"`
	BearerToken string `json:"bearer_token,omitempty"`
	TEEType     string `json:"tee_type,omitempty"`
}

// KeyDerivation parameters for RSA-HSM keys (HKDF-SHA256).
type KeyDerivation struct {
	Salt  string `json:"salt"`  // hex
	Label string `json:"label"` // HKDF info; empty means "Symmetric Encryption Key"
}

var keyNameRE = regexp.MustCompile(`^[0-9A-Za-z-]{1,127}$`)

// ParseKeyBlob decodes and checks a key blob.
func ParseKeyBlob(data []byte) (*KeyBlob, error) {
	if len(data) > maxKeyBlob {
		return nil, fmt.Errorf("skr: key blob larger than %d bytes", maxKeyBlob)
	}
	var b KeyBlob
	if err := json.Unmarshal(data, &b); err != nil {
		return nil, fmt.Errorf("skr: key blob: %w", err)
	}
	if err := b.Validate(); err != nil {
		return nil, err
	}
	return &b, nil
}

// Validate checks the fields ParseKeyBlob checks.
func (b *KeyBlob) Validate() error {
	name, version, _ := strings.Cut(b.KID, "/")
	if !keyNameRE.MatchString(name) || (version != "" && !keyNameRE.MatchString(version)) {
		return fmt.Errorf("skr: key blob: kid %q is not a Key Vault key name (optionally name/version)", b.KID)
	}
	switch b.KTY {
	case "", "oct", "oct-HSM", "RSA", "RSA-HSM":
	default:
		return fmt.Errorf("skr: key blob: unsupported kty %q (want oct-HSM or RSA-HSM)", b.KTY)
	}
	if _, err := NormalizeEndpoint(b.Authority.Endpoint); err != nil {
		return fmt.Errorf("skr: key blob: authority: %w", err)
	}
	if _, err := NormalizeEndpoint(b.AKV.Endpoint); err != nil {
		return fmt.Errorf("skr: key blob: akv: %w", err)
	}
	if b.KeyDerivation != nil && b.KeyDerivation.Salt != "" {
		if _, err := decodeSalt(b.KeyDerivation.Salt); err != nil {
			return fmt.Errorf("skr: key blob: key_derivation: %w", err)
		}
	}
	return nil
}

// KeyName and KeyVersion split KID.
func (b *KeyBlob) KeyName() string    { n, _, _ := strings.Cut(b.KID, "/"); return n }
func (b *KeyBlob) KeyVersion() string { _, v, _ := strings.Cut(b.KID, "/"); return v }

// NormalizeEndpoint turns "host[:port]" or "https://host[:port][/]" into
// "https://host[:port]". Plain http is refused: tokens and keys travel here.
func NormalizeEndpoint(ep string) (string, error) {
	ep = strings.TrimSpace(ep)
	if ep == "" {
		return "", errors.New("endpoint is empty")
	}
	if !strings.Contains(ep, "://") {
		ep = "https://" + ep
	}
	u, err := url.Parse(ep)
	if err != nil {
		return "", fmt.Errorf("endpoint %q: %w", ep, err)
	}
	if u.Scheme != "https" {
		return "", fmt.Errorf("endpoint %q: scheme must be https", ep)
	}
	if u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || strings.Trim(u.Path, "/") != "" {
		return "", fmt.Errorf("endpoint %q: want https://host[:port]", ep)
	}
	return "https://" + strings.ToLower(u.Host), nil
}
