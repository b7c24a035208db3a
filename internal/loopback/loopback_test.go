package loopback

import "testing"

func TestHost(t *testing.T) {
	for h, want := range map[string]bool{
		"localhost": true, "LOCALHOST.": true, "::ffff:127.0.0.1": true, "::": false, "128.0.0.1": false, "a.localhost": true, "127.0.0.1": true, "127.8.9.10": true,
		"::1": true, "[::1]": true,
		"azurite": false, "10.0.0.1": false, "0.0.0.0": false, "127.0.0.1.nip.io": false, "": false,
		"acct.blob.core.windows.net": false, "localhost.example.com": false,
	} {
		if got := Host(h); got != want {
			t.Errorf("Host(%q) = %v, want %v", h, got, want)
		}
	}
}
