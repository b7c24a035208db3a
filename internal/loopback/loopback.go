// Package loopback says whether a host is this machine, the one place where
// plain http, test-only modes and mock services are allowed.
package loopback

import (
	"net"
	"strings"
)

// Host reports whether host (no port) is localhost or a loopback address
// (127.0.0.0/8, ::1). Names are not resolved: DNS is untrusted.
func Host(host string) bool {
	h := strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}
