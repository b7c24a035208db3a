// Package retryafter reads the Retry-After header that Azure Storage, Key
// Vault and Azure Attestation send with 429 and 503 answers.
package retryafter

import (
	"net/http"
	"strconv"
	"time"
)

// Max caps the pause a server may ask for.
const Max = 60 * time.Second

// Parse reads a Retry-After value, seconds or an HTTP date, relative to
// now, capped at Max; ok is false when there is none or it is malformed.
func Parse(v string, now time.Time) (d time.Duration, ok bool) {
	if v == "" {
		return 0, false
	}
	if s, err := strconv.Atoi(v); err == nil {
		if s < 0 {
			return 0, false
		}
		d = time.Duration(min(s, int(Max/time.Second))) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	} else {
		return 0, false
	}
	return min(max(d, 0), Max), true
}
