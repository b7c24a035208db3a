package skr

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jwt"

	"github.com/chestfs/chestfs/attest"
)

// Azure Attestation API versions. MAAAPIVersion is tried first: it is the
// version Microsoft's confidential sidecar sends this exact request with
// (SevSnpVm, the same report envelope and JSON runtime data) in production
// on ACI and AKS. MAAAPIVersionAlt, the version the REST reference
// documents today, is tried when an authority answers 400 to the first.
const (
	MAAAPIVersion    = "2020-10-01"
	MAAAPIVersionAlt = "2022-08-01"
)

// attestVersions is the order of api-versions to try: first (if given and
// known or not), then the known ones not yet tried.
func attestVersions(first string) []string {
	out := []string{}
	if first != "" {
		out = append(out, first)
	}
	for _, v := range []string{MAAAPIVersion, MAAAPIVersionAlt} {
		if v != first {
			out = append(out, v)
		}
	}
	return out
}

// maxToken bounds an attestation token (Azure's are tens of KiB).
const maxToken = 1 << 20

// AttestRequest is the body of POST /attest/SevSnpVm.
type AttestRequest struct {
	Report      string          `json:"report"` // b64url(JSON SNPEvidence)
	RuntimeData AttestationData `json:"runtimeData"`
	Nonce       string          `json:"nonce,omitempty"`
}

// AttestationData carries runtime data; Data is b64url, DataType "JSON" or "Binary".
type AttestationData struct {
	Data     string `json:"data"`
	DataType string `json:"dataType"`
}

// SNPEvidence is the JSON inside AttestRequest.Report.
type SNPEvidence struct {
	SnpReport     string `json:"SnpReport"`     // b64url(raw report)
	VcekCertChain string `json:"VcekCertChain"` // b64url(PEM VCEK, ASK, ARK)
	Endorsements  string `json:"Endorsements,omitempty"`
}

// UVMEndorsements is the JSON inside SNPEvidence.Endorsements.
type UVMEndorsements struct {
	Uvm []string `json:"Uvm"` // b64url(COSE_Sign1 reference info)
}

// b64 is the padded base64url the sidecar sends to Azure Attestation.
var b64 = base64.URLEncoding

// NewAttestRequest encodes evidence as Azure Attestation expects it.
func NewAttestRequest(ev *attest.Evidence) (*AttestRequest, error) {
	if ev == nil || len(ev.Report) == 0 || len(ev.CertChain) == 0 {
		return nil, errors.New("skr: evidence lacks a report or certificate chain")
	}
	e := SNPEvidence{SnpReport: b64.EncodeToString(ev.Report), VcekCertChain: b64.EncodeToString(ev.CertChain)}
	if len(ev.ReferenceInfo) > 0 {
		u, err := json.Marshal(UVMEndorsements{Uvm: []string{b64.EncodeToString(ev.ReferenceInfo)}})
		if err != nil {
			return nil, err
		}
		e.Endorsements = b64.EncodeToString(u)
	}
	rep, err := json.Marshal(e)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, 16)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return &AttestRequest{
		Report:      b64.EncodeToString(rep),
		RuntimeData: AttestationData{Data: b64.EncodeToString(ev.RuntimeData), DataType: "JSON"},
		Nonce:       hex.EncodeToString(nonce),
	}, nil
}

// Attest sends evidence to the Azure Attestation authority and returns the
// token, verified (VerifyToken), with its claims.
func Attest(ctx context.Context, authority string, ev *attest.Evidence, opts Options) (string, map[string]any, error) {
	base, err := NormalizeEndpoint(authority)
	if err != nil {
		return "", nil, fmt.Errorf("skr: attestation authority: %w", err)
	}
	if ev != nil && ev.Fake && !opts.Insecure && !IsLoopbackURL(base) {
		return "", nil, fmt.Errorf("skr: attestation %s: %w: fake evidence goes only to a loopback mock-kms unless Options.Insecure", strings.TrimPrefix(base, "https://"), ErrInsecure)
	}
	req, err := NewAttestRequest(ev)
	if err != nil {
		return "", nil, err
	}
	opts, done, err := opts.withClient()
	if err != nil {
		return "", nil, err
	}
	defer done()
	body, err := json.Marshal(req)
	if err != nil {
		return "", nil, err
	}
	what := "attestation " + strings.TrimPrefix(base, "https://")
	status, data, err := attestPost(ctx, opts, what, base, body)
	if err != nil {
		return "", nil, err
	}
	if status != http.StatusOK {
		he := parseHTTPError(status, data)
		switch status {
		case http.StatusBadRequest:
			return "", nil, fmt.Errorf("skr: %s rejected the evidence: %w", what, he)
		case http.StatusUnauthorized:
			return "", nil, fmt.Errorf("skr: %s: %w: %v", what, ErrUnauthorized, he)
		}
		return "", nil, fmt.Errorf("skr: %s: %w", what, he)
	}
	var resp struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(data, &resp); err != nil || resp.Token == "" {
		return "", nil, fmt.Errorf("skr: %s: %w: no token in the answer", what, ErrBadResponse)
	}
	claims, err := VerifyToken(ctx, base, resp.Token, opts)
	if err != nil {
		return "", nil, err
	}
	return resp.Token, claims, nil
}

// attestPost posts the request with each api-version in turn while the
// authority answers 400, and returns the first answer that is not a 400,
// or the first 400 (the primary version's reason is the one to show).
func attestPost(ctx context.Context, opts Options, what, base string, body []byte) (int, []byte, error) {
	var firstStatus int
	var firstData []byte
	for i, v := range attestVersions(opts.AttestAPIVersion) {
		status, data, err := opts.do(ctx, what, http.MethodPost, base+"/attest/SevSnpVm?api-version="+v, nil, body)
		if err != nil {
			return 0, nil, err
		}
		if status != http.StatusBadRequest {
			if i > 0 {
				opts.log().Info("attestation authority took the fallback api-version", "api_version", v)
			}
			return status, data, nil
		}
		if i == 0 {
			firstStatus, firstData = status, data
		}
		opts.log().Warn("attestation authority answered 400; trying another api-version", "api_version", v,
			"err", parseHTTPError(status, data).Error())
	}
	return firstStatus, firstData, nil
}

// jwks is a JSON Web Key Set as Azure Attestation serves it at {iss}/certs:
// entries may carry only x5c (no n/e), so they are decoded here one by one.
type jwks struct {
	Keys []json.RawMessage `json:"keys"`
}

// ParseJWKS returns the RSA keys of a JWK set by kid. Keys with n/e are
// parsed with jwx; keys with only x5c take the first certificate's key.
func ParseJWKS(data []byte) (map[string]*rsa.PublicKey, error) {
	var set jwks
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("JWK set: %w", err)
	}
	out := map[string]*rsa.PublicKey{}
	for i, raw := range set.Keys {
		var meta struct {
			KID string   `json:"kid"`
			KTY string   `json:"kty"`
			N   string   `json:"n"`
			X5C []string `json:"x5c"`
		}
		if err := json.Unmarshal(raw, &meta); err != nil {
			return nil, fmt.Errorf("JWK set: key %d: %w", i, err)
		}
		if meta.KTY != "RSA" {
			continue
		}
		var pub rsa.PublicKey
		switch {
		case meta.N != "":
			k, err := jwk.ParseKey(raw)
			if err != nil {
				return nil, fmt.Errorf("JWK set: key %q: %w", meta.KID, err)
			}
			if err := k.Raw(&pub); err != nil {
				return nil, fmt.Errorf("JWK set: key %q: %w", meta.KID, err)
			}
		case len(meta.X5C) > 0:
			der, err := base64.StdEncoding.DecodeString(meta.X5C[0])
			if err != nil {
				return nil, fmt.Errorf("JWK set: key %q: x5c: %w", meta.KID, err)
			}
			c, err := x509.ParseCertificate(der)
			if err != nil {
				return nil, fmt.Errorf("JWK set: key %q: x5c: %w", meta.KID, err)
			}
			p, ok := c.PublicKey.(*rsa.PublicKey)
			if !ok {
				continue
			}
			pub = *p
		default:
			continue
		}
		out[meta.KID] = &pub
	}
	if len(out) == 0 {
		return nil, errors.New("JWK set holds no RSA key")
	}
	return out, nil
}

// jwtHeader decodes a compact JWS's protected header.
func jwtHeader(token string) (map[string]any, []string, error) {
	if len(token) > maxToken {
		return nil, nil, fmt.Errorf("token larger than %d bytes", maxToken)
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, nil, fmt.Errorf("token has %d parts, want 3 (header.payload.signature)", len(parts))
	}
	raw, err := decodeB64(parts[0])
	if err != nil {
		return nil, nil, fmt.Errorf("token header: %w", err)
	}
	var h map[string]any
	if err := json.Unmarshal(raw, &h); err != nil {
		return nil, nil, fmt.Errorf("token header: %w", err)
	}
	return h, parts, nil
}

// decodeClaims decodes a JWS payload keeping numbers exact.
func decodeClaims(payload string) (map[string]any, error) {
	raw, err := decodeB64(payload)
	if err != nil {
		return nil, err
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		return nil, err
	}
	return m, nil
}

// VerifyToken checks an Azure Attestation token: RS256 signature by a key
// the authority publishes at {authority}/certs, iss equal to the authority,
// exp present and not passed, nbf reached. It returns the claims.
func VerifyToken(ctx context.Context, authority, token string, opts Options) (map[string]any, error) {
	base, err := NormalizeEndpoint(authority)
	if err != nil {
		return nil, fmt.Errorf("skr: attestation authority: %w", err)
	}
	h, parts, err := jwtHeader(token)
	if err != nil {
		return nil, fmt.Errorf("skr: attestation token: %w: %v", ErrBadToken, err)
	}
	if alg, _ := h["alg"].(string); alg != "RS256" {
		return nil, fmt.Errorf("skr: attestation token: %w: alg %q, want RS256", ErrBadToken, h["alg"])
	}
	kid, _ := h["kid"].(string)
	what := "attestation keys " + strings.TrimPrefix(base, "https://")
	status, data, err := opts.do(ctx, what, http.MethodGet, base+"/certs", nil, nil)
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("skr: %s: %w", what, parseHTTPError(status, data))
	}
	keys, err := ParseJWKS(data)
	if err != nil {
		return nil, fmt.Errorf("skr: %s: %w", what, err)
	}
	pub, ok := keys[kid]
	if !ok {
		return nil, fmt.Errorf("skr: attestation token: %w: signed by key %q, which %s does not publish", ErrBadToken, kid, base)
	}
	clock := jwt.ClockFunc(opts.now)
	if _, err := jwt.Parse([]byte(token), jwt.WithKey(jwa.RS256, pub), jwt.WithValidate(true),
		jwt.WithClock(clock), jwt.WithAcceptableSkew(time.Minute), jwt.WithRequiredClaim("exp")); err != nil {
		return nil, fmt.Errorf("skr: attestation token: %w: %v", ErrBadToken, err)
	}
	claims, err := decodeClaims(parts[1])
	if err != nil {
		return nil, fmt.Errorf("skr: attestation token: %w: claims: %v", ErrBadToken, err)
	}
	iss, _ := claims["iss"].(string)
	if n, err := NormalizeEndpoint(iss); err != nil || n != base {
		return nil, fmt.Errorf("skr: attestation token: %w: issuer %q is not the authority %s", ErrBadToken, iss, base)
	}
	return claims, nil
}
