package skr

import (
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"

	"github.com/chestfs/chestfs/internal/secret"
)

// wipeRSA zeroes the reachable private parts of k: D, the primes and the
// CRT values. crypto/rsa also keeps an internal copy of the key (its FIPS
// form, built by Precompute and by parsing) that no API reaches; that copy
// and math/big's temporaries are left to the garbage collector.
func wipeRSA(k *rsa.PrivateKey) {
	if k == nil {
		return
	}
	secret.WipeBigInt(k.D)
	for _, p := range k.Primes {
		secret.WipeBigInt(p)
	}
	secret.WipeBigInt(k.Precomputed.Dp)
	secret.WipeBigInt(k.Precomputed.Dq)
	secret.WipeBigInt(k.Precomputed.Qinv)
	// CRTValues exist only for multi-prime keys, which are never made here.
}

// octImportBody is the PUT /keys/{name} body for a symmetric key, built in
// secret memory: json.Marshal would leave the key's base64 in its pooled
// buffers and in strings, which cannot be wiped.
func octImportBody(key, policy []byte) (*secret.Buffer, error) {
	req := ImportRequest{HSM: true, Attributes: map[string]any{"exportable": true}}
	req.ReleasePolicy.ContentType = "application/json; charset=utf-8"
	req.ReleasePolicy.Data = base64.RawURLEncoding.EncodeToString(policy)
	rest, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	// Key is the first field: `{"key":null,` is replaced by the JWK.
	const nullKey = `{"key":null,`
	if len(rest) < len(nullKey) || string(rest[:len(nullKey)]) != nullKey {
		return nil, errors.New("skr: import request: unexpected JSON layout")
	}
	rest = rest[len(nullKey):]
	const head = `{"key":{"kty":"oct-HSM","key_ops":["encrypt","decrypt","wrapKey","unwrapKey"],"k":"`
	const mid = `"},`
	enc := base64.RawURLEncoding
	body, err := secret.New(len(head) + enc.EncodedLen(len(key)) + len(mid) + len(rest))
	if err != nil {
		return nil, err
	}
	b := body.Bytes()
	n := copy(b, head)
	enc.Encode(b[n:], key)
	n += enc.EncodedLen(len(key))
	n += copy(b[n:], mid)
	copy(b[n:], rest)
	return body, nil
}
