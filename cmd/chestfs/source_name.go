package main

import (
	"path/filepath"
	"strings"

	"github.com/chestfs/chestfs/blockdev/blobsrc"
)

// displaySource names the source in the mount table and logs without a SAS token.
func displaySource(source string) string {
	if blobsrc.IsURL(source) {
		if i := strings.IndexByte(source, '?'); i >= 0 {
			return source[:i]
		}
		return source
	}
	if abs, err := filepath.Abs(source); err == nil {
		return abs
	}
	return source
}
