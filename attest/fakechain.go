package attest

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	_ "embed"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"math/big"
	"time"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/kds"
)

// The fake provider's AMD chain is built here, not with go-sev-guest's
// testing package, which imports "testing" and registers command-line flags:
// test helpers have no place in the binary (and that package does not build
// on Windows). The keys are go-sev-guest's public test keys (fakekeys/), and
// the certificates carry the fields AMD's KDS puts in real ones, so that
// go-sev-guest's verifier accepts the chain with the fake roots.

var (
	//go:embed fakekeys/ark_private_key.pem
	fakeARKPEM []byte
	//go:embed fakekeys/ask_private_key.pem
	fakeASKPEM []byte
	//go:embed fakekeys/vcek_private_key.pem
	fakeVCEKPEM []byte
)

// Validity of the fake certificates, as AMD's KDS issues them.
const (
	fakeRootYears = 25 // ARK and ASK
	fakeVCEKYears = 7
)

// fakeAMDKeys are the private keys of the fake chain.
type fakeAMDKeys struct {
	Ark, Ask *rsa.PrivateKey
	Vcek     *ecdsa.PrivateKey
}

// fakeAMDSigner is the fake chain: certificates, keys and the TCB the VCEK
// is issued for.
type fakeAMDSigner struct {
	Ark, Ask, Vcek *x509.Certificate
	Keys           fakeAMDKeys
	TCB            kds.TCBVersion
}

func parseFakeKey(name string, pemBytes []byte) (any, error) {
	b, _ := pem.Decode(pemBytes)
	if b == nil {
		return nil, fmt.Errorf("attest: fake %s key: no PEM block", name)
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("attest: fake %s key: %w", name, err)
	}
	return k, nil
}

func loadFakeKeys() (fakeAMDKeys, error) {
	var keys fakeAMDKeys
	for _, k := range []struct {
		name string
		pem  []byte
		set  func(any) bool
	}{
		{"ARK", fakeARKPEM, func(k any) bool { keys.Ark, _ = k.(*rsa.PrivateKey); return keys.Ark != nil }},
		{"ASK", fakeASKPEM, func(k any) bool { keys.Ask, _ = k.(*rsa.PrivateKey); return keys.Ask != nil }},
		{"VCEK", fakeVCEKPEM, func(k any) bool { keys.Vcek, _ = k.(*ecdsa.PrivateKey); return keys.Vcek != nil }},
	} {
		parsed, err := parseFakeKey(k.name, k.pem)
		if err != nil {
			return keys, err
		}
		if !k.set(parsed) {
			return keys, fmt.Errorf("attest: fake %s key has the wrong type %T", k.name, parsed)
		}
	}
	return keys, nil
}

// amdName is the distinguished name AMD's certificates use.
func amdName(commonName, serial string) pkix.Name {
	return pkix.Name{
		Organization:       []string{"Advanced Micro Devices"},
		Country:            []string{"US"},
		OrganizationalUnit: []string{"Engineering"},
		Locality:           []string{"Santa Clara"},
		Province:           []string{"CA"},
		SerialNumber:       serial,
		CommonName:         commonName,
	}
}

// fakeVCEKExtensions are the KDS extensions of a VCEK: structure version,
// product name, the TCB security patch levels (all 0 here) and the chip ID.
func fakeVCEKExtensions(productName string, hwid []byte) ([]pkix.Extension, error) {
	var exts []pkix.Extension
	add := func(id asn1.ObjectIdentifier, v any, params string) error {
		b, err := asn1.MarshalWithParams(v, params)
		if err != nil {
			return fmt.Errorf("attest: fake VCEK extension %v: %w", id, err)
		}
		exts = append(exts, pkix.Extension{Id: id, Value: b})
		return nil
	}
	if err := add(kds.OidStructVersion, 0, ""); err != nil {
		return nil, err
	}
	if err := add(kds.OidProductName1, productName, "ia5"); err != nil {
		return nil, err
	}
	for _, id := range []asn1.ObjectIdentifier{kds.OidBlSpl, kds.OidTeeSpl, kds.OidSnpSpl, kds.OidSpl4, kds.OidSpl5, kds.OidSpl6, kds.OidSpl7, kds.OidUcodeSpl} {
		if err := add(id, 0, ""); err != nil {
			return nil, err
		}
	}
	if err := add(kds.OidHwid, hwid, ""); err != nil {
		return nil, err
	}
	return exts, nil
}

// fakeCertChain issues the fake ARK (self-signed), ASK and VCEK for a product
// name such as "Milan-B1", all created at created so that every process
// builds the same certificates (up to the signatures' random salt).
func fakeCertChain(productName string, created time.Time) (*fakeAMDSigner, error) {
	keys, err := loadFakeKeys()
	if err != nil {
		return nil, err
	}
	line := kds.ProductLineOfProductName(productName)
	serial := big.NewInt(0xc0dec0de)
	sn := fmt.Sprintf("%x", serial)
	root := func(subject, issuer pkix.Name, usage x509.KeyUsage) *x509.Certificate {
		return &x509.Certificate{
			Version:               3,
			SerialNumber:          serial,
			Subject:               subject,
			Issuer:                issuer,
			NotBefore:             created,
			NotAfter:              created.Add(time.Duration(365*24*fakeRootYears) * time.Hour),
			SignatureAlgorithm:    x509.SHA384WithRSAPSS,
			PublicKeyAlgorithm:    x509.RSA,
			KeyUsage:              usage,
			CRLDistributionPoints: []string{kds.CrlLinkByKey(line, abi.VcekReportSigner)},
			IsCA:                  true,
			BasicConstraintsValid: true,
		}
	}
	arkName := amdName("ARK-"+line, sn)
	s := &fakeAMDSigner{Keys: keys}
	issue := func(what string, tmpl, parent *x509.Certificate, pub any, signer *rsa.PrivateKey) (*x509.Certificate, error) {
		if parent == nil {
			parent = tmpl
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
		if err != nil {
			return nil, fmt.Errorf("attest: fake %s certificate: %w", what, err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("attest: fake %s certificate: %w", what, err)
		}
		return c, nil
	}
	if s.Ark, err = issue("ARK", root(arkName, arkName, x509.KeyUsageCertSign|x509.KeyUsageCRLSign), nil, &keys.Ark.PublicKey, keys.Ark); err != nil {
		return nil, err
	}
	ask := root(amdName("SEV-"+line, sn), s.Ark.Subject, x509.KeyUsageCertSign)
	if s.Ask, err = issue("ASK", ask, s.Ark, &keys.Ask.PublicKey, keys.Ark); err != nil {
		return nil, err
	}
	exts, err := fakeVCEKExtensions(productName, make([]byte, abi.ChipIDSize))
	if err != nil {
		return nil, err
	}
	vcek := &x509.Certificate{
		Version:            3,
		SerialNumber:       big.NewInt(0),
		Subject:            amdName("SEV-VCEK", "0"),
		Issuer:             amdName("SEV-"+line, s.Ask.Subject.SerialNumber),
		NotAfter:           created.Add(fakeVCEKYears * 365 * 24 * time.Hour),
		SignatureAlgorithm: x509.SHA384WithRSAPSS,
		PublicKeyAlgorithm: x509.ECDSA,
		ExtraExtensions:    exts,
	}
	if s.Vcek, err = issue("VCEK", vcek, s.Ask, &keys.Vcek.PublicKey, keys.Ask); err != nil {
		return nil, err
	}
	return s, nil
}
