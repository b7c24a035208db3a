package skr

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"testing"
)

func TestWipeRSA(t *testing.T) {
	k, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	d := k.D.Bits()
	wipeRSA(k)
	if k.D.Sign() != 0 || k.Primes[0].Sign() != 0 || k.Primes[1].Sign() != 0 || k.Precomputed.Dp.Sign() != 0 ||
		k.Precomputed.Dq.Sign() != 0 || k.Precomputed.Qinv.Sign() != 0 {
		t.Fatal("private parts left")
	}
	for _, w := range d {
		if w != 0 {
			t.Fatal("D's words were not zeroed in place")
		}
	}
	if k.N.Sign() == 0 {
		t.Error("the public modulus was wiped too")
	}
}

// TestOctImportBody: the hand-built body is the JSON ImportJWK would send.
func TestOctImportBody(t *testing.T) {
	key := bytes.Repeat([]byte{0xfe, 0x01}, 16)
	policy := []byte(`{"version":"1.0.0","anyOf":[{"authority":"https://a","allOf":[{"claim":"c","equals":"v"}]}]}`)
	b, err := octImportBody(key, policy)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Destroy()
	var got ImportRequest
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatalf("%v: %s", err, b.Bytes())
	}
	k, _ := got.Key["k"].(string)
	raw, _ := base64.RawURLEncoding.DecodeString(k)
	pol, _ := base64.RawURLEncoding.DecodeString(got.ReleasePolicy.Data)
	if !bytes.Equal(raw, key) || got.Key["kty"] != "oct-HSM" || !got.HSM || got.Attributes["exportable"] != true ||
		!bytes.Equal(pol, policy) || got.ReleasePolicy.ContentType == "" {
		t.Fatalf("body %s", b.Bytes())
	}
}
