package skr

import (
	"bytes"
	"crypto"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"strings"

	"github.com/chestfs/chestfs/internal/secret"
	"github.com/chestfs/chestfs/skr/keywrap"
)

// Wrapping algorithms Key Vault uses for released keys.
const (
	EncCKMRSAAESKeyWrap = "CKM_RSA_AES_KEY_WRAP" // RSA-OAEP-SHA1 + RFC 5649
	EncRSAAESKeyWrap256 = "RSA_AES_KEY_WRAP_256" // RSA-OAEP-SHA256 + RFC 5649
	EncRSAAESKeyWrap384 = "RSA_AES_KEY_WRAP_384" // RSA-OAEP-SHA384 + RFC 5649
)

// ErrUnwrap means the released key could not be decrypted with the ephemeral key.
var ErrUnwrap = errors.New("skr: cannot unwrap the released key")

// maxKeyHSM bounds the key_hsm field.
const maxKeyHSM = 256 << 10

func oaepCryptoHash(enc string) (crypto.Hash, error) {
	switch enc {
	case EncCKMRSAAESKeyWrap:
		return crypto.SHA1, nil
	case EncRSAAESKeyWrap256:
		return crypto.SHA256, nil
	case EncRSAAESKeyWrap384:
		return crypto.SHA384, nil
	}
	return 0, fmt.Errorf("skr: unsupported key wrapping algorithm %q", enc)
}

func oaepHash(enc string) (func() hash.Hash, error) {
	switch enc {
	case EncCKMRSAAESKeyWrap:
		return sha1.New, nil
	case EncRSAAESKeyWrap256:
		return sha256.New, nil
	case EncRSAAESKeyWrap384:
		return sha512.New384, nil
	}
	return nil, fmt.Errorf("skr: unsupported key wrapping algorithm %q", enc)
}

// keyHSM is the decoded key_hsm field of a released key.
type keyHSM struct {
	SchemaVersion string `json:"schema_version"`
	Header        struct {
		KID string `json:"kid"`
		Alg string `json:"alg"`
		Enc string `json:"enc"`
	} `json:"header"`
	Ciphertext string `json:"ciphertext"`
}

// decodeB64 accepts base64url or standard base64, with or without padding.
func decodeB64(s string) ([]byte, error) {
	s = strings.TrimRight(s, "=")
	if strings.ContainsAny(s, "+/") {
		return base64.RawStdEncoding.DecodeString(s)
	}
	return base64.RawURLEncoding.DecodeString(s)
}

// WrapKeyHSM produces a key_hsm value as Key Vault does: RSA-OAEP of a fresh
// AES-256 KEK under pub, then the RFC 5649 wrap of key. (mockkms uses it.)
func WrapKeyHSM(kid, enc string, pub *rsa.PublicKey, key []byte) (string, error) {
	h, err := oaepHash(enc)
	if err != nil {
		return "", err
	}
	kek := make([]byte, 32)
	if _, err := rand.Read(kek); err != nil {
		return "", err
	}
	defer clear(kek)
	head, err := rsa.EncryptOAEP(h(), rand.Reader, pub, kek, nil)
	if err != nil {
		return "", fmt.Errorf("skr: wrap: %w", err)
	}
	tail, err := keywrap.Wrap(kek, key)
	if err != nil {
		return "", err
	}
	var k keyHSM
	k.SchemaVersion = "1.0"
	k.Header.KID, k.Header.Alg, k.Header.Enc = kid, "dir", enc
	k.Ciphertext = base64.RawURLEncoding.EncodeToString(append(head, tail...))
	j, err := json.Marshal(k)
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(j), nil
}

// UnwrapKeyHSM decrypts a key_hsm value with the ephemeral private key and
// returns the wrapping algorithm and the key bytes.
func UnwrapKeyHSM(value string, priv *rsa.PrivateKey) (string, []byte, error) {
	return unwrapKeyHSM(value, priv)
}

// unwrapKeyHSM is UnwrapKeyHSM with any RSA decrypter: the ephemeral key
// in memory, or one held by a TPM (vTPM guests).
func unwrapKeyHSM(value string, priv crypto.Decrypter) (string, []byte, error) {
	if len(value) > maxKeyHSM {
		return "", nil, fmt.Errorf("skr: key_hsm larger than %d bytes", maxKeyHSM)
	}
	raw, err := decodeB64(value)
	if err != nil {
		return "", nil, fmt.Errorf("skr: key_hsm: %w", err)
	}
	var k keyHSM
	if err := json.Unmarshal(raw, &k); err != nil {
		return "", nil, fmt.Errorf("skr: key_hsm: %w", err)
	}
	h, err := oaepCryptoHash(k.Header.Enc)
	if err != nil {
		return "", nil, err
	}
	ct, err := decodeB64(k.Ciphertext)
	if err != nil {
		return "", nil, fmt.Errorf("skr: key_hsm ciphertext: %w", err)
	}
	pub, ok := priv.Public().(*rsa.PublicKey)
	if !ok {
		return "", nil, errors.New("skr: unwrap key is not RSA")
	}
	n := pub.Size()
	if len(ct) < n+16 {
		return "", nil, fmt.Errorf("skr: key_hsm ciphertext is %d bytes, shorter than the %d-byte RSA block plus a wrapped key", len(ct), n)
	}
	kek, err := priv.Decrypt(nil, ct[:n], &rsa.OAEPOptions{Hash: h})
	if err != nil {
		return "", nil, fmt.Errorf("%w: RSA-OAEP (%s): %v", ErrUnwrap, k.Header.Enc, err)
	}
	defer clear(kek)
	key, err := keywrap.Unwrap(kek, ct[n:])
	if err != nil {
		return "", nil, fmt.Errorf("%w: %v", ErrUnwrap, err)
	}
	return k.Header.Enc, key, nil
}

// DefaultDerivationLabel is the HKDF info the sidecar uses without a label.
const DefaultDerivationLabel = "Symmetric Encryption Key"

func decodeSalt(s string) ([]byte, error) {
	b, err := hex.DecodeString(strings.TrimPrefix(strings.TrimSpace(s), "0x"))
	if err != nil {
		return nil, errors.New("salt is not hex")
	}
	return b, nil
}

// DeriveKey turns a released RSA-HSM key (PKCS#8 DER) into the 32-byte
// filesystem key: HKDF-SHA256 with IKM = the private exponent D
// (big-endian), salt = hex-decoded kd.Salt, info = kd.Label or
// DefaultDerivationLabel. A missing salt (or kd nil) derives with an empty
// salt, as the sidecar does.
func DeriveKey(pkcs8 []byte, kd *KeyDerivation) ([]byte, error) {
	b, err := deriveSecret(pkcs8, kd)
	if err != nil {
		return nil, err
	}
	defer b.Destroy()
	return bytes.Clone(b.Bytes()), nil
}

// deriveSecret is DeriveKey into secret memory; the parsed RSA key is wiped.
func deriveSecret(pkcs8 []byte, kd *KeyDerivation) (*secret.Buffer, error) {
	if kd == nil {
		kd = &KeyDerivation{}
	}
	salt, err := decodeSalt(kd.Salt)
	if err != nil {
		return nil, fmt.Errorf("skr: key_derivation: %w", err)
	}
	k, err := x509.ParsePKCS8PrivateKey(pkcs8)
	if err != nil {
		// Some HSMs release PKCS#1; accept it too.
		k1, err1 := x509.ParsePKCS1PrivateKey(pkcs8)
		if err1 != nil {
			return nil, fmt.Errorf("skr: released RSA key: %w", err)
		}
		k = k1
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("skr: released key is %T, want RSA", k)
	}
	defer wipeRSA(rk)
	// D big-endian, minimal length (as D.Bytes()), written into secret memory.
	ikm, err := secret.New((rk.D.BitLen() + 7) / 8)
	if err != nil {
		return nil, err
	}
	defer ikm.Destroy()
	rk.D.FillBytes(ikm.Bytes())
	info := kd.Label
	if info == "" {
		info = DefaultDerivationLabel
	}
	out, err := hkdf.Key(crypto.SHA256.New, ikm.Bytes(), salt, info, 32)
	if err != nil {
		return nil, err
	}
	return secret.FromBytes(out)
}
