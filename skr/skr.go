package skr

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"strings"

	"github.com/chestfs/chestfs/attest"
	"github.com/chestfs/chestfs/internal/secret"
)

// RuntimeKeyID is the kid of the ephemeral key in the runtime data; Key
// Vault wraps the released key to the runtime key with this kid.
const RuntimeKeyID = "TpmEphemeralEncryptionKey"

// RuntimeKey is a public JWK in the runtime data.
type RuntimeKey struct {
	E      string   `json:"e"`
	KeyOps []string `json:"key_ops"`
	KID    string   `json:"kid"`
	KTY    string   `json:"kty"`
	N      string   `json:"n"`
}

// RuntimeData is the JSON whose sha256 goes into REPORT_DATA.
type RuntimeData struct {
	Keys []RuntimeKey `json:"keys"`
}

// NewRuntimeData encodes pub as the runtime data Azure Attestation echoes
// in the token's x-ms-runtime claim.
func NewRuntimeData(pub *rsa.PublicKey) ([]byte, error) {
	k := RuntimeKey{
		E:      base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes()),
		KeyOps: []string{"encrypt"},
		KID:    RuntimeKeyID,
		KTY:    "RSA",
		N:      base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
	}
	return json.Marshal(RuntimeData{Keys: []RuntimeKey{k}})
}

// RuntimeKeys returns the RSA keys of a token's x-ms-runtime claim.
func RuntimeKeys(claims map[string]any) ([]*rsa.PublicKey, map[string]*rsa.PublicKey) {
	rt, _ := claims["x-ms-runtime"].(map[string]any)
	keys, _ := rt["keys"].([]any)
	var list []*rsa.PublicKey
	byKID := map[string]*rsa.PublicKey{}
	for _, k := range keys {
		m, _ := k.(map[string]any)
		if m == nil || m["kty"] != "RSA" {
			continue
		}
		ns, _ := m["n"].(string)
		es, _ := m["e"].(string)
		n, err1 := decodeB64(ns)
		e, err2 := decodeB64(es)
		if err1 != nil || err2 != nil || len(n) == 0 || len(e) == 0 || len(e) > 4 {
			continue
		}
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		list = append(list, pub)
		if kid, _ := m["kid"].(string); kid != "" {
			byKID[kid] = pub
		}
	}
	return list, byKID
}

// Release is ReleaseSecret returning the key on the Go heap; the caller
// should clear it after use. Prefer ReleaseSecret.
func Release(ctx context.Context, blob *KeyBlob, provider attest.Provider, opts Options) ([]byte, error) {
	b, err := ReleaseSecret(ctx, blob, provider, opts)
	if err != nil {
		return nil, err
	}
	defer b.Destroy()
	return bytes.Clone(b.Bytes()), nil
}

// ReleaseSecret performs secure key release for blob: a fresh RSA-2048 key
// pair, evidence bound to it from provider, an Azure Attestation token, the
// Key Vault release, and the unwrap. It returns the filesystem key in
// secret memory (the caller Destroys it): an oct key's bytes, or for
// RSA-HSM keys the HKDF derivation (blob.KeyDerivation). The ephemeral key
// and the released material are wiped on the way (see wipeRSA for what
// cannot be).
func ReleaseSecret(ctx context.Context, blob *KeyBlob, provider attest.Provider, opts Options) (*secret.Buffer, error) {
	if err := blob.Validate(); err != nil {
		return nil, err
	}
	opts = opts.fromBlob(blob)
	if blob.KTY == "RSA-HSM" || blob.KTY == "RSA" {
		if blob.KeyDerivation == nil || strings.TrimSpace(blob.KeyDerivation.Salt) == "" {
			// As the sidecar: HKDF with an empty salt. Said loudly, since a
			// key imported with a salt then derives another key.
			opts.log().Warn("RSA-HSM key without key_derivation.salt: deriving with an empty salt, as the sidecar does", "kid", blob.KID)
		}
	}
	if snp, ok := provider.(*attest.SNP); ok && blob.CertCache != nil {
		if err := blob.CertCache.Validate(); err != nil {
			return nil, err
		}
		provider = snp.WithCertCache(blob.CertCache)
	}
	if gp, ok := provider.(attest.GuestProvider); ok {
		return releaseGuest(ctx, blob, gp, opts) // vTPM guests: guest.go
	}
	opts, done, err := opts.withClient()
	if err != nil {
		return nil, err
	}
	defer done()
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	defer wipeRSA(priv)
	runtime, err := NewRuntimeData(&priv.PublicKey)
	if err != nil {
		return nil, err
	}
	ev, err := provider.Evidence(ctx, runtime)
	if err != nil {
		return nil, fmt.Errorf("skr: evidence: %w", err)
	}
	token, claims, err := Attest(ctx, blob.Authority.Endpoint, ev, opts)
	if err != nil {
		return nil, err
	}
	list, _ := RuntimeKeys(claims)
	found := false
	for _, k := range list {
		if k.Equal(&priv.PublicKey) {
			found = true
		}
	}
	if !found {
		return nil, fmt.Errorf("skr: attestation token: %w: x-ms-runtime does not carry this release's key", ErrBadToken)
	}
	rel, err := releaseKey(ctx, blob.AKV.Endpoint, blob.KeyName(), blob.KeyVersion(), token, priv, opts, blob.AKV.BearerToken)
	if err != nil {
		return nil, err
	}
	opts.log().Info("key released", "kid", rel.KID, "kty", rel.KTY, "enc", rel.Enc)
	return finalKey(blob, rel)
}

// fromBlob fills the options the key blob carries and o leaves unset: the
// managed identity and the attestation API version.
func (o Options) fromBlob(blob *KeyBlob) Options {
	if o.ClientID == "" && blob.Identity != nil {
		o.ClientID = strings.TrimSpace(blob.Identity.ClientID)
	}
	if o.AttestAPIVersion == "" {
		o.AttestAPIVersion = strings.TrimPrefix(strings.TrimSpace(blob.Authority.APIVersion), "api-version=")
	}
	return o
}

// finalKey turns released material into the filesystem key, in secret
// memory; rel.Key is wiped.
func finalKey(blob *KeyBlob, rel *ReleasedKey) (*secret.Buffer, error) {
	rsaKind := rel.KTY == "RSA" || rel.KTY == "RSA-HSM"
	switch rel.KTY {
	case "oct", "oct-HSM", "RSA", "RSA-HSM":
	default:
		clear(rel.Key)
		return nil, fmt.Errorf("skr: released key type %q is not supported", rel.KTY)
	}
	if blob.KTY != "" && (blob.KTY == "RSA" || blob.KTY == "RSA-HSM") != rsaKind {
		clear(rel.Key)
		return nil, fmt.Errorf("skr: key blob says kty %s but the vault released a %s key", blob.KTY, rel.KTY)
	}
	if !rsaKind {
		if len(rel.Key) == 0 {
			return nil, errNoKey
		}
		return secret.FromBytes(rel.Key)
	}
	defer clear(rel.Key)
	return deriveSecret(rel.Key, blob.KeyDerivation)
}
