//go:build !windows

package main

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/chestfs/chestfs/blockdev/blobsrc"
	"github.com/chestfs/chestfs/skr"
)

func sidecarCommand() *cli.Command {
	flags := []cli.Flag{
		&cli.StringFlag{Name: "config", EnvVars: []string{"EncfsSideCarArgs"},
			Usage: "the sidecar's configuration: base64 of {\"azure_filesystems\":[...]} (default: $EncfsSideCarArgs)"},
	}
	flags = append(flags, serveFlags()...)
	flags = append(flags, &cli.BoolFlag{Name: "require-verity", Category: "Integrity",
		Usage: "refuse a filesystem without verity_root_hash (in its entry or its key blob)"})
	flags = append(flags, releaseFlags()...)
	flags = append(flags, sourceFlags()...)
	return &cli.Command{
		Name:  "sidecar",
		Usage: "mount every filesystem of the Azure encfs sidecar's configuration, read-only, as the sidecar would",
		Description: "Reads the configuration the confidential-sidecar-containers encfs image takes (EncfsSideCarArgs),\n" +
			"releases each key (or takes raw_key, the sidecar's test mode), and mounts each image at its\n" +
			"mount_point. Runs in the foreground; SIGINT/SIGTERM unmount everything.",
		Flags:  flags,
		Action: sidecarCmd,
	}
}

// sidecarConfig is the encfs sidecar's configuration (cmd/remotefs).
type sidecarConfig struct {
	AzureFilesystems []sidecarFS `json:"azure_filesystems"`
}

type sidecarFS struct {
	MountPoint      string             `json:"mount_point"`
	AzureURL        string             `json:"azure_url"`
	AzureURLPrivate bool               `json:"azure_url_private"`
	ReadWrite       bool               `json:"read_write"`
	Key             *skr.KeyBlob       `json:"key"`
	KeyDerivation   *skr.KeyDerivation `json:"key_derivation"`
	RawKey          string             `json:"raw_key"`
	VerityRootHash  string             `json:"verity_root_hash"`
	DMVerity        json.RawMessage    `json:"dm_verity"`
}

// parseSidecarConfig decodes the base64 (standard, as the sidecar takes it;
// plain JSON is accepted too) and checks what chestfs can honour.
func parseSidecarConfig(s string) (*sidecarConfig, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("sidecar: no configuration (set EncfsSideCarArgs or --config)")
	}
	raw := []byte(s)
	if !strings.HasPrefix(s, "{") {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			if b, err = base64.RawStdEncoding.DecodeString(s); err != nil {
				return nil, errors.New("sidecar: configuration is neither base64 nor JSON")
			}
		}
		raw = b
	}
	var cfg sidecarConfig
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, fmt.Errorf("sidecar: configuration: %w", err)
	}
	if len(cfg.AzureFilesystems) == 0 {
		return nil, errors.New("sidecar: configuration lists no azure_filesystems")
	}
	seen := map[string]bool{}
	for i, f := range cfg.AzureFilesystems {
		name := fmt.Sprintf("sidecar: azure_filesystems[%d]", i)
		switch {
		case f.MountPoint == "" || !filepath.IsAbs(f.MountPoint):
			return nil, fmt.Errorf("%s: mount_point must be an absolute path", name)
		case seen[filepath.Clean(f.MountPoint)]:
			return nil, fmt.Errorf("%s: mount_point %s listed twice", name, f.MountPoint)
		case f.AzureURL == "":
			return nil, fmt.Errorf("%s: azure_url is missing", name)
		case f.ReadWrite:
			return nil, fmt.Errorf("%s: read_write is not supported: chestfs mounts read-only", name)
		case len(f.DMVerity) > 0 && string(f.DMVerity) != "null":
			return nil, fmt.Errorf("%s: dm_verity is not supported", name)
		case f.RawKey == "" && f.Key == nil:
			return nil, fmt.Errorf("%s: neither key nor raw_key is given", name)
		case f.RawKey != "" && f.Key != nil:
			return nil, fmt.Errorf("%s: both key and raw_key are given: raw_key would skip the attested key release; give one", name)
		}
		if f.RawKey != "" {
			if _, err := hex.DecodeString(strings.TrimSpace(f.RawKey)); err != nil {
				return nil, fmt.Errorf("%s: raw_key is not a hex string", name)
			}
			slog.Warn("raw_key: the key is taken from the configuration, not released through attestation (a test mode)", "mount_point", f.MountPoint)
		}
		seen[filepath.Clean(f.MountPoint)] = true
	}
	return &cfg, nil
}

func sidecarCmd(c *cli.Context) error {
	if c.NArg() != 0 {
		return errors.New("usage: chestfs sidecar [--config BASE64]")
	}
	cfg, err := parseSidecarConfig(c.String("config"))
	if err != nil {
		return err
	}
	src, err := sourceConfigFrom(c)
	if err != nil {
		return err
	}
	rel, err := releaseConfigFrom(c)
	if err != nil {
		return err
	}
	var auth string
	if c.IsSet("auth") {
		auth = c.String("auth")
	}
	specs := make([]mountSpec, len(cfg.AzureFilesystems))
	for i, f := range cfg.AzureFilesystems {
		if specs[i], err = f.mountSpec(src, rel, auth, c.Bool("require-verity")); err != nil {
			return err
		}
	}
	return serve(c.Context, specs, serveOptionsFrom(c))
}

// mountSpec turns one azure_filesystems entry into what serve mounts: the
// shared source and release settings, the entry's URL, credential mode and
// key. auth, when set, overrides the mode the entry implies.
func (f sidecarFS) mountSpec(src sourceConfig, rel releaseConfig, auth string, requireVerity bool) (mountSpec, error) {
	src.Path = f.AzureURL
	switch {
	case auth != "":
		src.Auth = auth
	case blobsrc.IsURL(f.AzureURL) && strings.Contains(f.AzureURL, "sig="):
		src.Auth = "sas"
	case f.AzureURLPrivate:
		src.Auth = "azuread"
	default:
		src.Auth = "anonymous"
	}
	key := keyConfig{Kind: keyHex, Hex: strings.TrimSpace(f.RawKey)}
	if f.RawKey == "" {
		blob := *f.Key
		if blob.KeyDerivation == nil {
			blob.KeyDerivation = f.KeyDerivation
		}
		key = keyConfig{Kind: keyRelease, Blob: &blob}
	}
	cfg := openConfig{Source: src, Key: key, Release: rel, Verity: verityConfig{Require: requireVerity}}
	if f.VerityRootHash != "" {
		root, err := parseRootHash(f.VerityRootHash)
		if err != nil {
			return mountSpec{}, fmt.Errorf("%s: verity_root_hash: %w", f.MountPoint, err)
		}
		cfg.Verity.RootHash = root
	}
	if err := cfg.rootFromKeyBlob(); err != nil {
		return mountSpec{}, fmt.Errorf("%s: %w", f.MountPoint, err)
	}
	return mountSpec{Config: cfg, Mountpoint: f.MountPoint, Create: true}, nil
}
