package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/chestfs/chestfs/blockdev/blobsrc"
	"github.com/chestfs/chestfs/blockdev/cache"
	"github.com/chestfs/chestfs/blockdev/luks"
	"github.com/chestfs/chestfs/pack"
	"github.com/chestfs/chestfs/skr"
)

// This file is the only place where the flags of the reading commands are
// declared and turned into an openConfig. A new flag is added here and read
// by the layer that uses it, through the config.

// keyFlags select where the LUKS passphrase (or, with --plain, the volume key) comes from.
func keyFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "key-file", Category: "Key", Usage: "passphrase `FILE`, read whole as cryptsetup --key-file does; - reads standard input"},
		&cli.StringFlag{Name: "key-hex", Category: "Key", EnvVars: []string{"CHESTFS_KEY_HEX"},
			Usage: "passphrase bytes in `HEX` (the sidecar's raw-key test mode); on the command line every user can read it: prefer $CHESTFS_KEY_HEX or --key-file -"},
		&cli.StringFlag{Name: "skr", Category: "Key", Usage: "release the key through attestation; `CONFIG.json` is the sidecar's key blob"},
	}
}

// releaseFlags tune attestation-gated key release.
func releaseFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "attestation", Category: "Key release", Value: "snp",
			Usage: "evidence provider: snp (/dev/sev-guest or configfs-tsm: ACI, confidential AKS), azure-cvm (the vTPM of an Azure confidential VM), " +
				"fake or tpm-sim (INSECURE test evidence, for mock-kms)"},
		&cli.StringFlag{Name: "ca", Category: "Key release", Usage: "extra trusted CA `PEM` for the attestation and Key Vault endpoints (mock-kms writes one)"},
		&cli.StringFlag{Name: "akv-token", Category: "Key release", EnvVars: []string{"CHESTFS_AKV_TOKEN"},
			Usage: "Key Vault bearer `TOKEN` (default: managed or workload identity through Azure AD)"},
		&cli.StringSliceFlag{Name: "token-host", Category: "Key release",
			Usage: "also send the Key Vault token to `HOST` (default: only Key Vault and Managed HSM hosts of the Azure clouds, and loopback)"},
		&cli.BoolFlag{Name: "insecure", Category: "Key release", Usage: "allow --attestation fake or tpm-sim against an authority other than loopback"},
	}
}

// volumeFlags describe the encryption layer when it is not a LUKS header in front of the data.
func volumeFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "header", Category: "Volume", Usage: "detached LUKS header `FILE`"},
		&cli.BoolFlag{Name: "plain", Category: "Volume", Usage: "no header: plain dm-crypt; the key bytes are the volume key"},
		&cli.StringFlag{Name: "cipher", Category: "Volume", Value: "aes-xts-plain64", Usage: "plain dm-crypt cipher"},
		&cli.IntFlag{Name: "key-size", Category: "Volume", Value: 256, Usage: "plain dm-crypt key size in `BITS` (cryptsetup's default 256 uses the first 32 key bytes)"},
		&cli.IntFlag{Name: "sector-size", Category: "Volume", Value: 512, Usage: "plain dm-crypt sector size (512|1024|2048|4096)"},
		&cli.Uint64Flag{Name: "offset", Category: "Volume", Usage: "plain dm-crypt data offset in 512-byte `SECTORS`"},
	}
}

// sourceFlags tune how a blob source is read.
func sourceFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "auth", Category: "Source", Value: "auto", Usage: "blob credentials: auto, anonymous, sas, azuread, sharedkey"},
		&cli.StringFlag{Name: "sas-file", Category: "Source", EnvVars: []string{"CHESTFS_SAS_FILE"},
			Usage: "read the blob's SAS query string (sv=...&sig=...) from `FILE` instead of putting it in the URL (also $CHESTFS_SAS)"},
		&cli.StringFlag{Name: "cache-size", Category: "Source", Value: "256M", Usage: "memory for cached blob chunks (`SIZE`, K/M/G suffixes)"},
		&cli.IntFlag{Name: "readahead", Category: "Source", Value: cache.DefaultReadahead, Usage: "chunks read ahead on sequential access (0 turns it off)"},
		&cli.StringFlag{Name: "fetch-size", Category: "Source", Value: "8M", Usage: "most bytes one readahead GET reads (`SIZE`): larger requests cost the service and the bill less"},
		&cli.IntFlag{Name: "retries", Category: "Source", Value: 5, Usage: "retries of a failed blob read (0 turns retrying off)"},
		&cli.StringFlag{Name: "cache-dir", Category: "Source", Usage: "keep fetched blob chunks (ciphertext only, checked on reuse) in `DIR` across restarts"},
		&cli.StringFlag{Name: "cache-dir-size", Category: "Source", Value: "4G", Usage: "most disk --cache-dir may use (`SIZE`)"},
		&cli.DurationFlag{Name: "io-timeout", Category: "Source", Value: blobsrc.DefaultIOTimeout,
			Usage: "a blob read that gets no data within this, retries included, fails with EIO (a stalled connection is dropped and re-dialled before that)"},
		&cli.DurationFlag{Name: "hedge-after", Category: "Source", Value: blobsrc.DefaultHedgeAfter,
			Usage: "send a second GET for a request unanswered this long; the first answer wins (0 turns it off)"},
		&cli.BoolFlag{Name: "allow-http", Category: "Source", Usage: "allow a plain http:// blob URL to a host other than loopback (a SAS would go out in clear text)"},
	}
}

// openFlags are the flags of every command that opens an image.
func openFlags() []cli.Flag {
	var f []cli.Flag
	f = append(f, keyFlags()...)
	f = append(f, releaseFlags()...)
	f = append(f, volumeFlags()...)
	f = append(f, sourceFlags()...)
	f = append(f, verityFlags()...)
	return f
}

// openConfigFrom parses the flags of a reading command into an openConfig
// for SOURCE.
func openConfigFrom(c *cli.Context, source string) (openConfig, error) {
	var cfg openConfig
	var err error
	if cfg.Source, err = sourceConfigFrom(c); err != nil {
		return cfg, usageError{err} // a flag's value is malformed
	}
	if cfg.Source.Path, err = withSAS(c, source); err != nil {
		return cfg, err
	}
	if cfg.Key, err = keyConfigFrom(c); err != nil {
		return cfg, err
	}
	if cfg.Release, err = releaseConfigFrom(c); err != nil {
		return cfg, err
	}
	cfg.Volume = volumeConfigFrom(c)
	if cfg.Verity, err = verityConfigFrom(c); err != nil {
		return cfg, usageError{err}
	}
	return cfg, cfg.rootFromKeyBlob()
}

// sourceConfigFrom parses the blob-reading flags.
func sourceConfigFrom(c *cli.Context) (sourceConfig, error) {
	s := sourceConfig{
		Auth:        c.String("auth"),
		Readahead:   c.Int("readahead"),
		NoReadahead: c.Int("readahead") == 0,
		Retries:     c.Int("retries"),
		NoRetries:   c.Int("retries") == 0,
		AllowHTTP:   c.Bool("allow-http"),
		IOTimeout:   c.Duration("io-timeout"),
		HedgeAfter:  c.Duration("hedge-after"),
		NoHedge:     c.Duration("hedge-after") == 0,
	}
	if s.IOTimeout <= 0 || s.HedgeAfter < 0 {
		return s, errors.New("--io-timeout must be positive and --hedge-after not negative")
	}
	if s.Readahead < 0 || s.Retries < 0 {
		return s, errors.New("--readahead and --retries take a count of 0 or more")
	}
	size, err := pack.ParseSize(c.String("cache-size"))
	if err != nil {
		return s, fmt.Errorf("--cache-size: %w", err)
	}
	s.CacheBytes = size
	fetch, err := pack.ParseSize(c.String("fetch-size"))
	if err != nil || fetch <= 0 || fetch > 256<<20 {
		return s, fmt.Errorf("--fetch-size %q: want a size from 1 to 256M", c.String("fetch-size"))
	}
	s.FetchBytes = int(fetch)
	if s.CacheDir = c.String("cache-dir"); s.CacheDir != "" {
		if s.CacheDirBytes, err = pack.ParseSize(c.String("cache-dir-size")); err != nil {
			return s, fmt.Errorf("--cache-dir-size: %w", err)
		}
	}
	return s, nil
}

// keyConfigFrom takes at most one of --key-file, --key-hex and --skr. The key
// bytes are not read here: only open does, just before it unlocks.
func keyConfigFrom(c *cli.Context) (keyConfig, error) {
	n := 0
	for _, name := range []string{"key-file", "key-hex", "skr"} {
		if c.IsSet(name) {
			n++
		}
	}
	switch {
	case n > 1:
		return keyConfig{}, errors.New("give at most one of --key-file, --key-hex, --skr")
	case c.IsSet("key-file"):
		return keyConfig{Kind: keyFile, File: c.String("key-file")}, nil
	case c.IsSet("key-hex"):
		warnSecretOnArgv("key-hex", "$CHESTFS_KEY_HEX or --key-file -")
		return keyConfig{Kind: keyHex, Hex: strings.TrimSpace(c.String("key-hex"))}, nil
	case c.IsSet("skr"):
		b, err := os.ReadFile(c.String("skr"))
		if err != nil {
			return keyConfig{}, fmt.Errorf("--skr: %w", err)
		}
		blob, err := skr.ParseKeyBlob(b)
		if err != nil {
			return keyConfig{}, err
		}
		return keyConfig{Kind: keyRelease, Blob: blob}, nil
	}
	return keyConfig{}, nil
}

// releaseConfigFrom parses the key-release flags.
func releaseConfigFrom(c *cli.Context) (releaseConfig, error) {
	r := releaseConfig{
		Attestation: c.String("attestation"),
		Token:       c.String("akv-token"),
		TokenHosts:  c.StringSlice("token-host"),
		Insecure:    c.Bool("insecure"),
	}
	warnSecretOnArgv("akv-token", "$CHESTFS_AKV_TOKEN")
	if path := c.String("ca"); path != "" {
		pem, err := os.ReadFile(path)
		if err != nil {
			return r, fmt.Errorf("--ca: %w", err)
		}
		r.CAPEM = pem
	}
	return r, nil
}

// volumeConfigFrom parses the volume flags.
func volumeConfigFrom(c *cli.Context) volumeConfig {
	return volumeConfig{
		Header: c.String("header"),
		Plain:  c.Bool("plain"),
		PlainOpts: luks.PlainOptions{
			Cipher:     c.String("cipher"),
			KeySize:    c.Int("key-size"),
			SectorSize: c.Int("sector-size"),
			Offset:     c.Uint64("offset"),
		},
	}
}

// args checks the positional argument count.
func args(c *cli.Context, names ...string) ([]string, error) {
	a := c.Args().Slice()
	min := 0
	for _, n := range names {
		if !strings.HasPrefix(n, "[") {
			min++
		}
	}
	if len(a) < min || len(a) > len(names) {
		return nil, fmt.Errorf("usage: chestfs %s [options] %s", c.Command.Name, strings.Join(names, " "))
	}
	return a, nil
}

// warnSecretOnArgv warns when the secret flag name was given on the command
// line, where /proc/PID/cmdline shows it to every user of the machine.
func warnSecretOnArgv(name, instead string) {
	if onArgv(name) {
		slog.Warn("a secret on the command line is readable by every user through /proc/PID/cmdline", "flag", "--"+name, "instead", instead)
	}
}

// onArgv reports whether --name (or -name) appears among the process's arguments.
func onArgv(name string) bool {
	for _, a := range os.Args[1:] {
		if a == "--" {
			break
		}
		a = strings.TrimLeft(a, "-")
		if a == name || strings.HasPrefix(a, name+"=") {
			return true
		}
	}
	return false
}

// withSAS adds the SAS from --sas-file or $CHESTFS_SAS to a blob URL, and
// warns when the URL on the command line carries one itself.
func withSAS(c *cli.Context, source string) (string, error) {
	sas := os.Getenv("CHESTFS_SAS")
	if path := c.String("sas-file"); path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("--sas-file: %w", err)
		}
		sas = string(b)
	}
	sas = strings.TrimPrefix(strings.TrimSpace(sas), "?")
	if !blobsrc.IsURL(source) {
		if sas != "" && c.IsSet("sas-file") {
			return "", errors.New("--sas-file is for blob URLs")
		}
		return source, nil
	}
	if strings.Contains(source, "sig=") {
		slog.Warn("a SAS in the URL on the command line is readable by every user through /proc/PID/cmdline; use --sas-file or $CHESTFS_SAS")
		return source, nil
	}
	if sas == "" {
		return source, nil
	}
	if strings.Contains(source, "?") {
		return source + "&" + sas, nil
	}
	return source + "?" + sas, nil
}
