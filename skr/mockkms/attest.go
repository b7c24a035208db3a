package mockkms

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"slices"
	"strings"

	spb "github.com/google/go-sev-guest/proto/sevsnp"
)

// MAAAPIVersions are the Azure Attestation api-versions the mock serves by
// default: the sidecar's and the one the REST reference documents.
var MAAAPIVersions = []string{"2020-10-01", "2022-08-01"}

func (s *Server) issuer(r *http.Request) string { return "https://" + strings.ToLower(r.Host) }

// uvmEndorsed reports whether the Endorsements field carries UVM reference
// info shaped as Microsoft's is: b64url JSON {"Uvm": [b64url(COSE_Sign1)]}.
func uvmEndorsed(field string) bool {
	if field == "" {
		return false
	}
	raw, err := unb64(field)
	if err != nil {
		return false
	}
	var e maaEndorsements
	if json.Unmarshal(raw, &e) != nil || len(e.Uvm) == 0 {
		return false
	}
	ref, err := unb64(e.Uvm[0])
	return err == nil && isCOSESign1(ref)
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

// decodeAttest reads a SevSnpVm request into its parts.
func decodeAttest(r *http.Request) (req maaAttest, ev maaSNPReport, report, chain, runtime []byte, err error) {
	if err = json.NewDecoder(r.Body).Decode(&req); err != nil {
		return req, ev, nil, nil, nil, fmt.Errorf("request body: %v", err)
	}
	rep, err := unb64(req.Report)
	if err != nil {
		return req, ev, nil, nil, nil, fmt.Errorf("report: %v", err)
	}
	if err = json.Unmarshal(rep, &ev); err != nil {
		return req, ev, nil, nil, nil, fmt.Errorf("report: %v", err)
	}
	if report, err = unb64(ev.SnpReport); err != nil {
		return req, ev, nil, nil, nil, fmt.Errorf("SnpReport: %v", err)
	}
	if chain, err = unb64(ev.VcekCertChain); err != nil {
		return req, ev, nil, nil, nil, fmt.Errorf("VcekCertChain: %v", err)
	}
	if req.RuntimeData == nil {
		return req, ev, nil, nil, nil, fmt.Errorf("runtimeData is missing")
	}
	if runtime, err = unb64(req.RuntimeData.Data); err != nil {
		return req, ev, nil, nil, nil, fmt.Errorf("runtimeData: %v", err)
	}
	return req, ev, report, chain, runtime, nil
}

// handleAttest plays Azure Attestation's SevSnpVm endpoint.
func (s *Server) handleAttest(w http.ResponseWriter, r *http.Request) {
	bad := func(format string, a ...any) {
		writeError(w, http.StatusBadRequest, "InvalidParameter", fmt.Sprintf(format, a...))
	}
	versions := s.opts.MAAAPIVersions
	if len(versions) == 0 {
		versions = MAAAPIVersions
	}
	if v := r.URL.Query().Get("api-version"); !slices.Contains(versions, v) {
		bad("The api-version '%s' is invalid. The supported versions are '%s'.", v, strings.Join(versions, ","))
		return
	}
	req, ev, report, chain, runtime, err := decodeAttest(r)
	if err != nil {
		bad("%v", err)
		return
	}
	rp, fake, err := checkSNP(report, chain, runtime, "runtimeData", s.opts.AcceptFakeSNP, s.now())
	if err != nil {
		bad("SEV-SNP evidence not verified: %v", err)
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
	if fake {
		s.log.Warn("INSECURE: accepted a fake SEV-SNP report signed by test keys")
	}
	claims := s.tokenClaims(r, rp, runtimeClaim, uvmEndorsed(ev.Endorsements), fake)
	if n, ok := req.Nonce.(string); ok && n != "" {
		claims["nonce"] = n
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

// tokenPolicy stands for the attestation policy Azure Attestation evaluates;
// x-ms-policy-hash is its hash, as in a real token.
const tokenPolicy = "version=1.0; authorizationrules{=>permit();}; issuancerules{};"

// tokenClaims is the claim set of an Azure Attestation SevSnpVm token, the
// names and JSON types as in Azure's published example token
// (testdata/maa_sevsnpvm_token.jwt; TestClaimSetLikeAzure compares them).
func (s *Server) tokenClaims(r *http.Request, rp *spb.Report, runtime any, endorsed, fake bool) map[string]any {
	now := s.now()
	jti := make([]byte, 32)
	rand.Read(jti)
	ph := sha256.Sum256([]byte(tokenPolicy))
	claims := snpClaims(rp)
	for k, v := range map[string]any{
		"iss": s.issuer(r), "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(s.opts.TokenTTL).Unix(),
		"jti":                   hex.EncodeToString(jti),
		"x-ms-ver":              "1.0",
		"x-ms-attestation-type": "sevsnpvm",
		"x-ms-policy-hash":      base64.RawURLEncoding.EncodeToString(ph[:]),
		"x-ms-runtime":          runtime,
	} {
		claims[k] = v
	}
	if endorsed {
		// Azure gives the compliance status only when the UVM endorsement
		// (Microsoft-signed reference info) matches the launch measurement;
		// the mock checks that a COSE_Sign1 is there, not its signature.
		claims["x-ms-compliance-status"] = "azure-compliant-uvm"
	}
	if fake {
		claims["x-chestfs-insecure-fake-snp"] = true
	}
	return claims
}

// snpClaims are the x-ms-sevsnpvm-* claims Azure Attestation issues for a
// verified SEV-SNP report: in a SevSnpVm token at the top level, in a
// confidential-VM (AzureGuest) token inside x-ms-isolation-tee.
func snpClaims(rp *spb.Report) map[string]any {
	tcb := rp.ReportedTcb
	return map[string]any{
		"x-ms-sevsnpvm-authorkeydigest":   hex.EncodeToString(rp.AuthorKeyDigest),
		"x-ms-sevsnpvm-bootloader-svn":    tcb & 0xff,
		"x-ms-sevsnpvm-familyId":          hex.EncodeToString(rp.FamilyId),
		"x-ms-sevsnpvm-guestsvn":          rp.GuestSvn,
		"x-ms-sevsnpvm-hostdata":          hex.EncodeToString(rp.HostData),
		"x-ms-sevsnpvm-idkeydigest":       hex.EncodeToString(rp.IdKeyDigest),
		"x-ms-sevsnpvm-imageId":           hex.EncodeToString(rp.ImageId),
		"x-ms-sevsnpvm-is-debuggable":     rp.Policy&(1<<19) != 0,
		"x-ms-sevsnpvm-launchmeasurement": hex.EncodeToString(rp.Measurement),
		"x-ms-sevsnpvm-microcode-svn":     (tcb >> 56) & 0xff,
		"x-ms-sevsnpvm-migration-allowed": rp.Policy&(1<<18) != 0,
		"x-ms-sevsnpvm-reportdata":        hex.EncodeToString(rp.ReportData),
		"x-ms-sevsnpvm-reportid":          hex.EncodeToString(rp.ReportId),
		"x-ms-sevsnpvm-smt-allowed":       rp.Policy&(1<<16) != 0,
		"x-ms-sevsnpvm-snpfw-svn":         (tcb >> 48) & 0xff,
		"x-ms-sevsnpvm-tee-svn":           (tcb >> 8) & 0xff,
		"x-ms-sevsnpvm-vmpl":              rp.Vmpl,
	}
}
