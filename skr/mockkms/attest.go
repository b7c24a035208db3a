package mockkms

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"strings"

	"github.com/chestfs/chestfs/attest"
	"github.com/chestfs/chestfs/skr"
)

func decodeB64(s string) ([]byte, error) { return attest.DecodeBase64(s) }

func (s *Server) issuer(r *http.Request) string { return "https://" + strings.ToLower(r.Host) }

// hasUVMEndorsement reports whether the evidence's Endorsements field holds
// UVM reference info: b64url JSON {"Uvm": [b64url(COSE_Sign1), ...]} with a
// non-empty first entry.
func hasUVMEndorsement(field string) bool {
	if field == "" {
		return false
	}
	raw, err := decodeB64(field)
	if err != nil {
		return false
	}
	var e skr.UVMEndorsements
	if json.Unmarshal(raw, &e) != nil || len(e.Uvm) == 0 {
		return false
	}
	ref, err := decodeB64(e.Uvm[0])
	return err == nil && len(ref) > 0
}

func (s *Server) handleCerts(w http.ResponseWriter, r *http.Request) {
	pub := s.maaKey.PublicKey
	writeJSON(w, http.StatusOK, map[string]any{"keys": []map[string]any{{
		"kid": s.maaKID, "kty": "RSA", "use": "sig", "alg": "RS256",
		"n":   base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
		"e":   base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes()),
		"x5c": []string{base64.StdEncoding.EncodeToString(s.maaCert)},
	}}})
}

func (s *Server) handleOpenID(w http.ResponseWriter, r *http.Request) {
	iss := s.issuer(r)
	writeJSON(w, http.StatusOK, map[string]any{"issuer": iss, "jwks_uri": iss + "/certs",
		"id_token_signing_alg_values_supported": []string{"RS256"}, "claims_supported": []string{"x-ms-attestation-type", "x-ms-runtime", "x-ms-sevsnpvm-hostdata"}})
}

// handleAttest plays Azure Attestation's SevSnpVm endpoint.
func (s *Server) handleAttest(w http.ResponseWriter, r *http.Request) {
	bad := func(format string, a ...any) {
		writeError(w, http.StatusBadRequest, "InvalidParameter", fmt.Sprintf(format, a...))
	}
	var req skr.AttestRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		bad("request body: %v", err)
		return
	}
	rep, err := decodeB64(req.Report)
	if err != nil {
		bad("report: %v", err)
		return
	}
	var ev skr.SNPEvidence
	if err := json.Unmarshal(rep, &ev); err != nil {
		bad("report: %v", err)
		return
	}
	report, err := decodeB64(ev.SnpReport)
	if err != nil {
		bad("SnpReport: %v", err)
		return
	}
	chain, err := decodeB64(ev.VcekCertChain)
	if err != nil {
		bad("VcekCertChain: %v", err)
		return
	}
	runtime, err := decodeB64(req.RuntimeData.Data)
	if err != nil {
		bad("runtimeData: %v", err)
		return
	}
	v, err := attest.VerifyReport(report, chain, attest.VerifyOptions{AcceptFake: s.opts.AcceptFakeSNP, Now: s.now()})
	if err != nil {
		bad("SEV-SNP evidence not verified: %v", err)
		return
	}
	want := attest.ReportData(runtime)
	if !bytes.Equal(v.Report.ReportData, want[:]) {
		bad("REPORT_DATA is not sha256(runtimeData) followed by zeros")
		return
	}
	var runtimeClaim any
	if req.RuntimeData.DataType == "JSON" {
		d := json.NewDecoder(bytes.NewReader(runtime))
		d.UseNumber()
		if err := d.Decode(&runtimeClaim); err != nil {
			bad("runtimeData is not JSON: %v", err)
			return
		}
	}
	if v.Fake {
		s.log.Warn("INSECURE: accepted a fake SEV-SNP report signed by test keys")
	}
	endorsed := hasUVMEndorsement(ev.Endorsements)
	rp := v.Report
	now := s.now()
	jti := make([]byte, 16)
	rand.Read(jti)
	claims := map[string]any{
		"iss": s.issuer(r), "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(s.opts.TokenTTL).Unix(),
		"jti":                                 hex.EncodeToString(jti),
		"x-ms-ver":                            "1.0",
		"x-ms-attestation-type":               "sevsnpvm",
		"x-ms-sevsnpvm-hostdata":              hex.EncodeToString(rp.HostData),
		"x-ms-sevsnpvm-reportdata":            hex.EncodeToString(rp.ReportData),
		"x-ms-sevsnpvm-launchmeasurement":     hex.EncodeToString(rp.Measurement),
		"x-ms-sevsnpvm-familyId":              hex.EncodeToString(rp.FamilyId),
		"x-ms-sevsnpvm-imageId":               hex.EncodeToString(rp.ImageId),
		"x-ms-sevsnpvm-idkeydigest":           hex.EncodeToString(rp.IdKeyDigest),
		"x-ms-sevsnpvm-authorkeydigest":       hex.EncodeToString(rp.AuthorKeyDigest),
		"x-ms-sevsnpvm-reportid":              hex.EncodeToString(rp.ReportId),
		"x-ms-sevsnpvm-chipid":                hex.EncodeToString(rp.ChipId),
		"x-ms-sevsnpvm-guestsvn":              rp.GuestSvn,
		"x-ms-sevsnpvm-vmpl":                  rp.Vmpl,
		"x-ms-sevsnpvm-is-debuggable":         rp.Policy&(1<<19) != 0,
		"x-ms-sevsnpvm-migration-allowed":     rp.Policy&(1<<18) != 0,
		"x-ms-sevsnpvm-smt-allowed":           rp.Policy&(1<<16) != 0,
		"x-ms-sevsnpvm-bootloader-svn":        rp.ReportedTcb & 0xff,
		"x-ms-sevsnpvm-tee-svn":               (rp.ReportedTcb >> 8) & 0xff,
		"x-ms-sevsnpvm-snpfw-svn":             (rp.ReportedTcb >> 48) & 0xff,
		"x-ms-sevsnpvm-microcode-svn":         (rp.ReportedTcb >> 56) & 0xff,
		"x-ms-sevsnpvm-guest-policy":          rp.Policy,
		"x-ms-runtime":                        runtimeClaim,
		"x-ms-sevsnpvm-uvm-endorsement-given": endorsed,
	}
	if endorsed {
		// Azure gives the compliance status only when the UVM endorsement
		// (Microsoft-signed reference info) matches the launch measurement.
		// The mock checks that one is there, not its signature.
		claims[skr.ClaimComplianceStatus] = skr.CompliantUVM
	}
	if v.Fake {
		claims["x-chestfs-insecure-fake-snp"] = true
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "InternalError", err.Error())
		return
	}
	tok, err := signJWS(s.maaKey, map[string]any{"typ": "JWT", "kid": s.maaKID, "jku": s.issuer(r) + "/certs"}, payload)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "InternalError", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"token": tok})
}
