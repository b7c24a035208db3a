package main

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/chestfs/chestfs/attest"
	"github.com/chestfs/chestfs/skr"
	"github.com/chestfs/chestfs/skr/mockkms"
)

func mockKMSCommand() *cli.Command {
	return &cli.Command{
		Name:  "mock-kms",
		Usage: "run a local stand-in for Azure Attestation and Key Vault (same wire protocol; for laptops and tests)",
		Description: "Serves HTTPS on --listen with a CA of its own (made on first start and kept in --state-dir as ca.pem,\n" +
			"the file to give clients as --ca): POST /attest/SevSnpVm and /attest/AzureGuest (vTPM guests),\n" +
			"GET /certs, PUT /keys/NAME and POST /keys/NAME/release, as Azure does. Prints its URL on stdout\n" +
			"once it is ready and runs until SIGINT/SIGTERM. Not a security boundary: a laptop tool.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "listen", Value: "127.0.0.1:0", Usage: "`ADDR` to listen on (port 0 picks a free one)"},
			&cli.StringFlag{Name: "state-dir", Usage: "keep the CA (`DIR`/ca.pem) and imported keys (mode 0600) across restarts"},
			&cli.StringFlag{Name: "ca-out", Usage: "also write the CA certificate to `FILE`"},
			&cli.StringFlag{Name: "token", Usage: "the only Key Vault bearer `TOKEN` accepted (default: any)"},
			&cli.BoolFlag{Name: "reject-fake", Usage: "refuse reports signed by the fake attestation provider's test keys"},
		},
		Action: mockKMSCmd,
	}
}

func importKeyCommand() *cli.Command {
	return &cli.Command{
		Name:      "import-key",
		Usage:     "import a key into Key Vault (or mock-kms) with a release policy, and write the --skr key blob",
		ArgsUsage: " ",
		Description: "The release policy is --policy, or one admitting SEV-SNP containers whose HOST_DATA is --hostdata\n" +
			"(with compliance status azure-compliant-uvm, VMPL 0 and no debugging), or with --cvm one admitting Azure\n" +
			"confidential VMs (compliance status azure-compliant-cvm, no debugging, and --cvm-secure-boot, --cvm-pcr),\n" +
			"or the claims of --config.\n" +
			"One of them is required unless the vault is a loopback mock-kms (then the fake provider's HOST_DATA).\n" +
			"--kty oct-HSM (default) imports --key-file as it is: an AES key of 16, 24 or 32 bytes (Managed HSM).\n" +
			"--kty RSA-HSM (Key Vault Premium or Managed HSM) imports the RSA private key PEM in --key-file, or a new\n" +
			"one; the filesystem key is HKDF-SHA256(D, --salt, --label), written to --derived-key-out for pack or\n" +
			"cryptsetup. --config takes Microsoft's importkeyconfig.json as it is. The key blob JSON (the sidecar's\n" +
			"format, for --skr) goes to --out or stdout.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Usage: "Microsoft's importkeyconfig.json (`FILE`): key blob, key_derivation, claims, identity"},
			&cli.StringFlag{Name: "vault", Usage: "Key Vault or Managed HSM `URL`"},
			&cli.StringFlag{Name: "key-name", Usage: "the key's `NAME` in the vault"},
			&cli.StringFlag{Name: "authority", Usage: "Azure Attestation `ENDPOINT` named in the policy, e.g. sharedeus2.eus2.attest.azure.net " +
				"(required unless the vault is a loopback mock-kms, which serves both)"},
			&cli.StringFlag{Name: "kty", Value: "oct-HSM", Usage: "key type: oct-HSM or RSA-HSM"},
			&cli.StringFlag{Name: "key-file", Usage: "oct-HSM: the key bytes (the LUKS keyfile); RSA-HSM: an RSA private key PEM (default: a new 3072-bit key)"},
			&cli.StringFlag{Name: "salt", Usage: "RSA-HSM: HKDF salt, hex (default: 32 random bytes)"},
			&cli.StringFlag{Name: "label", Usage: "RSA-HSM: HKDF label (default \"" + skr.DefaultDerivationLabel + "\")"},
			&cli.StringFlag{Name: "derived-key-out", Usage: "RSA-HSM: write the derived 32-byte filesystem key to `FILE` (mode 0600)"},
			&cli.StringFlag{Name: "policy", Usage: "release policy JSON `FILE` (Azure's format)"},
			&cli.StringFlag{Name: "hostdata", Usage: "instead of --policy: admit SEV-SNP containers with this HOST_DATA (64 hex digits)"},
			&cli.BoolFlag{Name: "cvm", Usage: "instead of --policy: admit Azure confidential VMs attested through their vTPM " +
				"(--attestation azure-cvm, or tpm-sim with mock-kms): attestation type azurevm, a compliant SEV-SNP TEE, no debugging"},
			&cli.BoolFlag{Name: "cvm-secure-boot", Usage: "with --cvm: also require UEFI secure boot"},
			&cli.StringSliceFlag{Name: "cvm-pcr", Usage: "with --cvm: also require SHA-256 PCR `N=HEX` (repeatable; PCRs 0-7 are attested)"},
			&cli.StringFlag{Name: "client-id", Usage: "user-assigned managed identity `ID` for the vault token"},
			&cli.StringFlag{Name: "ca", Usage: "extra trusted CA `PEM`"},
			&cli.StringFlag{Name: "akv-token", EnvVars: []string{"CHESTFS_AKV_TOKEN"}, Usage: "Key Vault bearer `TOKEN`"},
			&cli.StringFlag{Name: "out", Usage: "write the key blob to `FILE` (default stdout)"},
		},
		Action: importKeyCmd,
	}
}

func mockKMSCmd(c *cli.Context) error {
	if c.NArg() != 0 {
		return fmt.Errorf("usage: chestfs mock-kms [options]")
	}
	if !c.IsSet("state-dir") && !c.IsSet("ca-out") {
		return errors.New("give --state-dir DIR (or --ca-out FILE): clients need the mock's CA")
	}
	srv, err := mockkms.New(mockkms.Options{
		AcceptFakeSNP: !c.Bool("reject-fake"),
		BearerToken:   c.String("token"),
		StateDir:      c.String("state-dir"),
		Insecure:      c.Bool("insecure"),
	})
	if err != nil {
		return err
	}
	if path := c.String("ca-out"); path != "" {
		if err := os.WriteFile(path, srv.CAPEM(), 0o644); err != nil {
			return fmt.Errorf("--ca-out: %w", err)
		}
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	if err := srv.Start(c.String("listen")); err != nil {
		return err
	}
	defer srv.Close()
	fmt.Println(srv.URL())
	slog.Warn("mock-kms is a test stand-in for Azure Attestation and Key Vault", "url", srv.URL())
	<-sig
	return nil
}

// importSpec is what import-key imports, from flags or --config.
type importSpec struct {
	blob   skr.KeyBlob
	policy []byte // from --config's claims
}

// importSpecFrom merges --config and the flags; flags win.
func importSpecFrom(c *cli.Context) (*importSpec, error) {
	sp := &importSpec{}
	if path := c.String("config"); path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("--config: %w", err)
		}
		cfg, err := skr.ParseImportConfig(data)
		if err != nil {
			return nil, fmt.Errorf("--config %s: %w", path, err)
		}
		if sp.policy, err = cfg.Policy(); err != nil {
			return nil, err
		}
		sp.blob = cfg.Key
	}
	b := &sp.blob
	for flag, dst := range map[string]*string{"vault": &b.AKV.Endpoint, "key-name": &b.KID, "authority": &b.Authority.Endpoint} {
		if c.IsSet(flag) || *dst == "" {
			*dst = c.String(flag)
		}
	}
	if c.IsSet("kty") || b.KTY == "" {
		b.KTY = c.String("kty")
	}
	if c.IsSet("salt") || c.IsSet("label") {
		if b.KeyDerivation == nil {
			b.KeyDerivation = &skr.KeyDerivation{}
		}
		if c.IsSet("salt") {
			b.KeyDerivation.Salt = c.String("salt")
		}
		if c.IsSet("label") {
			b.KeyDerivation.Label = c.String("label")
		}
	}
	if c.IsSet("client-id") {
		b.Identity = &skr.Identity{ClientID: c.String("client-id")}
	}
	return sp, sp.check()
}

func (sp *importSpec) check() error {
	b := &sp.blob
	switch {
	case b.AKV.Endpoint == "":
		return errors.New("import-key: --vault (or akv.endpoint in --config) is required")
	case b.KID == "":
		return errors.New("import-key: --key-name (or kid in --config) is required")
	case b.Authority.Endpoint == "" && skr.IsLoopbackURL(b.AKV.Endpoint):
		// mock-kms serves attestation and Key Vault on one address.
		b.Authority.Endpoint = b.AKV.Endpoint
	case b.Authority.Endpoint == "":
		return errors.New("import-key: --authority is required: the Azure Attestation endpoint whose tokens the release policy " +
			"accepts (e.g. sharedeus2.eus2.attest.azure.net); the vault does not serve attestation")
	}
	switch b.KTY {
	case "oct-HSM", "oct", "RSA-HSM", "RSA":
	default:
		return fmt.Errorf("import-key: --kty %q: want oct-HSM (Managed HSM) or RSA-HSM (Key Vault Premium or Managed HSM)", b.KTY)
	}
	return b.Validate()
}

func importKeyCmd(c *cli.Context) error {
	if c.NArg() != 0 {
		return fmt.Errorf("usage: chestfs import-key --vault URL --key-name NAME --authority MAA [--kty oct-HSM|RSA-HSM] [--key-file K] [--policy P.json | --hostdata HEX | --cvm [--cvm-secure-boot] [--cvm-pcr N=HEX]...]")
	}
	sp, err := importSpecFrom(c)
	if err != nil {
		return err
	}
	blob := &sp.blob
	policy := sp.policy
	if policy == nil || c.IsSet("policy") || c.IsSet("hostdata") || c.Bool("cvm") {
		if policy, err = policyFromFlags(c, blob); err != nil {
			return err
		}
	}
	opts := skr.Options{Token: c.String("akv-token")}
	if opts.Token == "" {
		opts.Token = blob.AKV.BearerToken
	}
	if blob.Identity != nil {
		opts.ClientID = blob.Identity.ClientID
	}
	if path := c.String("ca"); path != "" {
		if opts.CAPEM, err = os.ReadFile(path); err != nil {
			return fmt.Errorf("--ca: %w", err)
		}
	}
	var kid string
	if blob.KTY == "RSA-HSM" || blob.KTY == "RSA" {
		kid, err = importRSA(c, blob, policy, opts)
	} else {
		kid, err = importOct(c, blob, policy, opts)
	}
	if err != nil {
		return err
	}
	slog.Info("key imported", "kid", kid)
	// The policy decides who gets the key: show it, so that nobody imports one blind.
	fmt.Fprintf(os.Stderr, "release policy set on %s:\n%s\n", kid, policy)
	return writeKeyBlob(c.String("out"), blob)
}

// policyFromFlags builds the release policy from --policy, --hostdata or
// --cvm (at most one), or the default for a loopback mock-kms.
func policyFromFlags(c *cli.Context, blob *skr.KeyBlob) ([]byte, error) {
	if !c.Bool("cvm") {
		if c.IsSet("cvm-secure-boot") || c.IsSet("cvm-pcr") {
			return nil, errors.New("import-key: --cvm-secure-boot and --cvm-pcr refine a --cvm policy; add --cvm")
		}
		var policyJSON []byte
		if c.IsSet("policy") {
			var err error
			if policyJSON, err = os.ReadFile(c.String("policy")); err != nil {
				return nil, fmt.Errorf("--policy: %w", err)
			}
		}
		return skr.ImportPolicy(blob.AKV.Endpoint, blob.Authority.Endpoint, policyJSON, c.String("hostdata"))
	}
	if c.IsSet("policy") || c.IsSet("hostdata") {
		return nil, errors.New("import-key: --cvm writes the release policy; give it, --policy or --hostdata, not two of them")
	}
	opts := skr.CVMPolicyOptions{SecureBoot: c.Bool("cvm-secure-boot")}
	for _, kv := range c.StringSlice("cvm-pcr") {
		n, v, ok := strings.Cut(kv, "=")
		i, err := strconv.Atoi(strings.TrimSpace(n))
		if !ok || err != nil {
			return nil, fmt.Errorf("import-key: --cvm-pcr %q: want N=HEX, e.g. 7=%s", kv, strings.Repeat("0", 64))
		}
		if opts.PCRs == nil {
			opts.PCRs = map[int]string{}
		}
		if !slices.Contains(attest.GuestPCRs, i) {
			return nil, fmt.Errorf("import-key: --cvm-pcr %d: only PCRs %v are attested, a policy on another would never release", i, attest.GuestPCRs)
		}
		if _, dup := opts.PCRs[i]; dup {
			return nil, fmt.Errorf("import-key: --cvm-pcr: PCR %d given twice", i)
		}
		opts.PCRs[i] = v
	}
	if len(opts.PCRs) > 0 && !skr.IsLoopbackURL(blob.AKV.Endpoint) {
		slog.Warn("--cvm-pcr requires the claims " + skr.ClaimMockPCRs + ".N, which Azure Attestation issues only under a custom attestation policy that emits them")
	}
	p, err := skr.PolicyForCVM(blob.Authority.Endpoint, opts)
	if err != nil {
		return nil, fmt.Errorf("import-key: %w", err)
	}
	return p, nil
}

func importOct(c *cli.Context, blob *skr.KeyBlob, policy []byte, opts skr.Options) (string, error) {
	if !c.IsSet("key-file") {
		return "", errors.New("import-key: --key-file is required for an oct-HSM key (the LUKS keyfile: 16, 24 or 32 bytes)")
	}
	if c.IsSet("derived-key-out") || blob.KeyDerivation != nil && blob.KeyDerivation.Salt != "" {
		slog.Warn("key_derivation applies to RSA-HSM keys only; an oct-HSM key is used as it is")
	}
	key, err := os.ReadFile(c.String("key-file"))
	if err != nil {
		return "", fmt.Errorf("--key-file: %w", err)
	}
	defer clear(key)
	blob.KeyDerivation = nil
	return skr.ImportKey(c.Context, blob.AKV.Endpoint, blob.KeyName(), key, policy, opts)
}

// importRSA imports an RSA-HSM key (given or new) and writes the derived
// filesystem key; a missing salt is made random and kept in the key blob.
func importRSA(c *cli.Context, blob *skr.KeyBlob, policy []byte, opts skr.Options) (string, error) {
	out := c.String("derived-key-out")
	if out == "" {
		return "", errors.New("import-key: --derived-key-out FILE is required for an RSA-HSM key: the filesystem key is derived from it, and the image must be made with that key")
	}
	priv, err := rsaKeyFrom(c.String("key-file"))
	if err != nil {
		return "", err
	}
	if blob.KeyDerivation == nil {
		blob.KeyDerivation = &skr.KeyDerivation{}
	}
	if strings.TrimSpace(blob.KeyDerivation.Salt) == "" {
		salt := make([]byte, 32)
		if _, err := rand.Read(salt); err != nil {
			return "", err
		}
		blob.KeyDerivation.Salt = hex.EncodeToString(salt)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return "", err
	}
	derived, err := skr.DeriveKey(der, blob.KeyDerivation)
	clear(der)
	if err != nil {
		return "", err
	}
	defer clear(derived)
	kid, err := skr.ImportRSAKey(c.Context, blob.AKV.Endpoint, blob.KeyName(), priv, policy, opts)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(out, derived, 0o600); err != nil {
		return "", fmt.Errorf("--derived-key-out: %w", err)
	}
	return kid, nil
}

// rsaKeyFrom reads a PKCS#8 or PKCS#1 PEM RSA private key, or makes a new
// 3072-bit one when path is empty.
func rsaKeyFrom(path string) (*rsa.PrivateKey, error) {
	if path == "" {
		return rsa.GenerateKey(rand.Reader, 3072)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--key-file: %w", err)
	}
	defer clear(data)
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, fmt.Errorf("--key-file %s: not a PEM RSA private key (an RSA-HSM import takes one)", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		if k1, err1 := x509.ParsePKCS1PrivateKey(b.Bytes); err1 == nil {
			return k1, nil
		}
		return nil, fmt.Errorf("--key-file %s: %w", path, err)
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("--key-file %s: a %T key, want RSA", path, k)
	}
	return rk, nil
}

// writeKeyBlob writes the sidecar's key blob for the imported key. It names
// the key, not a version (release takes the newest), and carries no token.
func writeKeyBlob(path string, b *skr.KeyBlob) error {
	out := *b
	out.AKV.BearerToken = ""
	out.AKV.APIVersion = ""
	out.Identity = nil
	data, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return err
	}
	data = append(data, '\n')
	if path != "" {
		return os.WriteFile(path, data, 0o644)
	}
	_, err = os.Stdout.Write(data)
	return err
}
