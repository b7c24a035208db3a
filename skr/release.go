package skr

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// KVAPIVersion is the Key Vault API version used.
const KVAPIVersion = "7.4"

// TokenEnv names the variable holding a ready Key Vault bearer token.
const TokenEnv = "CHESTFS_AKV_TOKEN"

// ReleaseRequest is the body of POST /keys/{name}[/{version}]/release.
type ReleaseRequest struct {
	Target string `json:"target"`
	Enc    string `json:"enc,omitempty"`
	Nonce  string `json:"nonce,omitempty"`
}

// ReleasePayload is the signed payload of Key Vault's release answer.
type ReleasePayload struct {
	Request struct {
		APIVersion string `json:"api-version"`
		Enc        string `json:"enc"`
		KID        string `json:"kid"`
	} `json:"request"`
	Response struct {
		Key struct {
			Key struct {
				KID    string   `json:"kid"`
				KTY    string   `json:"kty"`
				KeyOps []string `json:"key_ops,omitempty"`
				KeyHSM string   `json:"key_hsm"`
			} `json:"key"`
			Attributes    json.RawMessage `json:"attributes,omitempty"`
			ReleasePolicy json.RawMessage `json:"release_policy,omitempty"`
		} `json:"key"`
	} `json:"response"`
}

// ReleasedKey is an unwrapped released key. Key is the raw material: the
// secret of an oct key, the PKCS#8 DER of an RSA key. It lives only in memory.
type ReleasedKey struct {
	KID string
	KTY string
	Enc string
	Key []byte
}

// scopeFor picks the AAD resource for a vault host.
func scopeFor(host string) string {
	if strings.HasSuffix(strings.ToLower(host), ".managedhsm.azure.net") {
		return "https://managedhsm.azure.net/.default"
	}
	return "https://vault.azure.net/.default"
}

// bearer returns the Key Vault bearer token: Options.Token, $CHESTFS_AKV_TOKEN,
// fallback (the key blob's), or one from Options.Credential, the managed or
// workload identity Options.ClientID names, or DefaultAzureCredential.
// Getting a token is retried (TokenAttempts, backoff from Options.Backoff)
// as the sidecar does: the instance metadata service may not answer in
// the first seconds of a container, and the SDK gives up after one probe.
func (o *Options) bearer(ctx context.Context, host, fallback string) (string, error) {
	for _, t := range []string{o.Token, os.Getenv(TokenEnv), fallback} {
		if t = strings.TrimSpace(t); t != "" {
			return t, nil
		}
	}
	delay := o.Backoff
	if delay <= 0 {
		delay = time.Second
	}
	var last error
	for i := 0; i < TokenAttempts; i++ {
		if i > 0 {
			t := time.NewTimer(delay)
			select {
			case <-ctx.Done():
				t.Stop()
				return "", fmt.Errorf("skr: Key Vault bearer token: %w (last error: %v)", ctx.Err(), last)
			case <-t.C:
			}
			delay = min(2*delay, 8*time.Second)
		}
		// A fresh credential per try: DefaultAzureCredential remembers a
		// failed metadata-service probe for its lifetime.
		cred, err := o.credential()
		if err != nil {
			return "", fmt.Errorf("skr: no Key Vault credential: %w", err)
		}
		tctx, cancel := context.WithTimeout(ctx, o.timeout())
		tok, err := cred.GetToken(tctx, policy.TokenRequestOptions{Scopes: []string{scopeFor(host)}})
		cancel()
		if err == nil {
			return tok.Token, nil
		}
		last = err
		if ctx.Err() != nil {
			break
		}
		o.log().Log(ctx, o.retryLevel(), "Key Vault bearer token failed, retrying", "attempt", i+1, "err", oneLine(err.Error(), 300))
	}
	if o.Credential == nil && o.ClientID == "" {
		// Nothing was configured: say how to give a token, not the SDK's
		// list of every credential it tried (that goes to the debug log).
		o.log().Debug("Key Vault bearer token: DefaultAzureCredential", "err", oneLine(last.Error(), 2000))
		return "", fmt.Errorf("skr: no Key Vault token: set $%s (az account get-access-token --resource %s --query accessToken -o tsv), or run where a managed or workload identity is available",
			TokenEnv, strings.TrimSuffix(scopeFor(host), "/.default"))
	}
	who := "managed or workload identity"
	if o.ClientID != "" {
		who = "managed identity client_id " + o.ClientID
	}
	return "", fmt.Errorf("skr: Key Vault bearer token (%s): giving up after %d attempts: %v", who, TokenAttempts, oneLine(last.Error(), 300))
}

// TokenAttempts bounds the tries for a Key Vault bearer token (the sidecar
// makes 3 too).
const TokenAttempts = 3

// newDefaultCredential is azidentity's DefaultAzureCredential (a variable for tests).
var newDefaultCredential = func() (azcore.TokenCredential, error) { return azidentity.NewDefaultAzureCredential(nil) }

// retryLevel logs a failed token try as a warning when an identity was
// configured; without one, a failure is the usual case off Azure: debug.
func (o *Options) retryLevel() slog.Level {
	if o.Credential == nil && o.ClientID == "" {
		return slog.LevelDebug
	}
	return slog.LevelWarn
}

// credential is Options.Credential, else the identity ClientID names
// (workload identity when the federated token file is set, as on AKS;
// else the managed identity), else DefaultAzureCredential.
func (o *Options) credential() (azcore.TokenCredential, error) {
	if o.Credential != nil {
		return o.Credential, nil
	}
	if o.ClientID == "" {
		return newDefaultCredential()
	}
	if os.Getenv("AZURE_FEDERATED_TOKEN_FILE") != "" {
		return azidentity.NewWorkloadIdentityCredential(&azidentity.WorkloadIdentityCredentialOptions{ClientID: o.ClientID})
	}
	return azidentity.NewManagedIdentityCredential(&azidentity.ManagedIdentityCredentialOptions{ID: azidentity.ClientID(o.ClientID)})
}

// VerifyReleaseJWS checks a release answer's JWS: its x5c chain must verify
// to the trusted roots (system pool plus Options.CAPEM) for DNS name host,
// and the leaf must have signed it. It returns the payload.
func VerifyReleaseJWS(value, host string, opts Options) ([]byte, error) {
	h, _, err := jwtHeader(value)
	if err != nil {
		return nil, fmt.Errorf("skr: release response: %w: %v", ErrBadResponse, err)
	}
	alg, _ := h["alg"].(string)
	switch alg {
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512":
	default:
		return nil, fmt.Errorf("skr: release response: %w: unsupported alg %q", ErrBadResponse, h["alg"])
	}
	x5c, _ := h["x5c"].([]any)
	if len(x5c) == 0 || len(x5c) > 10 {
		return nil, fmt.Errorf("skr: release response: %w: no x5c certificate chain", ErrBadResponse)
	}
	var certs []*x509.Certificate
	for i, v := range x5c {
		s, _ := v.(string)
		der, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("skr: release response: %w: x5c[%d]: %v", ErrBadResponse, i, err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("skr: release response: %w: x5c[%d]: %v", ErrBadResponse, i, err)
		}
		certs = append(certs, c)
	}
	roots, err := opts.roots()
	if err != nil {
		return nil, err
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: host,
		CurrentTime: opts.now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("skr: release response: %w: signing certificate not trusted for %s: %v", ErrBadResponse, host, err)
	}
	payload, err := jws.Verify([]byte(value), jws.WithKey(jwa.SignatureAlgorithm(alg), certs[0].PublicKey))
	if err != nil {
		return nil, fmt.Errorf("skr: release response: %w: signature: %v", ErrBadResponse, err)
	}
	return payload, nil
}

// checkReleasedKID makes sure the vault released the key that was asked for.
func checkReleasedKID(kid, vaultHost, name, version string) error {
	u, err := url.Parse(kid)
	if err != nil {
		return fmt.Errorf("kid %q: %v", kid, err)
	}
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	// Hosts compare without the default port: a key blob may say
	// "v.vault.azure.net:443", the vault's kid never does.
	if hostPort(u.Host) != hostPort(vaultHost) || len(parts) < 2 || len(parts) > 3 || parts[0] != "keys" {
		return fmt.Errorf("released kid %q is not a key of %s", kid, vaultHost)
	}
	if !strings.EqualFold(parts[1], name) {
		return fmt.Errorf("released kid %q is not key %q", kid, name)
	}
	if version != "" && (len(parts) < 3 || !strings.EqualFold(parts[2], version)) {
		return fmt.Errorf("released kid %q is not version %q", kid, version)
	}
	return nil
}

// ReleaseKey asks vault to release key name (optionally version) to the
// holder of priv, proving it with the attestation token target; it verifies
// the answer and unwraps the key.
func ReleaseKey(ctx context.Context, vault, name, version, target string, priv *rsa.PrivateKey, opts Options) (*ReleasedKey, error) {
	return releaseKey(ctx, vault, name, version, target, priv, opts, "")
}

func releaseKey(ctx context.Context, vault, name, version, target string, priv crypto.Decrypter, opts Options, blobToken string) (*ReleasedKey, error) {
	base, err := NormalizeEndpoint(vault)
	if err != nil {
		return nil, fmt.Errorf("skr: key vault: %w", err)
	}
	u, _ := url.Parse(base)
	if !keyNameRE.MatchString(name) || (version != "" && !keyNameRE.MatchString(version)) {
		return nil, fmt.Errorf("skr: bad key name %q / version %q", name, version)
	}
	if err := opts.checkTokenHost(u.Hostname()); err != nil {
		return nil, err
	}
	token, err := opts.bearer(ctx, u.Hostname(), blobToken)
	if err != nil {
		return nil, err
	}
	path := "/keys/" + name
	if version != "" {
		path += "/" + version
	}
	body, err := json.Marshal(ReleaseRequest{Target: target, Enc: opts.Enc})
	if err != nil {
		return nil, err
	}
	what := "key vault " + u.Host
	hdr := http.Header{"Authorization": {"Bearer " + token}}
	status, data, err := opts.do(ctx, what, http.MethodPost, base+path+"/release?api-version="+KVAPIVersion, hdr, body)
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		he := parseHTTPError(status, data)
		switch status {
		case http.StatusUnauthorized:
			return nil, fmt.Errorf("skr: %s: %w: expired, or not for this vault's resource: %s", what, ErrUnauthorized, he.Message)
		case http.StatusForbidden:
			return nil, fmt.Errorf("skr: %s: key %q: %w: the attestation does not satisfy the key's release policy (or the identity may not release keys): %s", what, name, ErrForbidden, he.Message)
		case http.StatusNotFound:
			return nil, fmt.Errorf("skr: %s: key %q: %w: check the kid: %s", what, path[len("/keys/"):], ErrNotFound, he.Message)
		}
		return nil, fmt.Errorf("skr: %s: key release failed: %w", what, he)
	}
	var resp struct {
		Value string `json:"value"`
	}
	if err := json.Unmarshal(data, &resp); err != nil || resp.Value == "" {
		return nil, fmt.Errorf("skr: %s: %w: no value in the release answer", what, ErrBadResponse)
	}
	payload, err := VerifyReleaseJWS(resp.Value, u.Hostname(), opts)
	if err != nil {
		return nil, err
	}
	var p ReleasePayload
	if err := json.Unmarshal(payload, &p); err != nil {
		return nil, fmt.Errorf("skr: release response: %w: payload: %v", ErrBadResponse, err)
	}
	k := p.Response.Key.Key
	if err := checkReleasedKID(k.KID, u.Host, name, version); err != nil {
		return nil, fmt.Errorf("skr: release response: %w: %v", ErrBadResponse, err)
	}
	if k.KeyHSM == "" {
		return nil, fmt.Errorf("skr: release response: %w: no key_hsm", ErrBadResponse)
	}
	enc, key, err := unwrapKeyHSM(k.KeyHSM, priv)
	if err != nil {
		return nil, err
	}
	if opts.Enc != "" && enc != opts.Enc {
		clear(key)
		return nil, fmt.Errorf("skr: release response: %w: wrapped with %s, asked for %s", ErrBadResponse, enc, opts.Enc)
	}
	return &ReleasedKey{KID: k.KID, KTY: k.KTY, Enc: enc, Key: key}, nil
}

var errNoKey = errors.New("skr: released key is empty")
