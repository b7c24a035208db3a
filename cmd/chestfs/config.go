package main

import (
	"time"

	"github.com/chestfs/chestfs/blockdev/luks"
	"github.com/chestfs/chestfs/skr"
)

// The configuration of one opened image, as plain values. Flags (flags.go) or
// the sidecar's JSON (sidecar.go) are parsed into it once, at the edge; open
// (open.go) and everything below it see only these values, never the CLI.

// openConfig is everything needed to go from a SOURCE to a filesystem.
type openConfig struct {
	Source  sourceConfig
	Volume  volumeConfig
	Key     keyConfig
	Release releaseConfig
	Verity  verityConfig
}

// sourceConfig names where the ciphertext comes from and how blobs are read.
type sourceConfig struct {
	// Path is a local path or an Azure Blob URL.
	Path string
	// Auth is the blob credential mode (auto, anonymous, sas, azuread, sharedkey).
	Auth string
	// CacheBytes bounds the memory of cached blob chunks.
	CacheBytes int64
	// Readahead is how many chunks a sequential stream reads ahead; NoReadahead turns it off.
	Readahead   int
	NoReadahead bool
	// FetchBytes is the most one readahead GET reads.
	FetchBytes int
	// Retries of a failed blob read; NoRetries turns retrying off.
	Retries   int
	NoRetries bool
	// AllowHTTP allows plain http to hosts other than loopback.
	AllowHTTP bool
	// CacheDir keeps fetched blob chunks (ciphertext) on disk across restarts,
	// at most CacheDirBytes; empty means none.
	CacheDir      string
	CacheDirBytes int64
	// IOTimeout bounds one read from the blob, retries included (then EIO).
	IOTimeout time.Duration
	// HedgeAfter sends a second GET for a request unanswered this long; NoHedge turns that off.
	HedgeAfter time.Duration
	NoHedge    bool
}

// volumeConfig describes the encryption layer.
type volumeConfig struct {
	// Header is a detached LUKS header file; empty when the header is in front of the data.
	Header string
	// Plain selects plain dm-crypt with PlainOpts; the key is then the volume key itself.
	Plain     bool
	PlainOpts luks.PlainOptions
}

// keyKind says where the key comes from.
type keyKind int

const (
	keyNone    keyKind = iota
	keyFile            // the whole file, as cryptsetup --key-file reads it
	keyHex             // hex bytes (the sidecar's raw-key test mode)
	keyRelease         // attestation-gated secure key release of Blob
)

// keyConfig is where the LUKS passphrase (or, with --plain, the volume key)
// comes from. The key bytes themselves are read only when the image is opened.
type keyConfig struct {
	Kind keyKind
	// File is the key file (keyFile).
	File string
	// Hex is the key in hex (keyHex).
	Hex string
	// Blob is the sidecar's key blob (keyRelease).
	Blob *skr.KeyBlob
}

// releaseConfig tunes secure key release.
type releaseConfig struct {
	// Attestation names the evidence provider (snp, fake).
	Attestation string
	// CAPEM is extra trusted CA certificates for the attestation and Key Vault endpoints.
	CAPEM []byte
	// Token is the Key Vault bearer token; empty means Azure AD identities.
	Token string
	// TokenHosts are further hosts the token may be sent to.
	TokenHosts []string
	// Insecure allows fake evidence to go to an authority other than loopback.
	Insecure bool
}

// verityConfig pins the ciphertext to a dm-verity hash tree.
type verityConfig struct {
	// RootHash is the trusted root hash; nil when none is given.
	RootHash []byte
	// HashSource is a separate hash file or blob; empty means the tree follows the data.
	HashSource string
	// HashOffset is where the tree's superblock is, when HashOffsetGiven;
	// otherwise it is found after the data (or at 0 in HashSource).
	HashOffset      int64
	HashOffsetGiven bool
	// Require refuses to open an image without a verified tree.
	Require bool
}
