package main

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/chestfs/chestfs/blockdev/blobsrc"
	"github.com/chestfs/chestfs/fusefs"
	"github.com/chestfs/chestfs/skr"
)

func init() {
	flags := []cli.Flag{
		&cli.StringFlag{Name: "config", EnvVars: []string{"EncfsSideCarArgs"},
			Usage: "the sidecar's configuration: base64 of {\"azure_filesystems\":[...]} (default: $EncfsSideCarArgs)"},
		&cli.BoolFlag{Name: "allow-other", Usage: "let other users (the application container's) see the mounts"},
	}
	flags = append(flags, skrFlags()...)
	flags = append(flags, sourceFlags()...)
	commands = append(commands, &cli.Command{
		Name:  "sidecar",
		Usage: "mount every filesystem of the Azure encfs sidecar's configuration, read-only, as the sidecar would",
		Description: "Reads the configuration the confidential-sidecar-containers encfs image takes (EncfsSideCarArgs),\n" +
			"releases each key (or takes raw_key, the sidecar's test mode), and mounts each image at its\n" +
			"mount_point. Runs in the foreground; SIGINT/SIGTERM unmount everything.",
		Flags:  flags,
		Action: sidecarCmd,
	})
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
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)

	type mounted struct {
		srv *fusefs.Server
		mp  string
		o   *opened
	}
	var mounts []mounted
	unmountAll := func() {
		for i := len(mounts) - 1; i >= 0; i-- {
			if err := mounts[i].srv.Unmount(); err != nil {
				slog.Warn("unmount failed; detaching lazily", "mountpoint", mounts[i].mp, "err", err)
				lazyUnmount(mounts[i].mp)
			}
			mounts[i].o.Close()
		}
	}
	for i, f := range cfg.AzureFilesystems {
		key, err := sidecarKey(c, f)
		if err != nil {
			unmountAll()
			return fmt.Errorf("%s: %w", f.MountPoint, err)
		}
		auth := "anonymous"
		if f.AzureURLPrivate {
			auth = "azuread"
		}
		if blobsrc.IsURL(f.AzureURL) && strings.Contains(f.AzureURL, "sig=") {
			auth = "sas"
		}
		if c.IsSet("auth") {
			auth = c.String("auth")
		}
		o, err := openVolumeKey(c.Context, c, f.AzureURL, auth, key)
		clear(key)
		if err != nil {
			unmountAll()
			return fmt.Errorf("%s: %w", f.MountPoint, err)
		}
		fsys, err := o.openExt4()
		if err == nil {
			err = os.MkdirAll(f.MountPoint, 0o755)
		}
		if err == nil && isMountPoint(f.MountPoint) {
			err = fmt.Errorf("mountpoint %s is busy", f.MountPoint)
		}
		var srv *fusefs.Server
		if err == nil {
			srv, err = fusefs.Mount(fsys, f.MountPoint, fusefs.Options{AllowOther: c.Bool("allow-other"), FsName: displaySource(f.AzureURL)})
		}
		if err != nil {
			o.Close()
			unmountAll()
			return fmt.Errorf("%s: %w", f.MountPoint, err)
		}
		mounts = append(mounts, mounted{srv, f.MountPoint, o})
		slog.Info("mounted", "n", i, "source", displaySource(f.AzureURL), "mountpoint", f.MountPoint)
	}
	s := <-sig
	slog.Info("unmounting", "signal", s.String())
	unmountAll()
	return nil
}

// sidecarKey returns the filesystem's key: raw_key (hex, the sidecar's test
// mode) or a secure key release of its key blob.
func sidecarKey(c *cli.Context, f sidecarFS) ([]byte, error) {
	if f.RawKey != "" {
		k, err := hex.DecodeString(strings.TrimSpace(f.RawKey))
		if err != nil {
			return nil, errors.New("raw_key is not a hex string")
		}
		return k, nil
	}
	blob := *f.Key
	if blob.KeyDerivation == nil {
		blob.KeyDerivation = f.KeyDerivation
	}
	if err := blob.Validate(); err != nil {
		return nil, err
	}
	return release(c.Context, c, &blob)
}
