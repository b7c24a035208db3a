//go:build !linux

package fusefs

// Only Linux sends FUSE_STATX; elsewhere the handler exists for the interface
// and reports nothing beyond the basic fields.
const (
	statxBasicStats = 0
	statxBtime      = 0
)

var statxAttrs []struct{ ext4, statx uint32 }
