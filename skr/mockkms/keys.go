package mockkms

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// storedKey is an imported key. Material is the oct secret or the RSA
// key's PKCS#8 DER; the mock is the KMS, so it keeps it.
type storedKey struct {
	Name     string          `json:"name"`
	Version  string          `json:"version"`
	KTY      string          `json:"kty"`
	Material []byte          `json:"material"`
	Policy   json.RawMessage `json:"policy"`
	Created  int64           `json:"created"`
}

type state struct {
	Keys []*storedKey `json:"keys"`
}

func (s *Server) loadState() error {
	data, err := os.ReadFile(s.opts.StateFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("mockkms: state: %w", err)
	}
	var st state
	if err := json.Unmarshal(data, &st); err != nil {
		return fmt.Errorf("mockkms: state %s: %w", s.opts.StateFile, err)
	}
	for _, k := range st.Keys {
		s.keys[strings.ToLower(k.Name)] = k
	}
	return nil
}

// saveState writes the keys atomically with mode 0600; call with s.mu held.
func (s *Server) saveState() error {
	if s.opts.StateFile == "" {
		return nil
	}
	var st state
	for _, k := range s.keys {
		st.Keys = append(st.Keys, k)
	}
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(s.opts.StateFile), ".mockkms-state-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), s.opts.StateFile)
}

// checkBearer plays Key Vault's authentication.
func (s *Server) checkBearer(w http.ResponseWriter, r *http.Request) bool {
	auth := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok || strings.TrimSpace(tok) == "" {
		writeError(w, http.StatusUnauthorized, "Unauthorized", "AKV10000: Request is missing a Bearer or PoP token.")
		return false
	}
	if s.opts.BearerToken != "" && tok != s.opts.BearerToken {
		writeError(w, http.StatusUnauthorized, "Unauthorized", "AKV10032: Invalid issuer or expired token.")
		return false
	}
	return true
}

func b64url(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func jwkInt(m map[string]any, name string) (*big.Int, error) {
	s, _ := m[name].(string)
	b, err := unb64(s)
	if err != nil || len(b) == 0 {
		return nil, fmt.Errorf("JWK field %q missing or not base64url", name)
	}
	return new(big.Int).SetBytes(b), nil
}

// keyMaterial turns an imported JWK into stored material, refusing what
// Key Vault and Managed HSM refuse: symmetric keys other than AES-128/192/256
// and RSA keys other than 2048, 3072 or 4096 bits.
func keyMaterial(jwk map[string]any) (string, []byte, error) {
	kty, _ := jwk["kty"].(string)
	switch kty {
	case "oct", "oct-HSM":
		k, _ := jwk["k"].(string)
		b, err := unb64(k)
		if err != nil || len(b) == 0 {
			return "", nil, errors.New("JWK field \"k\" missing or not base64url")
		}
		if n := len(b); n != 16 && n != 24 && n != 32 {
			return "", nil, fmt.Errorf("invalid key size %d bits: an oct-HSM key must be AES 128, 192 or 256 bits", 8*n)
		}
		return kty, b, nil
	case "RSA", "RSA-HSM":
		return rsaMaterial(kty, jwk)
	}
	return "", nil, fmt.Errorf("unsupported kty %q", kty)
}

func rsaMaterial(kty string, jwk map[string]any) (string, []byte, error) {
	var v [5]*big.Int
	for i, f := range []string{"n", "e", "d", "p", "q"} {
		x, err := jwkInt(jwk, f)
		if err != nil {
			return "", nil, err
		}
		v[i] = x
	}
	if !v[1].IsInt64() || v[1].Int64() > 1<<31 {
		return "", nil, errors.New("RSA exponent too large")
	}
	if bits := v[0].BitLen(); bits != 2048 && bits != 3072 && bits != 4096 {
		return "", nil, fmt.Errorf("invalid key size %d bits: RSA keys are 2048, 3072 or 4096 bits", bits)
	}
	priv := &rsa.PrivateKey{PublicKey: rsa.PublicKey{N: v[0], E: int(v[1].Int64())}, D: v[2], Primes: []*big.Int{v[3], v[4]}}
	if err := priv.Validate(); err != nil {
		return "", nil, fmt.Errorf("RSA key: %v", err)
	}
	priv.Precompute()
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return "", nil, err
	}
	return kty, der, nil
}

// decodeImport reads and checks a PUT /keys/{name} body: an exportable key
// needs a release policy and HSM protection, as in Key Vault.
func decodeImport(r *http.Request) (kty string, material, policy []byte, err error) {
	var req kvImport
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		return "", nil, nil, fmt.Errorf("request body: %v", err)
	}
	kty, material, err = keyMaterial(req.Key)
	if err != nil {
		return "", nil, nil, fmt.Errorf("key: %v", err)
	}
	if req.Attributes.Exportable == nil || !*req.Attributes.Exportable {
		return "", nil, nil, errors.New("a key with a release policy must be exportable")
	}
	if req.ReleasePolicy == nil || req.ReleasePolicy.Data == "" {
		return "", nil, nil, errors.New("exportable keys must have a release policy")
	}
	if !strings.HasSuffix(kty, "-HSM") && (req.HSM == nil || !*req.HSM) {
		return "", nil, nil, errors.New("exportable keys must be HSM-protected (kty oct-HSM or RSA-HSM, or hsm: true)")
	}
	pol, err := unb64(req.ReleasePolicy.Data)
	if err != nil {
		return "", nil, nil, fmt.Errorf("release_policy.data: %v", err)
	}
	var p releasePolicy
	if err := json.Unmarshal(pol, &p); err != nil {
		return "", nil, nil, fmt.Errorf("release policy: %v", err)
	}
	if err := checkPolicy(&p); err != nil {
		return "", nil, nil, err
	}
	return kty, material, pol, nil
}

// handleImport plays PUT /keys/{name}.
func (s *Server) handleImport(w http.ResponseWriter, r *http.Request) {
	if !s.checkBearer(w, r) {
		return
	}
	name := r.PathValue("name")
	kty, material, pol, err := decodeImport(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, "BadParameter", err.Error())
		return
	}
	ver := make([]byte, 16)
	rand.Read(ver)
	k := &storedKey{Name: name, Version: hex.EncodeToString(ver), KTY: kty, Material: material, Policy: pol, Created: s.now().Unix()}
	s.mu.Lock()
	s.keys[strings.ToLower(name)] = k
	err = s.saveState()
	s.mu.Unlock()
	if err != nil {
		writeError(w, http.StatusInternalServerError, "InternalError", "saving state: "+err.Error())
		return
	}
	s.log.Info("mock-kms imported key", "name", name, "kty", kty, "version", k.Version)
	writeJSON(w, http.StatusOK, map[string]any{
		"key":            map[string]any{"kid": s.kid(r, k), "kty": kty, "key_ops": []string{"encrypt", "decrypt", "wrapKey", "unwrapKey"}},
		"attributes":     map[string]any{"enabled": true, "exportable": true, "created": k.Created, "updated": k.Created},
		"release_policy": map[string]any{"contentType": "application/json; charset=utf-8", "data": b64url(pol)},
	})
}

func (s *Server) kid(r *http.Request, k *storedKey) string {
	return "https://" + strings.ToLower(r.Host) + "/keys/" + k.Name + "/" + k.Version
}

// verifyTarget checks an attestation token issued by this mock.
func (s *Server) verifyTarget(token string) (map[string]any, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, errors.New("not a JWT")
	}
	hb, err := unb64(parts[0])
	if err != nil {
		return nil, errors.New("header is not base64url")
	}
	var h struct {
		Alg string `json:"alg"`
		KID string `json:"kid"`
	}
	if err := json.Unmarshal(hb, &h); err != nil {
		return nil, errors.New("header is not JSON")
	}
	if h.Alg != "RS256" || h.KID != s.maaKID {
		return nil, fmt.Errorf("not signed by this attestation service (alg %q kid %q)", h.Alg, h.KID)
	}
	sig, err := unb64(parts[2])
	if err != nil {
		return nil, errors.New("signature is not base64url")
	}
	d := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(&s.maaKey.PublicKey, crypto.SHA256, d[:], sig); err != nil {
		return nil, errors.New("signature does not verify")
	}
	pb, err := unb64(parts[1])
	if err != nil {
		return nil, errors.New("payload is not base64url")
	}
	dec := json.NewDecoder(bytes.NewReader(pb))
	dec.UseNumber()
	var claims map[string]any
	if err := dec.Decode(&claims); err != nil {
		return nil, errors.New("payload is not JSON")
	}
	now := s.now().Unix()
	exp, ok1 := numClaim(claims, "exp")
	nbf, ok2 := numClaim(claims, "nbf")
	if !ok1 || !ok2 {
		return nil, errors.New("exp or nbf missing")
	}
	if now > exp+60 {
		return nil, fmt.Errorf("token expired at %s", time.Unix(exp, 0).UTC().Format(time.RFC3339))
	}
	if now+60 < nbf {
		return nil, errors.New("token not yet valid")
	}
	return claims, nil
}

func numClaim(claims map[string]any, name string) (int64, bool) {
	n, ok := claims[name].(json.Number)
	if !ok {
		return 0, false
	}
	v, err := n.Int64()
	return v, err == nil
}

// runtimeKey picks the key Key Vault wraps to from the token's
// x-ms-runtime.keys: kid TpmEphemeralEncryptionKey if present, else the
// first RSA key.
func runtimeKey(claims map[string]any) (string, *rsa.PublicKey) {
	rt, _ := claims["x-ms-runtime"].(map[string]any)
	keys, _ := rt["keys"].([]any)
	var firstKID string
	var first *rsa.PublicKey
	for _, k := range keys {
		m, _ := k.(map[string]any)
		if m == nil || m["kty"] != "RSA" {
			continue
		}
		n, err1 := jwkInt(m, "n")
		e, err2 := jwkInt(m, "e")
		if err1 != nil || err2 != nil || !e.IsInt64() || e.Int64() > 1<<31 {
			continue
		}
		pub := &rsa.PublicKey{N: n, E: int(e.Int64())}
		kid, _ := m["kid"].(string)
		if kid == "TpmEphemeralEncryptionKey" {
			return kid, pub
		}
		if first == nil {
			firstKID, first = kid, pub
		}
	}
	return firstKID, first
}

// findKey returns the stored key for a release path, or writes the 404.
func (s *Server) findKey(w http.ResponseWriter, name, version string) *storedKey {
	s.mu.Lock()
	k := s.keys[strings.ToLower(name)]
	s.mu.Unlock()
	if k == nil || (version != "" && !strings.EqualFold(version, k.Version)) {
		id := name
		if version != "" {
			id += "/" + version
		}
		writeError(w, http.StatusNotFound, "KeyNotFound", fmt.Sprintf("A key with (name/id) %s was not found in this key vault.", id))
		return nil
	}
	return k
}

// handleRelease plays POST /keys/{name}[/{version}]/release.
func (s *Server) handleRelease(w http.ResponseWriter, r *http.Request) {
	if !s.checkBearer(w, r) {
		return
	}
	name := r.PathValue("name")
	k := s.findKey(w, name, r.PathValue("version"))
	if k == nil {
		return
	}
	var req kvRelease
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Target == "" {
		writeError(w, http.StatusBadRequest, "BadParameter", "request body needs a \"target\" attestation token")
		return
	}
	claims, err := s.verifyTarget(req.Target)
	if err != nil {
		writeError(w, http.StatusBadRequest, "BadParameter", "Target environment attestation token is invalid: "+err.Error())
		return
	}
	var p releasePolicy
	if err := json.Unmarshal(k.Policy, &p); err != nil {
		writeError(w, http.StatusInternalServerError, "InternalError", "stored policy: "+err.Error())
		return
	}
	iss, _ := claims["iss"].(string)
	if err := evalPolicy(&p, iss, claims); err != nil {
		s.log.Info("mock-kms refused release", "key", name, "reason", err)
		writeError(w, http.StatusForbidden, "Forbidden", "Target environment attestation statement does not satisfy the key release policy: "+err.Error())
		return
	}
	kid, pub := runtimeKey(claims)
	if pub == nil {
		writeError(w, http.StatusBadRequest, "BadParameter", "Target environment attestation token carries no RSA key in x-ms-runtime.keys")
		return
	}
	enc := req.Enc
	if enc == "" {
		enc = "CKM_RSA_AES_KEY_WRAP"
	}
	wrapped, err := keyHSM(kid, enc, pub, k.Material)
	if err != nil {
		writeError(w, http.StatusBadRequest, "BadParameter", err.Error())
		return
	}
	value, err := s.signRelease(r, k, enc, wrapped)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "InternalError", err.Error())
		return
	}
	s.log.Info("mock-kms released key", "key", name, "enc", enc)
	writeJSON(w, http.StatusOK, map[string]string{"value": value})
}

// signRelease builds the release answer's payload and signs it with the
// release signer, its chain in x5c.
func (s *Server) signRelease(r *http.Request, k *storedKey, enc, wrapped string) (string, error) {
	var a releaseAnswer
	a.Request.APIVersion = r.URL.Query().Get("api-version")
	a.Request.Enc = enc
	a.Request.KID = s.kid(r, k)
	key := &a.Response.Key
	key.Key.KID, key.Key.KTY, key.Key.KeyHSM = s.kid(r, k), k.KTY, wrapped
	key.Key.KeyOps = []string{"encrypt", "decrypt", "wrapKey", "unwrapKey"}
	key.Attributes = map[string]any{"enabled": true, "exportable": true, "created": k.Created, "updated": k.Created,
		"recoverableDays": 90, "recoveryLevel": "Recoverable+Purgeable"}
	key.ReleasePolicy = map[string]any{"contentType": "application/json; charset=utf-8", "data": b64url(k.Policy)}
	body, err := json.Marshal(a)
	if err != nil {
		return "", err
	}
	x5c := make([]string, len(s.kvChain))
	for i, c := range s.kvChain {
		x5c[i] = base64.StdEncoding.EncodeToString(c)
	}
	return signJWS(s.kvSigner, map[string]any{"x5c": x5c, "kid": thumbprint(s.kvChain[0])}, body)
}
