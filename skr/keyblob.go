// Package skr releases a key from Azure Key Vault or Managed HSM through
// attestation-gated Secure Key Release: evidence (package attest) goes to
// Azure Attestation, whose token goes to Key Vault, which wraps the key to
// an ephemeral RSA key that exists only in this process's memory.
package skr

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"

	"github.com/chestfs/chestfs/attest"
)

// maxKeyBlob bounds the key blob JSON accepted.
const maxKeyBlob = 64 << 10

// KeyBlob is the confidential sidecar's key description (the "key" object of
// its azure_filesystems entries), plus an optional key_derivation for RSA-HSM keys.
type KeyBlob struct {
	KID           string         `json:"kid"`
	KTY           string         `json:"kty,omitempty"`
	KeyOps        []string       `json:"key_ops,omitempty"`
	Authority     Endpoint       `json:"authority"`
	AKV           Endpoint       `json:"akv"`
	KeyDerivation *KeyDerivation `json:"key_derivation,omitempty"`
	// VerityRootHash (hex) pins the image to one dm-verity tree, a chestfs
	// extension the sidecar ignores. Where the key blob is part of an
	// attested configuration, it pins one exact image version.
	VerityRootHash string `json:"verity_root_hash,omitempty"`
	// Identity and CertCache are the sidecar's azure_info (chestfs carries
	// them in the key blob so that each release honours them): the
	// user-assigned managed identity for the Key Vault token, and the VCEK
	// certificate fallback for the SEV-SNP provider.
	Identity  *Identity         `json:"identity,omitempty"`
	CertCache *attest.CertCache `json:"certcache,omitempty"`
}

// Identity is the sidecar's azure_info.identity: a user-assigned managed
// identity by client ID (empty: the system-assigned one).
type Identity struct {
	ClientID string `json:"client_id"`
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

// placeholderRE matches the "<...>" placeholders of Microsoft's example files.
var placeholderRE = regexp.MustCompile(`^\s*<[^<>]*>\s*$`)

// placeholder names the first field that still holds a "<...>" placeholder
// from Microsoft's example configuration.
func (b *KeyBlob) placeholder() error {
	fields := []struct{ name, v string }{{"kid", b.KID}, {"kty", b.KTY}, {"authority.endpoint", b.Authority.Endpoint},
		{"akv.endpoint", b.AKV.Endpoint}, {"akv.bearer_token", b.AKV.BearerToken}}
	if b.KeyDerivation != nil {
		fields = append(fields, struct{ name, v string }{"key_derivation.salt", b.KeyDerivation.Salt},
			struct{ name, v string }{"key_derivation.label", b.KeyDerivation.Label})
	}
	for _, f := range fields {
		if placeholderRE.MatchString(f.v) {
			return fmt.Errorf("skr: key blob: %s is still the placeholder %s from Microsoft's example: fill it in", f.name, strings.TrimSpace(f.v))
		}
	}
	return nil
}

// Validate checks the fields ParseKeyBlob checks.
func (b *KeyBlob) Validate() error {
	if err := b.placeholder(); err != nil {
		return err
	}
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
	return "https://" + hostPort(u.Host), nil
}

// hostPort lowercases host[:port] and drops the default https port, so
// that "v.vault.azure.net:443" and "v.vault.azure.net" compare equal (Key
// Vault's kids never carry the port).
func hostPort(h string) string {
	h = strings.ToLower(h)
	if host, port, err := net.SplitHostPort(h); err == nil && port == "443" {
		if strings.Contains(host, ":") {
			return "[" + host + "]"
		}
		return host
	}
	return h
}
