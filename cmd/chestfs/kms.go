package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/chestfs/chestfs/skr"
	"github.com/chestfs/chestfs/skr/mockkms"
)

func mockKMSCommand() *cli.Command {
	return &cli.Command{
		Name:  "mock-kms",
		Usage: "run a local stand-in for Azure Attestation and Key Vault (same wire protocol; for laptops and tests)",
		Description: "Serves HTTPS on --listen with a CA of its own (made on first start and kept in --state-dir as ca.pem,\n" +
			"the file to give clients as --ca): POST /attest/SevSnpVm,\n" +
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
			"(with compliance status azure-compliant-uvm, VMPL 0 and no debugging). One of them is required\n" +
			"unless the vault is a loopback mock-kms (then the fake provider's HOST_DATA). The key blob JSON\n" +
			"(the sidecar's format, for --skr) goes to --out or stdout.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "vault", Required: true, Usage: "Key Vault or Managed HSM `URL`"},
			&cli.StringFlag{Name: "key-name", Required: true, Usage: "the key's `NAME` in the vault"},
			&cli.StringFlag{Name: "authority", Usage: "Azure Attestation `URL` named in the policy (default: the vault URL, as mock-kms serves both)"},
			&cli.StringFlag{Name: "key-file", Required: true, Usage: "the key bytes (the LUKS keyfile)"},
			&cli.StringFlag{Name: "policy", Usage: "release policy JSON `FILE` (Azure's format)"},
			&cli.StringFlag{Name: "hostdata", Usage: "instead of --policy: admit SEV-SNP containers with this HOST_DATA (64 hex digits)"},
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

func importKeyCmd(c *cli.Context) error {
	if c.NArg() != 0 {
		return fmt.Errorf("usage: chestfs import-key --vault URL --key-name NAME --key-file K [--policy POLICY.json]")
	}
	name := c.String("key-name")
	key, err := os.ReadFile(c.String("key-file"))
	if err != nil {
		return fmt.Errorf("--key-file: %w", err)
	}
	defer clear(key)
	vault := c.String("vault")
	authority := c.String("authority")
	if authority == "" {
		authority = vault
	}
	var policyJSON []byte
	if c.IsSet("policy") {
		if policyJSON, err = os.ReadFile(c.String("policy")); err != nil {
			return fmt.Errorf("--policy: %w", err)
		}
	}
	policy, err := skr.ImportPolicy(vault, authority, policyJSON, c.String("hostdata"))
	if err != nil {
		return err
	}
	// The policy decides who gets the key: show it, so that nobody imports one blind.
	fmt.Fprintf(os.Stderr, "release policy:\n%s\n", policy)
	opts := skr.Options{Token: c.String("akv-token")}
	if path := c.String("ca"); path != "" {
		if opts.CAPEM, err = os.ReadFile(path); err != nil {
			return fmt.Errorf("--ca: %w", err)
		}
	}
	kid, err := skr.ImportKey(c.Context, vault, name, key, policy, opts)
	if err != nil {
		return err
	}
	slog.Info("key imported", "kid", kid)
	// The sidecar's key blob names the key, not a version: release takes the newest.
	blob := skr.KeyBlob{KID: name, KTY: "oct-HSM", Authority: skr.Endpoint{Endpoint: authority}, AKV: skr.Endpoint{Endpoint: vault}}
	out, err := json.MarshalIndent(blob, "", "  ")
	if err != nil {
		return err
	}
	out = append(out, '\n')
	if path := c.String("out"); path != "" {
		return os.WriteFile(path, out, 0o644)
	}
	_, err = os.Stdout.Write(out)
	return err
}
