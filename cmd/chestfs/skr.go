package main

import (
	"context"
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/chestfs/chestfs/attest"
	"github.com/chestfs/chestfs/skr"
)

// skrFlags tune attestation-gated key release (--skr).
func skrFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "attestation", Category: "Key release", Value: "snp",
			Usage: "evidence provider: snp (the real /dev/sev-guest or configfs-tsm) or fake (INSECURE test reports, for mock-kms)"},
		&cli.StringFlag{Name: "ca", Category: "Key release", Usage: "extra trusted CA `PEM` for the attestation and Key Vault endpoints (mock-kms writes one)"},
		&cli.StringFlag{Name: "akv-token", Category: "Key release", EnvVars: []string{"CHESTFS_AKV_TOKEN"},
			Usage: "Key Vault bearer `TOKEN` (default: managed or workload identity through Azure AD)"},
	}
}

func init() {
	releaseKey = releaseFromConfig
}

// skrOptions builds the release client's options from the flags.
func skrOptions(c *cli.Context) (skr.Options, error) {
	opts := skr.Options{Token: c.String("akv-token")}
	if path := c.String("ca"); path != "" {
		pem, err := os.ReadFile(path)
		if err != nil {
			return opts, fmt.Errorf("--ca: %w", err)
		}
		opts.CAPEM = pem
	}
	return opts, nil
}

// releaseFromConfig performs secure key release for the sidecar key blob in
// path. The key goes straight to the caller's memory, never to disk.
func releaseFromConfig(ctx context.Context, c *cli.Context, path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--skr: %w", err)
	}
	blob, err := skr.ParseKeyBlob(b)
	if err != nil {
		return nil, err
	}
	return release(ctx, c, blob)
}

func release(ctx context.Context, c *cli.Context, blob *skr.KeyBlob) ([]byte, error) {
	provider, err := attest.New(c.String("attestation"))
	if err != nil {
		return nil, err
	}
	opts, err := skrOptions(c)
	if err != nil {
		return nil, err
	}
	key, err := skr.Release(ctx, blob, provider, opts)
	if err != nil {
		return nil, fmt.Errorf("key release: %w", err)
	}
	return key, nil
}
