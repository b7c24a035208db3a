package skr

import (
	"context"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
)

// ImportRequest is the body of PUT /keys/{name}.
type ImportRequest struct {
	Key           map[string]any `json:"key"`
	HSM           bool           `json:"hsm"`
	Attributes    map[string]any `json:"attributes"`
	ReleasePolicy struct {
		ContentType string `json:"contentType"`
		Data        string `json:"data"` // b64url(policy JSON)
	} `json:"release_policy"`
}

// CheckOctKey refuses what Key Vault refuses for a symmetric key: oct-HSM
// keys are AES keys of 16, 24 or 32 bytes.
func CheckOctKey(n int) error {
	switch n {
	case 16, 24, 32:
		return nil
	case 0:
		return errNoKey
	}
	return fmt.Errorf("skr: an oct-HSM key is an AES key of 16, 24 or 32 bytes; this one is %d bytes "+
		"(for a longer LUKS passphrase use --kty RSA-HSM, whose 32-byte key is derived)", n)
}

// CheckRSAKey refuses RSA key sizes Key Vault does not import (2048, 3072, 4096 bits).
func CheckRSAKey(priv *rsa.PrivateKey) error {
	switch priv.N.BitLen() {
	case 2048, 3072, 4096:
		return nil
	}
	return fmt.Errorf("skr: an RSA-HSM key has 2048, 3072 or 4096 bits; this one has %d", priv.N.BitLen())
}

// ImportKey imports a symmetric key (kty oct-HSM) into vaultURL as name,
// exportable under the release policy (JSON). It returns the new kid.
func ImportKey(ctx context.Context, vaultURL, name string, key, policy []byte, opts Options) (string, error) {
	if err := CheckOctKey(len(key)); err != nil {
		return "", err
	}
	if _, err := ParsePolicy(policy); err != nil {
		return "", err
	}
	body, err := octImportBody(key, policy)
	if err != nil {
		return "", err
	}
	defer body.Destroy()
	return importBody(ctx, vaultURL, name, body.Bytes(), opts)
}

// ImportRSAKey imports an RSA private key (kty RSA-HSM); its filesystem key
// is derived on release (DeriveKey). The JWK's base64 strings of the
// private key cannot be wiped: a tool for setting up, not for a guest.
func ImportRSAKey(ctx context.Context, vaultURL, name string, priv *rsa.PrivateKey, policy []byte, opts Options) (string, error) {
	if err := CheckRSAKey(priv); err != nil {
		return "", err
	}
	priv.Precompute()
	enc := func(b *big.Int) string { return base64.RawURLEncoding.EncodeToString(b.Bytes()) }
	jwk := map[string]any{"kty": "RSA-HSM", "n": enc(priv.N), "e": enc(big.NewInt(int64(priv.E))), "d": enc(priv.D),
		"p": enc(priv.Primes[0]), "q": enc(priv.Primes[1]), "dp": enc(priv.Precomputed.Dp), "dq": enc(priv.Precomputed.Dq),
		"qi": enc(priv.Precomputed.Qinv), "key_ops": []string{"encrypt", "decrypt", "wrapKey", "unwrapKey"}}
	return ImportJWK(ctx, vaultURL, name, jwk, policy, opts)
}

// ImportJWK sends PUT {vault}/keys/{name} with the JWK and release policy.
func ImportJWK(ctx context.Context, vaultURL, name string, jwk map[string]any, policy []byte, opts Options) (string, error) {
	if _, err := ParsePolicy(policy); err != nil {
		return "", err
	}
	req := ImportRequest{Key: jwk, HSM: true, Attributes: map[string]any{"exportable": true}}
	req.ReleasePolicy.ContentType = "application/json; charset=utf-8"
	req.ReleasePolicy.Data = base64.RawURLEncoding.EncodeToString(policy)
	body, err := json.Marshal(req)
	if err != nil {
		return "", err
	}
	defer clear(body)
	return importBody(ctx, vaultURL, name, body, opts)
}

// importBody sends the import request body and returns the new kid.
func importBody(ctx context.Context, vaultURL, name string, body []byte, opts Options) (string, error) {
	base, err := NormalizeEndpoint(vaultURL)
	if err != nil {
		return "", fmt.Errorf("skr: key vault: %w", err)
	}
	if !keyNameRE.MatchString(name) {
		return "", fmt.Errorf("skr: bad key name %q", name)
	}
	u, _ := url.Parse(base)
	if err := opts.checkTokenHost(u.Hostname()); err != nil {
		return "", err
	}
	opts, done, err := opts.withClient()
	if err != nil {
		return "", err
	}
	defer done()
	token, err := opts.bearer(ctx, u.Hostname(), "")
	if err != nil {
		return "", err
	}
	what := "key vault " + u.Host
	status, data, err := opts.do(ctx, what, http.MethodPut, base+"/keys/"+name+"?api-version="+KVAPIVersion,
		http.Header{"Authorization": {"Bearer " + token}}, body)
	if err != nil {
		return "", err
	}
	if status != http.StatusOK {
		he := parseHTTPError(status, data)
		if status == http.StatusUnauthorized {
			return "", fmt.Errorf("skr: %s: import %q: %w: %s", what, name, ErrUnauthorized, he.Message)
		}
		if status == http.StatusForbidden {
			return "", fmt.Errorf("skr: %s: import %q: %w: %s", what, name, ErrForbidden, he.Message)
		}
		return "", fmt.Errorf("skr: %s: import %q: %w", what, name, he)
	}
	var resp struct {
		Key struct {
			KID string `json:"kid"`
		} `json:"key"`
	}
	if err := json.Unmarshal(data, &resp); err != nil || resp.Key.KID == "" {
		return "", fmt.Errorf("skr: %s: import %q: %w: no kid in the answer", what, name, ErrBadResponse)
	}
	return resp.Key.KID, nil
}
