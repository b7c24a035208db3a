//go:build !windows

package main

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/chestfs/chestfs/attest"
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
		Name:      "sidecar",
		ArgsUsage: "[-- CMD [ARGS...]]",
		Usage:     "mount every filesystem of the Azure encfs sidecar's configuration, read-only, as the sidecar would",
		Description: "Reads the configuration the confidential-sidecar-containers encfs image takes (EncfsSideCarArgs),\n" +
			"releases each key (or takes raw_key, the sidecar's test mode), and mounts each image at its\n" +
			"mount_point. Runs in the foreground; SIGINT/SIGTERM/SIGHUP unmount everything. With -- CMD, runs\n" +
			"CMD once every filesystem serves and unmounts when it exits, as chestfs run does.",
		Flags:  flags,
		Action: sidecarCmd,
	}
}

// sidecarConfig is the encfs sidecar's configuration (cmd/remotefs).
type sidecarConfig struct {
	AzureInfo        *sidecarAzureInfo `json:"azure_info"`
	AzureFilesystems []sidecarFS       `json:"azure_filesystems"`
}

// sidecarAzureInfo is the sidecar's azure_info: the managed identity for
// Azure tokens and the VCEK certificate fallback. Both go into each
// filesystem's key blob, where the release honours them.
type sidecarAzureInfo struct {
	CertCache *attest.CertCache `json:"certcache"`
	Identity  *skr.Identity     `json:"identity"`
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
	raw, err := sidecarConfigBytes(s)
	if err != nil {
		return nil, err
	}
	var cfg sidecarConfig
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, fmt.Errorf("sidecar: configuration: %w", err)
	}
	if len(cfg.AzureFilesystems) == 0 {
		return nil, errors.New("sidecar: configuration lists no azure_filesystems")
	}
	if err := cfg.AzureInfo.check(); err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for i := range cfg.AzureFilesystems {
		f := &cfg.AzureFilesystems[i]
		name := fmt.Sprintf("sidecar: azure_filesystems[%d]", i)
		if err := f.checkPlaceholders(name); err != nil {
			return nil, err
		}
		switch {
		case f.MountPoint == "" || !filepath.IsAbs(f.MountPoint):
			return nil, fmt.Errorf("%s: mount_point must be an absolute path", name)
		case seen[filepath.Clean(f.MountPoint)]:
			return nil, fmt.Errorf("%s: mount_point %s listed twice", name, f.MountPoint)
		case f.AzureURL == "":
			return nil, fmt.Errorf("%s: azure_url is missing", name)
		case f.ReadWrite:
			return nil, fmt.Errorf("%s: read_write is true, but chestfs mounts read-only: set \"read_write\": false (or remove it) for %s", name, f.MountPoint)
		case len(f.DMVerity) > 0 && string(f.DMVerity) != "null":
			return nil, fmt.Errorf("%s: dm_verity is not supported", name)
		case f.RawKey == "" && f.Key == nil:
			return nil, fmt.Errorf("%s: neither key nor raw_key is given", name)
		case f.RawKey != "" && f.Key != nil:
			return nil, fmt.Errorf("%s: both key and raw_key are given: raw_key would skip the attested key release; give one", name)
		}
		if f.VerityRootHash != "" {
			if _, err := parseRootHash(f.VerityRootHash); err != nil {
				return nil, fmt.Errorf("%s: verity_root_hash: %w", name, err)
			}
		}
		if f.RawKey != "" {
			if _, err := hex.DecodeString(strings.TrimSpace(f.RawKey)); err != nil {
				return nil, fmt.Errorf("%s: raw_key is not a hex string", name)
			}
			slog.Warn("raw_key: the key is taken from the configuration, not released through attestation (a test mode)", "mount_point", f.MountPoint)
		}
		seen[filepath.Clean(f.MountPoint)] = true
		cfg.AzureInfo.applyTo(f.Key)
	}
	return &cfg, nil
}

// sidecarConfigBytes decodes the configuration: base64 (standard, as the
// sidecar takes it), plain JSON, or the path of a JSON file such as
// Microsoft's encfs-sidecar-args.json.
func sidecarConfigBytes(s string) ([]byte, error) {
	if strings.HasPrefix(s, "{") {
		return []byte(s), nil
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err == nil {
		return b, nil
	}
	if b, err = base64.RawStdEncoding.DecodeString(s); err == nil {
		return b, nil
	}
	if st, err := os.Stat(s); err == nil && st.Mode().IsRegular() {
		if st.Size() > 1<<20 {
			return nil, fmt.Errorf("sidecar: configuration file %s is larger than 1 MiB", s)
		}
		b, err := os.ReadFile(s)
		if err != nil {
			return nil, fmt.Errorf("sidecar: %w", err)
		}
		return b, nil
	}
	return nil, errors.New("sidecar: configuration is neither base64, JSON nor a JSON file")
}

// checkPlaceholders names a "<...>" placeholder left from Microsoft's example.
func (f *sidecarFS) checkPlaceholders(name string) error {
	for field, v := range map[string]string{"mount_point": f.MountPoint, "azure_url": f.AzureURL} {
		if t := strings.TrimSpace(v); strings.HasPrefix(t, "<") && strings.HasSuffix(t, ">") {
			return fmt.Errorf("%s: %s is still the placeholder %s from Microsoft's example: fill it in", name, field, t)
		}
	}
	if f.Key != nil && f.Key.KeyDerivation == nil && f.KeyDerivation != nil {
		// The sidecar's key_derivation sits beside the key; the key blob carries it here.
		kd := *f.KeyDerivation
		f.Key.KeyDerivation = &kd
	}
	if f.Key != nil && f.Key.KTY != "RSA-HSM" && f.Key.KTY != "RSA" && f.Key.KeyDerivation != nil {
		// Valid only for RSA-HSM keys, as the example says: an oct key
		// ignores it, placeholders included.
		f.Key.KeyDerivation = nil
		f.KeyDerivation = nil
	}
	if f.Key != nil {
		if err := f.Key.Validate(); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

func (a *sidecarAzureInfo) check() error {
	if a == nil || a.CertCache == nil {
		return nil
	}
	if err := a.CertCache.Validate(); err != nil {
		return fmt.Errorf("sidecar: azure_info: %w", err)
	}
	return nil
}

// applyTo gives a key blob the identity and certificate cache of azure_info
// unless it names its own.
func (a *sidecarAzureInfo) applyTo(b *skr.KeyBlob) {
	if a == nil || b == nil {
		return
	}
	if b.Identity == nil && a.Identity != nil && a.Identity.ClientID != "" {
		id := *a.Identity
		b.Identity = &id
	}
	if b.CertCache == nil && a.CertCache != nil {
		cc := *a.CertCache
		b.CertCache = &cc
	}
}

func sidecarCmd(c *cli.Context) error {
	cfg, err := parseSidecarConfig(c.String("config"))
	if err != nil {
		return err
	}
	src, err := sourceConfigFrom(c)
	if err != nil {
		return usageError{err}
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
	opts, err := serveOptionsFrom(c)
	if err != nil {
		return err
	}
	if run := c.Args().Slice(); len(run) > 0 {
		if run[0] == "--" {
			run = run[1:]
		}
		opts.Run = run
	}
	if c.Bool("daemon") {
		if opts.Run != nil {
			return errors.New("sidecar: --daemon does not go with a command to run")
		}
		return daemonize()
	}
	return serve(c.Context, specs, opts)
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
