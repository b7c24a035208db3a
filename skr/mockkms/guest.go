package mockkms

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

	"github.com/chestfs/chestfs/attest"
	"github.com/chestfs/chestfs/skr"
)

// ClaimIsolationTEE holds the hardware claims of a confidential-VM token;
// policies reach into it with dots ("x-ms-isolation-tee.x-ms-compliance-status").
const ClaimIsolationTEE = "x-ms-isolation-tee"

// guestVerified is evidence that passed every check.
type guestVerified struct {
	info    *skr.GuestAttestationInfo
	report  *spb.Report
	fake    bool
	runtime map[string]any
	vm      attest.VMConfig
	pcrs    []attest.PCRValue
	encKey  *rsa.PublicKey
}

func b64(s string) ([]byte, error) { return unb64(s) }

// decodeGuestRequest unpacks the AttestationInfo of an AzureGuest request.
func decodeGuestRequest(r *http.Request) (*skr.GuestAttestationInfo, error) {
	var req skr.GuestRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		return nil, fmt.Errorf("request body: %v", err)
	}
	raw, err := b64(req.AttestationInfo)
	if err != nil {
		return nil, fmt.Errorf("AttestationInfo: %v", err)
	}
	var info skr.GuestAttestationInfo
	if err := json.Unmarshal(raw, &info); err != nil {
		return nil, fmt.Errorf("AttestationInfo: %v", err)
	}
	if info.AttestationProtocolVersion != skr.GuestProtocolVersion {
		return nil, fmt.Errorf("AttestationProtocolVersion %q, want %q", info.AttestationProtocolVersion, skr.GuestProtocolVersion)
	}
	if info.IsolationInfo.Type != "SevSnp" || info.IsolationInfo.Evidence == nil {
		return nil, fmt.Errorf("IsolationInfo.Type %q: the mock attests SEV-SNP confidential VMs only", info.IsolationInfo.Type)
	}
	return &info, nil
}

// verifyIsolation checks the SNP report and its binding to the runtime claims.
func (s *Server) verifyIsolation(info *skr.GuestAttestationInfo, v *guestVerified) (*rsa.PublicKey, error) {
	proofRaw, err := b64(info.IsolationInfo.Evidence.Proof)
	if err != nil {
		return nil, fmt.Errorf("IsolationInfo.Evidence.Proof: %v", err)
	}
	var proof skr.GuestSNPProof
	if err := json.Unmarshal(proofRaw, &proof); err != nil {
		return nil, fmt.Errorf("IsolationInfo.Evidence.Proof: %v", err)
	}
	report, err1 := b64(proof.SnpReport)
	chain, err2 := b64(proof.VcekCertChain)
	runtime, err3 := b64(info.IsolationInfo.Evidence.RunTimeData)
	if err := errors.Join(err1, err2, err3); err != nil {
		return nil, fmt.Errorf("isolation evidence: %v", err)
	}
	vr, err := attest.VerifyReport(report, chain, attest.VerifyOptions{AcceptFake: s.opts.AcceptFakeSNP, Now: s.now()})
	if err != nil {
		return nil, fmt.Errorf("SEV-SNP evidence not verified: %v", err)
	}
	want := attest.ReportData(runtime)
	if !bytes.Equal(vr.Report.ReportData, want[:]) {
		return nil, errors.New("REPORT_DATA is not sha256(RunTimeData): the runtime claims are not the hardware's")
	}
	v.report, v.fake = vr.Report, vr.Fake
	rc, err := attest.ParseRuntimeClaims(runtime)
	if err != nil {
		return nil, err
	}
	if v.vm, err = rc.VM(); err != nil {
		return nil, err
	}
	d := json.NewDecoder(bytes.NewReader(runtime))
	d.UseNumber()
	if err := d.Decode(&v.runtime); err != nil {
		return nil, fmt.Errorf("RunTimeData: %v", err)
	}
	return rc.RSAKey(attest.HCLAKPubKID)
}

// verifyTPM checks that the AK is the HCL's, the quote covers the PCRs
// Azure attests, and the encryption key is a TPM key bound to them.
func verifyTPM(t *skr.GuestTPMInfo, ak *rsa.PublicKey, v *guestVerified) error {
	// Undecodable fields fail verification below as missing.
	bin := func(s string) []byte {
		b, _ := b64(s)
		return b
	}
	akPub, _, err := attest.DecodeTPM2BPublic(bin(t.AikPub))
	if err != nil {
		return fmt.Errorf("TpmInfo.AikPub: %v", err)
	}
	k, err := akPub.Key()
	if kk, ok := k.(*rsa.PublicKey); err != nil || !ok || !kk.Equal(ak) {
		return errors.New("TpmInfo.AikPub is not the HCLAkPub of the HCL report")
	}
	for _, p := range t.PCRs {
		d, err := b64(p.Digest)
		if err != nil {
			return fmt.Errorf("TpmInfo.PCRs[%d]: %v", p.Index, err)
		}
		v.pcrs = append(v.pcrs, attest.PCRValue{Index: p.Index, Digest: d})
	}
	slices.SortFunc(v.pcrs, func(a, b attest.PCRValue) int { return a.Index - b.Index })
	if err := attest.VerifyTPMQuote(ak, bin(t.PcrQuote), bin(t.PcrSignature), v.pcrs, attest.GuestPCRs, nil); err != nil {
		return err
	}
	ck, err := attest.VerifyCertifiedKey(ak, bin(t.EncKeyPub), bin(t.EncKeyCertifyInfo), bin(t.EncKeyCertifyInfoSignature))
	if err != nil {
		return err
	}
	if !bytes.Equal(ck.AuthPolicy, attest.PCRPolicyDigest(v.pcrs)) {
		return errors.New("the encryption key is not bound (PolicyPCR) to the quoted PCR values")
	}
	v.encKey = ck.Public
	return nil
}

// sevsnpClaims are the x-ms-sevsnpvm-* claims of a verified report.
func sevsnpClaims(rp *spb.Report) map[string]any {
	return map[string]any{
		"x-ms-sevsnpvm-hostdata":          hex.EncodeToString(rp.HostData),
		"x-ms-sevsnpvm-reportdata":        hex.EncodeToString(rp.ReportData),
		"x-ms-sevsnpvm-launchmeasurement": hex.EncodeToString(rp.Measurement),
		"x-ms-sevsnpvm-familyId":          hex.EncodeToString(rp.FamilyId),
		"x-ms-sevsnpvm-imageId":           hex.EncodeToString(rp.ImageId),
		"x-ms-sevsnpvm-idkeydigest":       hex.EncodeToString(rp.IdKeyDigest),
		"x-ms-sevsnpvm-authorkeydigest":   hex.EncodeToString(rp.AuthorKeyDigest),
		"x-ms-sevsnpvm-reportid":          hex.EncodeToString(rp.ReportId),
		"x-ms-sevsnpvm-guestsvn":          rp.GuestSvn,
		"x-ms-sevsnpvm-vmpl":              rp.Vmpl,
		"x-ms-sevsnpvm-is-debuggable":     rp.Policy&(1<<19) != 0,
		"x-ms-sevsnpvm-migration-allowed": rp.Policy&(1<<18) != 0,
		"x-ms-sevsnpvm-smt-allowed":       rp.Policy&(1<<16) != 0,
		"x-ms-sevsnpvm-bootloader-svn":    rp.ReportedTcb & 0xff,
		"x-ms-sevsnpvm-tee-svn":           (rp.ReportedTcb >> 8) & 0xff,
		"x-ms-sevsnpvm-snpfw-svn":         (rp.ReportedTcb >> 48) & 0xff,
		"x-ms-sevsnpvm-microcode-svn":     (rp.ReportedTcb >> 56) & 0xff,
	}
}

// guestClaims builds the token claims for verified evidence, in the shape
// of Azure's confidential-VM tokens.
func (s *Server) guestClaims(r *http.Request, v *guestVerified) map[string]any {
	tee := sevsnpClaims(v.report)
	tee["x-ms-attestation-type"] = "sevsnpvm"
	tee["x-ms-runtime"] = v.runtime
	if v.report.Vmpl == 0 && v.report.Policy&(1<<19) == 0 {
		// Azure also matches the launch measurement against Microsoft's
		// paravisor; the mock checks only what it can.
		tee[skr.ClaimComplianceStatus] = skr.CompliantCVM
	}
	pcrs := map[string]any{}
	var attested []int
	for _, p := range v.pcrs {
		pcrs[strconv.Itoa(p.Index)] = hex.EncodeToString(p.Digest)
		attested = append(attested, p.Index)
	}
	str := func(s string) string { b, _ := b64(s); return string(b) }
	now := s.now()
	jti := make([]byte, 32)
	rand.Read(jti)
	c := map[string]any{
		"iss": s.issuer(r), "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(s.opts.TokenTTL).Unix(),
		"jti": hex.EncodeToString(jti), "x-ms-ver": "1.0",
		"x-ms-attestation-type":                 "azurevm",
		"x-ms-azurevm-attestation-protocol-ver": v.info.AttestationProtocolVersion,
		"x-ms-azurevm-attested-pcrs":            attested,
		"secureboot":                            v.vm.SecureBoot,
		"x-ms-azurevm-is-windows":               false,
		"x-ms-azurevm-ostype":                   str(v.info.OSType),
		"x-ms-azurevm-osdistro":                 str(v.info.OSDistro),
		"x-ms-azurevm-osbuild":                  str(v.info.OSBuild),
		"x-ms-azurevm-osversion-major":          v.info.OSVersionMajor,
		"x-ms-azurevm-osversion-minor":          v.info.OSVersionMinor,
		"x-ms-azurevm-vmid":                     v.vm.VMUniqueID,
		ClaimIsolationTEE:                       tee,
		skr.ClaimMockPCRs:                       pcrs,
		"x-ms-runtime": map[string]any{"keys": []map[string]any{{
			"kid": skr.RuntimeKeyID, "kty": "RSA", "key_ops": []string{"encrypt"},
			"e": b64url(big.NewInt(int64(v.encKey.E)).Bytes()), "n": b64url(v.encKey.N.Bytes()),
		}}},
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
	sealed := gcm.Seal(nil, iv, jwt, []byte(skr.GuestTransportAAD))
	//lint:ignore SA1019 the AzureGuest protocol encrypts the token key with RSAES-PKCS1-v1_5
	eik, err := rsa.EncryptPKCS1v15(rand.Reader, to, key)
	if err != nil {
		return "", err
	}
	std := base64.StdEncoding
	et := skr.GuestEncryptedToken{
		EncryptedInnerKey:  std.EncodeToString(eik),
		AuthenticationData: std.EncodeToString(sealed[len(sealed)-gcm.Overhead():]),
		Jwt:                std.EncodeToString(sealed[:len(sealed)-gcm.Overhead()]),
		EncryptionParams: skr.GuestEncryptionParams{BlockMode: "ChainingModeGCM", BlockPadding: "PKCS7",
			Cipher: "AES", KeySizeInBits: 256, Iv: std.EncodeToString(iv)},
	}
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
