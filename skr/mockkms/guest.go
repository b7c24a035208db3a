package mockkms

// Azure Attestation's AzureGuest endpoint for confidential VMs, as the mock
// plays it. Like the rest of the mock it shares no code with the chestfs
// client: the request is decoded into the mock's own structs, written from
// the format Microsoft's guest attestation library sends
// (Azure/confidential-computing-cvm-guest-attestation: AttestationClientImpl,
// TpmInfo, IsolationInfo; protocol 2.0, api-version 2020-10-01), the SEV-SNP
// report goes through the mock's checkSNP, the TPM structures through
// guesttpm.go, and the claims reuse the mock's SevSnpVm claim code.

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"slices"
	"strconv"

	spb "github.com/google/go-sev-guest/proto/sevsnp"
)

// ClaimIsolationTEE holds the hardware claims of a confidential-VM token;
// policies reach into it with dots ("x-ms-isolation-tee.x-ms-compliance-status").
const ClaimIsolationTEE = "x-ms-isolation-tee"

// ClaimPCRs is the mock's claim of the quoted PCR values, hex by index
// ("x-chestfs-pcrs.7"). Azure's default attestation policy issues none; a
// custom policy can, and the mock stands for one that does.
const ClaimPCRs = "x-chestfs-pcrs"

const (
	guestProtocolVersion = "2.0"
	// guestTransportAAD is the AES-GCM additional data of the encrypted
	// token, as Microsoft's library opens it.
	guestTransportAAD = "Transport Key"
	// hclAKKID and ephemeralKID are the kids of the vTPM attestation key in
	// the HCL runtime claims and of the TPM encryption key in the token.
	hclAKKID     = "HCLAkPub"
	ephemeralKID = "TpmEphemeralEncryptionKey"
)

// guestRequest is the body of POST /attest/AzureGuest: AttestationInfo is
// base64url of the guestInfo JSON.
type guestRequest struct {
	AttestationInfo string `json:"AttestationInfo"`
}

// guestInfo is the evidence. Binary fields and the OS strings are base64.
type guestInfo struct {
	AttestationProtocolVersion string            `json:"AttestationProtocolVersion"`
	OSType                     string            `json:"OSType"`
	OSDistro                   string            `json:"OSDistro"`
	OSVersionMajor             uint32            `json:"OSVersionMajor"`
	OSVersionMinor             uint32            `json:"OSVersionMinor"`
	OSBuild                    string            `json:"OSBuild"`
	TcgLogs                    string            `json:"TcgLogs"`
	ClientPayload              map[string]string `json:"ClientPayload"`
	TpmInfo                    guestTPMInfo      `json:"TpmInfo"`
	IsolationInfo              struct {
		Type     string `json:"Type"` // "SevSnp", "Tdx", "TrustedLaunch"
		Evidence *struct {
			Proof       string `json:"Proof"`       // base64 of guestSNPProof JSON
			RunTimeData string `json:"RunTimeData"` // base64 of the HCL runtime claims
		} `json:"Evidence"`
	} `json:"IsolationInfo"`
}

// guestTPMInfo: see guesttpm.go for what each binary field holds.
type guestTPMInfo struct {
	AikCert                    string `json:"AikCert"`
	AikPub                     string `json:"AikPub"`
	PcrQuote                   string `json:"PcrQuote"`
	PcrSignature               string `json:"PcrSignature"`
	EncKeyPub                  string `json:"EncKeyPub"`
	EncKeyCertifyInfo          string `json:"EncKeyCertifyInfo"`
	EncKeyCertifyInfoSignature string `json:"EncKeyCertifyInfoSignature"`
	PcrSet                     []int  `json:"PcrSet"`
	PCRs                       []struct {
		Index  int    `json:"Index"`
		Digest string `json:"Digest"`
	} `json:"PCRs"`
}

// guestSNPProof is the SEV-SNP proof: the report and the PEM VCEK chain.
type guestSNPProof struct {
	SnpReport     string `json:"SnpReport"`
	VcekCertChain string `json:"VcekCertChain"`
}

// guestSealedToken is the JSON behind the answer's "token" (base64url):
// the JWT encrypted with AES-GCM, its key RSAES-encrypted to the TPM key.
type guestSealedToken struct {
	EncryptedInnerKey string `json:"EncryptedInnerKey"`
	EncryptionParams  struct {
		BlockMode     string `json:"BlockMode"`
		BlockPadding  string `json:"BlockPadding"`
		Cipher        string `json:"Cipher"`
		KeySizeInBits int    `json:"KeySizeInBits"`
		Iv            string `json:"Iv"`
	} `json:"EncryptionParams"`
	AuthenticationData string `json:"AuthenticationData"` // the GCM tag
	Jwt                string `json:"Jwt"`                // the GCM ciphertext without its tag
}

// hclRuntime is what the mock reads of the HCL runtime claims (the JSON
// the paravisor hashes into the SNP report's REPORT_DATA).
type hclRuntime struct {
	Keys []map[string]any `json:"keys"`
	VM   struct {
		SecureBoot bool   `json:"secure-boot"`
		VMUniqueID string `json:"vmUniqueId"`
	} `json:"vm-configuration"`
}

// guestVerified is evidence that passed every check.
type guestVerified struct {
	info    *guestInfo
	report  *spb.Report
	fake    bool
	runtime map[string]any // the runtime claims, as issued in the token
	hcl     hclRuntime
	pcrs    []pcrValue
	encKey  *rsa.PublicKey
}

// decodeGuestRequest unpacks the AttestationInfo of an AzureGuest request.
func decodeGuestRequest(r *http.Request) (*guestInfo, error) {
	var req guestRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		return nil, fmt.Errorf("request body: %v", err)
	}
	raw, err := unb64(req.AttestationInfo)
	if err != nil {
		return nil, fmt.Errorf("AttestationInfo: %v", err)
	}
	var info guestInfo
	if err := json.Unmarshal(raw, &info); err != nil {
		return nil, fmt.Errorf("AttestationInfo: %v", err)
	}
	if info.AttestationProtocolVersion != guestProtocolVersion {
		return nil, fmt.Errorf("AttestationProtocolVersion %q, want %q", info.AttestationProtocolVersion, guestProtocolVersion)
	}
	if info.IsolationInfo.Type != "SevSnp" || info.IsolationInfo.Evidence == nil {
		return nil, fmt.Errorf("IsolationInfo.Type %q: the mock attests SEV-SNP confidential VMs only", info.IsolationInfo.Type)
	}
	return &info, nil
}

// verifyIsolation checks the SNP report, that it vouches for the runtime
// claims, and returns the vTPM attestation key the claims carry.
func (s *Server) verifyIsolation(info *guestInfo, v *guestVerified) (*rsa.PublicKey, error) {
	ev := info.IsolationInfo.Evidence
	proofRaw, err := unb64(ev.Proof)
	if err != nil {
		return nil, fmt.Errorf("IsolationInfo.Evidence.Proof: %v", err)
	}
	var proof guestSNPProof
	if err := json.Unmarshal(proofRaw, &proof); err != nil {
		return nil, fmt.Errorf("IsolationInfo.Evidence.Proof: %v", err)
	}
	report, err1 := unb64(proof.SnpReport)
	chain, err2 := unb64(proof.VcekCertChain)
	runtime, err3 := unb64(ev.RunTimeData)
	if err := errors.Join(err1, err2, err3); err != nil {
		return nil, fmt.Errorf("isolation evidence: %v", err)
	}
	if v.report, v.fake, err = checkSNP(report, chain, runtime, "RunTimeData", s.opts.AcceptFakeSNP, s.now()); err != nil {
		return nil, fmt.Errorf("SEV-SNP evidence not verified: %v", err)
	}
	if err := json.Unmarshal(runtime, &v.hcl); err != nil {
		return nil, fmt.Errorf("RunTimeData: %v", err)
	}
	d := json.NewDecoder(bytes.NewReader(runtime))
	d.UseNumber()
	if err := d.Decode(&v.runtime); err != nil {
		return nil, fmt.Errorf("RunTimeData: %v", err)
	}
	return hclKey(v.hcl, hclAKKID)
}

// hclKey is the RSA key kid of the runtime claims.
func hclKey(rt hclRuntime, kid string) (*rsa.PublicKey, error) {
	for _, k := range rt.Keys {
		if k["kid"] != kid {
			continue
		}
		n, err1 := jwkInt(k, "n")
		e, err2 := jwkInt(k, "e")
		if k["kty"] != "RSA" || err1 != nil || err2 != nil || n.BitLen() < 2048 || n.BitLen() > 8192 || !e.IsInt64() || e.Int64() > 1<<31 {
			return nil, fmt.Errorf("RunTimeData: key %s is not an RSA key of 2048 to 8192 bits", kid)
		}
		return &rsa.PublicKey{N: n, E: int(e.Int64())}, nil
	}
	return nil, fmt.Errorf("RunTimeData carries no %s key", kid)
}

// verifyTPM checks that the AK is the one in the runtime claims, the quote
// covers the PCRs Azure attests, and the encryption key is a TPM key bound
// to their values.
func verifyTPM(t *guestTPMInfo, ak *rsa.PublicKey, v *guestVerified) error {
	// Fields that do not decode fail verification below as missing.
	bin := func(s string) []byte {
		b, _ := unb64(s)
		return b
	}
	akPub, _, err := parseTPM2BPublic("TpmInfo.AikPub", bin(t.AikPub))
	if err != nil {
		return err
	}
	if k, err := tpmRSAKey("TpmInfo.AikPub", akPub); err != nil || !k.Equal(ak) {
		return fmt.Errorf("TpmInfo.AikPub is not the %s of the HCL report", hclAKKID)
	}
	for _, p := range t.PCRs {
		d, err := unb64(p.Digest)
		if err != nil {
			return fmt.Errorf("TpmInfo.PCRs[%d]: %v", p.Index, err)
		}
		v.pcrs = append(v.pcrs, pcrValue{index: p.Index, digest: d})
	}
	slices.SortFunc(v.pcrs, func(a, b pcrValue) int { return a.index - b.index })
	given := make([]int, len(v.pcrs))
	for i, p := range v.pcrs {
		given[i] = p.index
	}
	if !slices.Equal(slices.Sorted(slices.Values(t.PcrSet)), given) {
		return fmt.Errorf("TpmInfo.PcrSet %v does not list the PCRs of TpmInfo.PCRs %v", t.PcrSet, given)
	}
	if err := checkQuote(ak, bin(t.PcrQuote), bin(t.PcrSignature), v.pcrs); err != nil {
		return err
	}
	v.encKey, err = checkCertifiedKey(ak, bin(t.EncKeyPub), bin(t.EncKeyCertifyInfo), bin(t.EncKeyCertifyInfoSignature), v.pcrs)
	return err
}

// guestClaims builds the token claims for verified evidence, in the shape
// of Azure's confidential-VM tokens: the platform's claims at the top, the
// hardware's in x-ms-isolation-tee.
func (s *Server) guestClaims(r *http.Request, v *guestVerified) map[string]any {
	tee := snpClaims(v.report)
	tee["x-ms-attestation-type"] = "sevsnpvm"
	tee["x-ms-runtime"] = v.runtime
	if v.report.Vmpl == 0 && v.report.Policy&(1<<19) == 0 {
		// Azure also matches the launch measurement against Microsoft's
		// paravisor; the mock checks only what it can.
		tee["x-ms-compliance-status"] = "azure-compliant-cvm"
	}
	pcrs := map[string]any{}
	var attested []int
	for _, p := range v.pcrs {
		pcrs[strconv.Itoa(p.index)] = hex.EncodeToString(p.digest)
		attested = append(attested, p.index)
	}
	str := func(s string) string { b, _ := unb64(s); return string(b) }
	now := s.now()
	jti := make([]byte, 32)
	rand.Read(jti)
	c := map[string]any{
		"iss": s.issuer(r), "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(s.opts.TokenTTL).Unix(),
		"jti": hex.EncodeToString(jti), "x-ms-ver": "1.0",
		"x-ms-attestation-type":                 "azurevm",
		"x-ms-azurevm-attestation-protocol-ver": v.info.AttestationProtocolVersion,
		"x-ms-azurevm-attested-pcrs":            attested,
		"secureboot":                            v.hcl.VM.SecureBoot,
		"x-ms-azurevm-is-windows":               false,
		"x-ms-azurevm-ostype":                   str(v.info.OSType),
		"x-ms-azurevm-osdistro":                 str(v.info.OSDistro),
		"x-ms-azurevm-osbuild":                  str(v.info.OSBuild),
		"x-ms-azurevm-osversion-major":          v.info.OSVersionMajor,
		"x-ms-azurevm-osversion-minor":          v.info.OSVersionMinor,
		"x-ms-azurevm-vmid":                     v.hcl.VM.VMUniqueID,
		ClaimIsolationTEE:                       tee,
		ClaimPCRs:                               pcrs,
		"x-ms-runtime": map[string]any{
			"client-payload": v.info.ClientPayload,
			"keys": []map[string]any{{
				"kid": ephemeralKID, "kty": "RSA", "key_ops": []string{"encrypt"},
				"e": b64url(big.NewInt(int64(v.encKey.E)).Bytes()), "n": b64url(v.encKey.N.Bytes()),
			}},
		},
	}
	if v.fake {
		c["x-chestfs-insecure-fake-snp"] = true
	}
	return c
}

// sealGuestToken encrypts jwt as Azure does for AzureGuest: AES-256-GCM
// with "Transport Key" as additional data, the AES key RSAES-encrypted to
// the certified TPM key.
func sealGuestToken(jwt []byte, to *rsa.PublicKey) (string, error) {
	key := make([]byte, 32)
	iv := make([]byte, 12)
	if _, err := rand.Read(key); err != nil {
		return "", err
	}
	if _, err := rand.Read(iv); err != nil {
		return "", err
	}
	block, _ := aes.NewCipher(key)
	gcm, _ := cipher.NewGCM(block)
	sealed := gcm.Seal(nil, iv, jwt, []byte(guestTransportAAD))
	//lint:ignore SA1019 the AzureGuest protocol encrypts the token key with RSAES-PKCS1-v1_5
	eik, err := rsa.EncryptPKCS1v15(rand.Reader, to, key)
	if err != nil {
		return "", err
	}
	std := base64.StdEncoding
	var et guestSealedToken
	et.EncryptedInnerKey = std.EncodeToString(eik)
	et.AuthenticationData = std.EncodeToString(sealed[len(sealed)-gcm.Overhead():])
	et.Jwt = std.EncodeToString(sealed[:len(sealed)-gcm.Overhead()])
	p := &et.EncryptionParams
	p.BlockMode, p.BlockPadding, p.Cipher, p.KeySizeInBits, p.Iv = "ChainingModeGCM", "PKCS7", "AES", 256, std.EncodeToString(iv)
	raw, err := json.Marshal(et)
	if err != nil {
		return "", err
	}
	return b64url(raw), nil
}

// handleGuestAttest plays Azure Attestation's AzureGuest endpoint.
func (s *Server) handleGuestAttest(w http.ResponseWriter, r *http.Request) {
	bad := func(err error) {
		s.log.Info("mock-kms refused vTPM evidence", "reason", err)
		writeError(w, http.StatusBadRequest, "InvalidParameter", err.Error())
	}
	info, err := decodeGuestRequest(r)
	if err != nil {
		bad(err)
		return
	}
	v := &guestVerified{info: info}
	ak, err := s.verifyIsolation(info, v)
	if err != nil {
		bad(err)
		return
	}
	if err := verifyTPM(&info.TpmInfo, ak, v); err != nil {
		bad(err)
		return
	}
	if v.fake {
		s.log.Warn("INSECURE: accepted a fake HCL report signed by test keys (tpm-sim)")
	}
	payload, err := json.Marshal(s.guestClaims(r, v))
	if err != nil {
		writeError(w, http.StatusInternalServerError, "InternalError", err.Error())
		return
	}
	jwt, err := signJWS(s.maaKey, map[string]any{"typ": "JWT", "kid": s.maaKID, "jku": s.issuer(r) + "/certs"}, payload)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "InternalError", err.Error())
		return
	}
	tok, err := sealGuestToken([]byte(jwt), v.encKey)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "InternalError", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"token": tok})
}
