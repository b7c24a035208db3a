package mockkms

import (
	"crypto/aes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash"
)

// Key Vault's wrapping algorithms for released keys: RSA-OAEP (hash and
// MGF1 as named) of a fresh AES-256 key, then that key wraps the material
// with AES Key Wrap with Padding (RFC 5649).
var wrapHashes = map[string]func() hash.Hash{
	"CKM_RSA_AES_KEY_WRAP": sha1.New,
	"RSA_AES_KEY_WRAP_256": sha256.New,
	"RSA_AES_KEY_WRAP_384": sha512.New384,
}

// aesKWP wraps plain under kek per RFC 5649: the 8-byte alternative IV
// (A65959A6 || 32-bit length) in front of the zero-padded key, then either
// one AES block (for at most 8 bytes) or the RFC 3394 wrapping process.
// Written for the mock apart from chestfs's skr/keywrap, and checked against
// RFC 5649's own test vectors.
func aesKWP(kek, plain []byte) ([]byte, error) {
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	if len(plain) == 0 {
		return nil, fmt.Errorf("nothing to wrap")
	}
	padded := make([]byte, (len(plain)+7)/8*8)
	copy(padded, plain)
	iv := uint64(0xA65959A6)<<32 | uint64(len(plain))
	if len(padded) == 8 {
		out := make([]byte, 16)
		binary.BigEndian.PutUint64(out, iv)
		copy(out[8:], padded)
		block.Encrypt(out, out)
		return out, nil
	}
	n := len(padded) / 8
	r := make([][8]byte, n)
	for i := range r {
		copy(r[i][:], padded[8*i:])
	}
	a := iv
	var b [16]byte
	for j := 0; j <= 5; j++ {
		for i := 0; i < n; i++ {
			binary.BigEndian.PutUint64(b[:8], a)
			copy(b[8:], r[i][:])
			block.Encrypt(b[:], b[:])
			a = binary.BigEndian.Uint64(b[:8]) ^ uint64(n*j+i+1)
			copy(r[i][:], b[8:])
		}
	}
	out := binary.BigEndian.AppendUint64(nil, a)
	for i := range r {
		out = append(out, r[i][:]...)
	}
	return out, nil
}

// keyHSM builds a release's key_hsm for the runtime key pub: base64url of
// {"schema_version":"1.0","header":{"kid","alg":"dir","enc"},"ciphertext"}
// where ciphertext = RSA-OAEP(KEK) || RFC 5649 wrap of material under KEK.
func keyHSM(kid, enc string, pub *rsa.PublicKey, material []byte) (string, error) {
	h, ok := wrapHashes[enc]
	if !ok {
		return "", fmt.Errorf("unsupported enc %q (want CKM_RSA_AES_KEY_WRAP, RSA_AES_KEY_WRAP_256 or RSA_AES_KEY_WRAP_384)", enc)
	}
	kek := make([]byte, 32)
	if _, err := rand.Read(kek); err != nil {
		return "", err
	}
	head, err := rsa.EncryptOAEP(h(), rand.Reader, pub, kek, nil)
	if err != nil {
		return "", err
	}
	tail, err := aesKWP(kek, material)
	if err != nil {
		return "", err
	}
	var blob keyHSMBlob
	blob.SchemaVersion = "1.0"
	blob.Header.KID, blob.Header.Alg, blob.Header.Enc = kid, "dir", enc
	blob.Ciphertext = base64.RawURLEncoding.EncodeToString(append(head, tail...))
	j, err := json.Marshal(blob)
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(j), nil
}
