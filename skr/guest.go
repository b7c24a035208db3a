package skr

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/chestfs/chestfs/attest"
	"github.com/chestfs/chestfs/internal/secret"
)

// Azure Attestation's guest endpoint for confidential and trusted-launch VMs,
// as Microsoft's guest attestation library (Azure/confidential-computing-
// cvm-guest-attestation) speaks it: protocol 2.0, api-version 2020-10-01.
const (
	GuestAPIVersion      = "2020-10-01"
	GuestProtocolVersion = "2.0"
	// GuestTransportAAD is the AES-GCM additional data of the encrypted token.
	GuestTransportAAD = "Transport Key"
	// HCLAKPubKID names the vTPM AK in the token's x-ms-isolation-tee.x-ms-runtime.
	HCLAKPubKID = attest.HCLAKPubKID
)

// GuestRequest is the body of POST /attest/AzureGuest.
type GuestRequest struct {
	AttestationInfo string `json:"AttestationInfo"` // b64url (no padding) of GuestAttestationInfo JSON
}

// GuestAttestationInfo is the evidence. Binary fields are standard base64.
type GuestAttestationInfo struct {
	AttestationProtocolVersion string             `json:"AttestationProtocolVersion"`
	OSType                     string             `json:"OSType"`
	OSDistro                   string             `json:"OSDistro"`
	OSVersionMajor             uint32             `json:"OSVersionMajor"`
	OSVersionMinor             uint32             `json:"OSVersionMinor"`
	OSBuild                    string             `json:"OSBuild"`
	TcgLogs                    string             `json:"TcgLogs"`
	ClientPayload              map[string]string  `json:"ClientPayload"`
	TpmInfo                    GuestTPMInfo       `json:"TpmInfo"`
	IsolationInfo              GuestIsolationInfo `json:"IsolationInfo"`
}

// GuestTPMInfo carries the AK, the quote and the certified encryption key.
type GuestTPMInfo struct {
	AikCert                    string     `json:"AikCert"`
	AikPub                     string     `json:"AikPub"`
	PcrQuote                   string     `json:"PcrQuote"`
	PcrSignature               string     `json:"PcrSignature"`
	EncKeyPub                  string     `json:"EncKeyPub"`
	EncKeyCertifyInfo          string     `json:"EncKeyCertifyInfo"`
	EncKeyCertifyInfoSignature string     `json:"EncKeyCertifyInfoSignature"`
	PcrSet                     []int      `json:"PcrSet"`
	PCRs                       []GuestPCR `json:"PCRs"`
}

// GuestPCR is one quoted PCR value.
type GuestPCR struct {
	Index  int    `json:"Index"`
	Digest string `json:"Digest"`
}

// GuestIsolationInfo names the TEE and carries its evidence.
type GuestIsolationInfo struct {
	Type     string                  `json:"Type"` // "SevSnp", "Tdx", "TrustedLaunch"
	Evidence *GuestIsolationEvidence `json:"Evidence,omitempty"`
}

// GuestIsolationEvidence: Proof is base64 of GuestSNPProof JSON; RunTimeData
// is base64 of the HCL runtime claims.
type GuestIsolationEvidence struct {
	Proof       string `json:"Proof"`
	RunTimeData string `json:"RunTimeData"`
}

// GuestSNPProof is the SEV-SNP proof: the report (b64url, no padding) and
// base64 of the PEM VCEK chain.
type GuestSNPProof struct {
	SnpReport     string `json:"SnpReport"`
	VcekCertChain string `json:"VcekCertChain"`
}

// GuestEncryptedToken is the JSON behind the answer's "token" (b64url):
// the JWT AES-GCM encrypted under a key that is RSAES-encrypted to the
// ephemeral TPM key. Binary fields are standard base64.
type GuestEncryptedToken struct {
	EncryptedInnerKey  string                `json:"EncryptedInnerKey"`
	EncryptionParams   GuestEncryptionParams `json:"EncryptionParams"`
	AuthenticationData string                `json:"AuthenticationData"` // the GCM tag
	Jwt                string                `json:"Jwt"`                // GCM ciphertext without tag
}

// GuestEncryptionParams describe the token encryption.
type GuestEncryptionParams struct {
	BlockMode     string `json:"BlockMode"`    // "ChainingModeGCM"
	BlockPadding  string `json:"BlockPadding"` // "PKCS7" (unused by GCM)
	Cipher        string `json:"Cipher"`       // "AES"
	KeySizeInBits int    `json:"KeySizeInBits"`
	Iv            string `json:"Iv"`
}

var (
	b64std = base64.StdEncoding
	b64raw = base64.RawURLEncoding
)

// NewGuestRequest encodes vTPM evidence as AzureGuest expects it. nonce
// goes into ClientPayload (echoed in the token as x-ms-client-payload).
func NewGuestRequest(ev *attest.GuestEvidence, nonce string) (*GuestRequest, *GuestAttestationInfo, error) {
	if ev == nil || ev.HCL == nil || len(ev.Quote) == 0 || len(ev.EncKeyPub) == 0 {
		return nil, nil, errors.New("skr: vTPM evidence lacks the HCL report, quote or encryption key")
	}
	proof, err := json.Marshal(GuestSNPProof{SnpReport: b64raw.EncodeToString(ev.HCL.HWReport), VcekCertChain: b64std.EncodeToString(ev.VCEKChain)})
	if err != nil {
		return nil, nil, err
	}
	info := &GuestAttestationInfo{
		AttestationProtocolVersion: GuestProtocolVersion,
		OSType:                     b64std.EncodeToString([]byte(ev.OS.Type)),
		OSDistro:                   b64std.EncodeToString([]byte(ev.OS.Distro)),
		OSVersionMajor:             ev.OS.VersionMajor,
		OSVersionMinor:             ev.OS.VersionMinor,
		OSBuild:                    b64std.EncodeToString([]byte(ev.OS.Build)),
		TcgLogs:                    b64std.EncodeToString(ev.TCGLog),
		ClientPayload:              map[string]string{},
		TpmInfo: GuestTPMInfo{
			AikCert: b64std.EncodeToString(ev.AKCert), AikPub: b64std.EncodeToString(ev.AKPub),
			PcrQuote: b64std.EncodeToString(ev.Quote), PcrSignature: b64std.EncodeToString(ev.QuoteSig),
			EncKeyPub: b64std.EncodeToString(ev.EncKeyPub), EncKeyCertifyInfo: b64std.EncodeToString(ev.EncKeyCertifyInfo),
			EncKeyCertifyInfoSignature: b64std.EncodeToString(ev.EncKeyCertifySig),
		},
		IsolationInfo: GuestIsolationInfo{Type: "SevSnp", Evidence: &GuestIsolationEvidence{
			Proof: b64std.EncodeToString(proof), RunTimeData: b64std.EncodeToString(ev.HCL.RuntimeData)}},
	}
	if nonce != "" {
		info.ClientPayload["nonce"] = b64std.EncodeToString([]byte(nonce))
	}
	for _, p := range ev.PCRs {
		info.TpmInfo.PcrSet = append(info.TpmInfo.PcrSet, p.Index)
		info.TpmInfo.PCRs = append(info.TpmInfo.PCRs, GuestPCR{Index: p.Index, Digest: b64std.EncodeToString(p.Digest)})
	}
	raw, err := json.Marshal(info)
	if err != nil {
		return nil, nil, err
	}
	return &GuestRequest{AttestationInfo: b64raw.EncodeToString(raw)}, info, nil
}

// maxGuestToken bounds the encrypted token answer.
const maxGuestToken = 1 << 20

// openGuestToken decrypts the answer's token with the session's key.
func openGuestToken(token string, sess attest.GuestSession) (string, error) {
	if len(token) > maxGuestToken {
		return "", fmt.Errorf("skr: attestation token: %w: larger than %d bytes", ErrBadToken, maxGuestToken)
	}
	raw, err := decodeB64(token)
	if err != nil {
		return "", fmt.Errorf("skr: attestation token: %w: not base64url: %v", ErrBadToken, err)
	}
	var et GuestEncryptedToken
	if err := json.Unmarshal(raw, &et); err != nil {
		return "", fmt.Errorf("skr: attestation token: %w: not the encrypted token JSON: %v", ErrBadToken, err)
	}
	p := et.EncryptionParams
	if p.Cipher != "AES" || p.BlockMode != "ChainingModeGCM" {
		return "", fmt.Errorf("skr: attestation token: %w: encrypted with %s/%s, want AES/ChainingModeGCM", ErrBadToken, p.Cipher, p.BlockMode)
	}
	eik, err1 := decodeB64(et.EncryptedInnerKey)
	iv, err2 := decodeB64(p.Iv)
	tag, err3 := decodeB64(et.AuthenticationData)
	ct, err4 := decodeB64(et.Jwt)
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return "", fmt.Errorf("skr: attestation token: %w: %v", ErrBadToken, err)
	}
	key, err := sess.Decrypt(nil, eik, nil)
	if err != nil {
		return "", fmt.Errorf("skr: attestation token: the TPM cannot open it (%w): %v", ErrBadToken, err)
	}
	defer clear(key)
	if len(key)*8 != p.KeySizeInBits || (len(key) != 16 && len(key) != 24 && len(key) != 32) {
		return "", fmt.Errorf("skr: attestation token: %w: inner key of %d bytes, announced %d bits", ErrBadToken, len(key), p.KeySizeInBits)
	}
	block, _ := aes.NewCipher(key)
	if len(iv) == 0 || len(iv) > 64 || len(tag) != 16 {
		return "", fmt.Errorf("skr: attestation token: %w: IV of %d bytes, tag of %d bytes", ErrBadToken, len(iv), len(tag))
	}
	gcm, err := cipher.NewGCMWithNonceSize(block, len(iv))
	if err != nil {
		return "", err
	}
	jwt, err := gcm.Open(nil, iv, append(ct, tag...), []byte(GuestTransportAAD))
	if err != nil {
		return "", fmt.Errorf("skr: attestation token: %w: AES-GCM authentication failed", ErrBadToken)
	}
	return string(jwt), nil
}

// AttestGuest sends the session's evidence to the AzureGuest endpoint of
// authority, decrypts the token in the TPM, verifies it (VerifyToken), and
// checks that it speaks of this vTPM (HCLAkPub) and this ephemeral key
// (TpmEphemeralEncryptionKey in x-ms-runtime).
func AttestGuest(ctx context.Context, authority string, sess attest.GuestSession, opts Options) (string, map[string]any, error) {
	base, err := NormalizeEndpoint(authority)
	if err != nil {
		return "", nil, fmt.Errorf("skr: attestation authority: %w", err)
	}
	ev := sess.Evidence()
	if ev.Fake && !opts.Insecure && !IsLoopbackURL(base) {
		return "", nil, fmt.Errorf("skr: attestation %s: %w: tpm-sim evidence goes only to a loopback mock-kms unless Options.Insecure", strings.TrimPrefix(base, "https://"), ErrInsecure)
	}
	nonce := make([]byte, 16)
	if _, err := rand.Read(nonce); err != nil {
		return "", nil, err
	}
	req, _, err := NewGuestRequest(ev, hex.EncodeToString(nonce))
	if err != nil {
		return "", nil, err
	}
	body, err := json.Marshal(req)
	if err != nil {
		return "", nil, err
	}
	opts, done, err := opts.withClient()
	if err != nil {
		return "", nil, err
	}
	defer done()
	what := "attestation " + strings.TrimPrefix(base, "https://")
	status, data, err := opts.do(ctx, what, http.MethodPost, base+"/attest/AzureGuest?api-version="+GuestAPIVersion, nil, body)
	if err != nil {
		return "", nil, err
	}
	if status != http.StatusOK {
		he := parseHTTPError(status, data)
		if status == http.StatusBadRequest {
			return "", nil, fmt.Errorf("skr: %s rejected the vTPM evidence: %w", what, he)
		}
		return "", nil, fmt.Errorf("skr: %s: %w", what, he)
	}
	var resp struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(data, &resp); err != nil || resp.Token == "" {
		return "", nil, fmt.Errorf("skr: %s: %w: no token in the answer", what, ErrBadResponse)
	}
	jwt, err := openGuestToken(resp.Token, sess)
	if err != nil {
		return "", nil, err
	}
	claims, err := VerifyToken(ctx, base, jwt, opts)
	if err != nil {
		return "", nil, err
	}
	if err := checkGuestClaims(claims, sess); err != nil {
		return "", nil, err
	}
	return jwt, claims, nil
}

// checkGuestClaims: the token must name this vTPM's AK and this session's key.
func checkGuestClaims(claims map[string]any, sess attest.GuestSession) error {
	_, byKID := RuntimeKeys(claims)
	eph, _ := sess.Public().(*rsa.PublicKey)
	if k := byKID[RuntimeKeyID]; k == nil || eph == nil || !k.Equal(eph) {
		return fmt.Errorf("skr: attestation token: %w: x-ms-runtime does not carry this release's TPM key", ErrBadToken)
	}
	tee, _ := claims["x-ms-isolation-tee"].(map[string]any)
	_, teeKeys := RuntimeKeys(tee)
	rc, err := attest.ParseRuntimeClaims(sess.Evidence().HCL.RuntimeData)
	if err != nil {
		return err
	}
	ak, err := rc.RSAKey(attest.HCLAKPubKID)
	if err != nil {
		return err
	}
	if k := teeKeys[HCLAKPubKID]; k == nil || !k.Equal(ak) {
		return fmt.Errorf("skr: attestation token: %w: x-ms-isolation-tee.x-ms-runtime does not carry this vTPM's attestation key", ErrBadToken)
	}
	return nil
}

// releaseGuest is ReleaseSecret for vTPM guests: AzureGuest attestation,
// then the Key Vault release wrapped to the ephemeral TPM key, unwrapped in
// the TPM (RSA-OAEP) and in memory (AES key wrap).
func releaseGuest(ctx context.Context, blob *KeyBlob, gp attest.GuestProvider, opts Options) (*secret.Buffer, error) {
	if opts.Enc == "" {
		opts.Enc = EncRSAAESKeyWrap256 // as Microsoft's CVM key release sample asks
	}
	opts, done, err := opts.withClient()
	if err != nil {
		return nil, err
	}
	defer done()
	sess, err := gp.OpenGuest(ctx)
	if err != nil {
		return nil, fmt.Errorf("skr: evidence: %w", err)
	}
	defer sess.Close()
	token, _, err := AttestGuest(ctx, blob.Authority.Endpoint, sess, opts)
	if err != nil {
		return nil, err
	}
	rel, err := releaseKey(ctx, blob.AKV.Endpoint, blob.KeyName(), blob.KeyVersion(), token, sess, opts, blob.AKV.BearerToken)
	if err != nil {
		return nil, err
	}
	opts.log().Info("key released to the vTPM", "kid", rel.KID, "kty", rel.KTY, "enc", rel.Enc)
	return finalKey(blob, rel)
}
