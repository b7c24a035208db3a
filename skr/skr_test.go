package skr

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	testKeyOnce sync.Once
	testKey     *rsa.PrivateKey
)

func runtimeKey(t testing.TB) *rsa.PrivateKey {
	testKeyOnce.Do(func() {
		var err error
		testKey, err = rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
	})
	return testKey
}

func TestUnwrapRoundTrip(t *testing.T) {
	priv := runtimeKey(t)
	secret := []byte("0123456789abcdef0123456789abcdef")
	for _, enc := range []string{EncCKMRSAAESKeyWrap, EncRSAAESKeyWrap256, EncRSAAESKeyWrap384} {
		v, err := WrapKeyHSM(RuntimeKeyID, enc, &priv.PublicKey, secret)
		if err != nil {
			t.Fatal(enc, err)
		}
		gotEnc, got, err := UnwrapKeyHSM(v, priv)
		if err != nil || gotEnc != enc || !bytes.Equal(got, secret) {
			t.Fatalf("%s: got %q %x %v", enc, gotEnc, got, err)
		}
		// Padded and standard-alphabet encodings decode too.
		if _, _, err := UnwrapKeyHSM(v+"==", priv); err != nil {
			t.Fatalf("%s: padded: %v", enc, err)
		}
	}
	// Decrypting the RSA block with the wrong OAEP hash must fail: relabel enc.
	v, _ := WrapKeyHSM(RuntimeKeyID, EncRSAAESKeyWrap256, &priv.PublicKey, secret)
	raw, _ := decodeB64(v)
	relabeled := strings.Replace(string(raw), EncRSAAESKeyWrap256, EncCKMRSAAESKeyWrap, 1)
	if _, _, err := UnwrapKeyHSM(base64.RawURLEncoding.EncodeToString([]byte(relabeled)), priv); !errors.Is(err, ErrUnwrap) {
		t.Fatalf("wrong OAEP hash: %v", err)
	}
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	if _, _, err := UnwrapKeyHSM(v, other); !errors.Is(err, ErrUnwrap) {
		t.Fatalf("wrong key: %v", err)
	}
	for _, bad := range []string{"", "!!!", base64.RawURLEncoding.EncodeToString([]byte(`{"header":{"enc":"AES"}}`)),
		base64.RawURLEncoding.EncodeToString([]byte(`{"header":{"enc":"CKM_RSA_AES_KEY_WRAP"},"ciphertext":"AAAA"}`))} {
		if _, _, err := UnwrapKeyHSM(bad, priv); err == nil {
			t.Fatalf("accepted %q", bad)
		}
	}
	if _, err := WrapKeyHSM("k", "A256KW", &priv.PublicKey, secret); err == nil {
		t.Fatal("unknown enc accepted")
	}
}

func TestDeriveKey(t *testing.T) {
	priv := runtimeKey(t)
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	salt := "a1b2c3d4e5f60718293a4b5c6d7e8f90"
	sb, _ := hex.DecodeString(salt)
	want, _ := hkdf.Key(sha256.New, priv.D.Bytes(), sb, "Symmetric Encryption Key", 32)
	got, err := DeriveKey(der, &KeyDerivation{Salt: salt})
	if err != nil || !bytes.Equal(got, want) || len(got) != 32 {
		t.Fatalf("default label: %x %v", got, err)
	}
	wantL, _ := hkdf.Key(sha256.New, priv.D.Bytes(), sb, "my label", 32)
	gotL, err := DeriveKey(der, &KeyDerivation{Salt: salt, Label: "my label"})
	if err != nil || !bytes.Equal(gotL, wantL) || bytes.Equal(gotL, got) {
		t.Fatalf("label: %x %v", gotL, err)
	}
	// Issue 18 item 7: no salt derives with an empty salt, as the sidecar
	// does (RFC 5869: an empty salt is a hash-length block of zeros).
	wantE, _ := hkdf.Key(sha256.New, priv.D.Bytes(), make([]byte, 32), "Symmetric Encryption Key", 32)
	for _, kd := range []*KeyDerivation{nil, {}, {Salt: " "}} {
		gotE, err := DeriveKey(der, kd)
		if err != nil || !bytes.Equal(gotE, wantE) {
			t.Fatalf("empty salt %+v: %x %v", kd, gotE, err)
		}
	}
	if _, err := DeriveKey(der, &KeyDerivation{Salt: "zz"}); err == nil {
		t.Fatal("non-hex salt accepted")
	}
	if _, err := DeriveKey([]byte("junk"), &KeyDerivation{Salt: salt}); err == nil {
		t.Fatal("junk key accepted")
	}
	// PKCS#1 is accepted too and gives the same key.
	got1, err := DeriveKey(x509.MarshalPKCS1PrivateKey(priv), &KeyDerivation{Salt: salt})
	if err != nil || !bytes.Equal(got1, want) {
		t.Fatalf("pkcs1: %v", err)
	}
}

func TestParseKeyBlob(t *testing.T) {
	b, err := ParseKeyBlob([]byte(`{"kid":"fs-key","kty":"oct-HSM","authority":{"endpoint":"sharedeus2.eus2.attest.azure.net"},"akv":{"endpoint":"myhsm.managedhsm.azure.net","api_version":"api-version=7.4","bearer_token":""}}`))
	if err != nil {
		t.Fatal(err)
	}
	if b.KeyName() != "fs-key" || b.KeyVersion() != "" {
		t.Fatalf("%+v", b)
	}
	b, err = ParseKeyBlob([]byte(`{"kid":"k/0123abc","kty":"RSA-HSM","authority":{"endpoint":"https://a.attest.azure.net/"},"akv":{"endpoint":"v.vault.azure.net"},"key_derivation":{"salt":"00ff","label":"x"}}`))
	if err != nil || b.KeyVersion() != "0123abc" || b.KeyDerivation.Label != "x" {
		t.Fatalf("%+v %v", b, err)
	}
	for _, bad := range []string{
		``, `[]`, `{"kid":""}`,
		`{"kid":"a b","authority":{"endpoint":"x"},"akv":{"endpoint":"y"}}`,
		`{"kid":"k","kty":"EC","authority":{"endpoint":"x"},"akv":{"endpoint":"y"}}`,
		`{"kid":"k","authority":{"endpoint":"http://x"},"akv":{"endpoint":"y"}}`,
		`{"kid":"k","authority":{"endpoint":"x"},"akv":{"endpoint":""}}`,
		`{"kid":"k","authority":{"endpoint":"x"},"akv":{"endpoint":"https://y/keys/z"}}`,
		`{"kid":"k","authority":{"endpoint":"x"},"akv":{"endpoint":"y"},"key_derivation":{"salt":"xyz"}}`,
	} {
		if _, err := ParseKeyBlob([]byte(bad)); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
}

func TestPolicyForHostData(t *testing.T) {
	hd := strings.Repeat("ab", 32)
	p, err := PolicyForHostData("127.0.0.1:8443", hd)
	if err != nil {
		t.Fatal(err)
	}
	var pol Policy
	if err := json.Unmarshal(p, &pol); err != nil {
		t.Fatal(err)
	}
	if pol.Version != "1.0.0" || len(pol.AnyOf) != 1 || pol.AnyOf[0].Authority != "https://127.0.0.1:8443" || !strings.Contains(string(p), hd) {
		t.Fatalf("%s", p)
	}
	if _, err := PolicyForHostData("x", "abcd"); err == nil {
		t.Fatal("short hostdata accepted")
	}
}

// jwsSigner is an independent release-answer signer for the JWS tests.
type jwsSigner struct {
	caPEM []byte
	chain []string
	key   *rsa.PrivateKey
}

func newJWSSigner(t testing.TB, host string) *jwsSigner {
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, IsCA: true, BasicConstraintsValid: true,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key := runtimeKey(t)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return &jwsSigner{caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		chain: []string{base64.StdEncoding.EncodeToString(leafDER), base64.StdEncoding.EncodeToString(caDER)}, key: key}
}

func (s *jwsSigner) sign(t testing.TB, payload []byte) string {
	h, _ := json.Marshal(map[string]any{"alg": "RS256", "x5c": s.chain})
	in := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(payload)
	d := sha256.Sum256([]byte(in))
	sig, err := rsa.SignPKCS1v15(rand.Reader, s.key, crypto.SHA256, d[:])
	if err != nil {
		t.Fatal(err)
	}
	return in + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func TestVerifyReleaseJWS(t *testing.T) {
	s := newJWSSigner(t, "vault.example")
	payload := []byte(`{"response":{}}`)
	v := s.sign(t, payload)
	opts := Options{CAPEM: s.caPEM}
	got, err := VerifyReleaseJWS(v, "vault.example", opts)
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("good JWS: %q %v", got, err)
	}
	if _, err := VerifyReleaseJWS(v, "other.example", opts); !errors.Is(err, ErrBadResponse) {
		t.Fatalf("wrong host: %v", err)
	}
	if _, err := VerifyReleaseJWS(v, "vault.example", Options{}); !errors.Is(err, ErrBadResponse) {
		t.Fatalf("untrusted CA: %v", err)
	}
	parts := strings.Split(v, ".")
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"response":{"x":1}}`)) + "." + parts[2]
	if _, err := VerifyReleaseJWS(tampered, "vault.example", opts); !errors.Is(err, ErrBadResponse) || !strings.Contains(err.Error(), "signature") {
		t.Fatalf("bad signature: %v", err)
	}
	noX5C := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"RS256"}`)) + "." + parts[1] + "." + parts[2]
	if _, err := VerifyReleaseJWS(noX5C, "vault.example", opts); !errors.Is(err, ErrBadResponse) {
		t.Fatalf("no x5c: %v", err)
	}
	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none"}`)) + "." + parts[1] + "."
	if _, err := VerifyReleaseJWS(none, "vault.example", opts); !errors.Is(err, ErrBadResponse) {
		t.Fatalf("alg none: %v", err)
	}
}

func TestCheckReleasedKID(t *testing.T) {
	cases := []struct {
		kid, name, version string
		ok                 bool
	}{
		{"https://v.vault.azure.net/keys/fs/abc", "fs", "", true},
		{"https://v.vault.azure.net/keys/FS/abc", "fs", "abc", true},
		{"https://v.vault.azure.net/keys/fs/abc", "fs", "def", false},
		{"https://v.vault.azure.net/keys/other/abc", "fs", "", false},
		{"https://evil.example/keys/fs/abc", "fs", "", false},
		{"https://v.vault.azure.net/secrets/fs/abc", "fs", "", false},
		{"", "fs", "", false},
	}
	for _, c := range cases {
		err := checkReleasedKID(c.kid, "v.vault.azure.net", c.name, c.version)
		if (err == nil) != c.ok {
			t.Errorf("checkReleasedKID(%q, %q, %q) = %v", c.kid, c.name, c.version, err)
		}
	}
}

func TestRuntimeData(t *testing.T) {
	priv := runtimeKey(t)
	rt, err := NewRuntimeData(&priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(rt, []byte(`{"keys":[{"e":"AQAB","key_ops":["encrypt"],"kid":"TpmEphemeralEncryptionKey","kty":"RSA","n":"`)) {
		t.Fatalf("runtime data shape: %s", rt)
	}
	var claims map[string]any
	json.Unmarshal([]byte(`{"x-ms-runtime":`+string(rt)+`}`), &claims)
	list, byKID := RuntimeKeys(claims)
	if len(list) != 1 || !list[0].Equal(&priv.PublicKey) || byKID[RuntimeKeyID] == nil {
		t.Fatal("runtime key not recovered from claims")
	}
}

func FuzzParseKeyBlob(f *testing.F) {
	f.Add([]byte(`{"kid":"fs-key","kty":"oct-HSM","authority":{"endpoint":"sharedeus2.eus2.attest.azure.net"},"akv":{"endpoint":"myhsm.managedhsm.azure.net"}}`))
	f.Add([]byte(`{"kid":"k/v","kty":"RSA-HSM","authority":{"endpoint":"https://a:1"},"akv":{"endpoint":"b"},"key_derivation":{"salt":"00"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := ParseKeyBlob(data)
		if err == nil && b.KeyName() == "" {
			t.Fatal("accepted a blob without a key name")
		}
	})
}

func FuzzUnwrapKeyHSM(f *testing.F) {
	priv := runtimeKey(f)
	v, _ := WrapKeyHSM(RuntimeKeyID, EncRSAAESKeyWrap256, &priv.PublicKey, []byte("0123456789abcdef0123456789abcdef"))
	f.Add(v)
	f.Add("eyJ9")
	f.Fuzz(func(t *testing.T, v string) {
		UnwrapKeyHSM(v, priv)
	})
}

func FuzzVerifyReleaseJWS(f *testing.F) {
	s := newJWSSigner(f, "vault.example")
	f.Add(s.sign(f, []byte(`{"response":{}}`)))
	f.Add("a.b.c")
	opts := Options{CAPEM: s.caPEM}
	f.Fuzz(func(t *testing.T, v string) {
		VerifyReleaseJWS(v, "vault.example", opts)
	})
}

func FuzzParseJWKS(f *testing.F) {
	priv := runtimeKey(f)
	n := base64.RawURLEncoding.EncodeToString(priv.N.Bytes())
	f.Add([]byte(`{"keys":[{"kid":"a","kty":"RSA","n":"` + n + `","e":"AQAB"}]}`))
	f.Add([]byte(`{"keys":[{"kid":"b","kty":"RSA","x5c":["MIIB"]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ParseJWKS(data)
	})
}

func FuzzTokenClaims(f *testing.F) {
	f.Add("eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ4In0.c2ln")
	f.Add("...")
	f.Fuzz(func(t *testing.T, tok string) {
		if _, parts, err := jwtHeader(tok); err == nil {
			decodeClaims(parts[1])
		}
	})
}

func TestNetErrorNames(t *testing.T) {
	err := netError("key vault x", &net.DNSError{Err: "no such host", Name: "x.invalid", IsNotFound: true})
	if !errors.Is(err, ErrDNS) || !strings.Contains(err.Error(), "x.invalid") {
		t.Fatalf("DNS: %v", err)
	}
	if retryable(&net.DNSError{Err: "no such host", Name: "x", IsNotFound: true}) {
		t.Fatal("a missing host name is retried")
	}
	if !retryable(errors.New("connection reset")) || retryable(context.Canceled) {
		t.Fatal("retry classification wrong")
	}
}
