package retryafter

import (
	"net/http"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"1": time.Second, "0": 0, "3600": Max,
		now.Add(9 * time.Second).Format(http.TimeFormat): 9 * time.Second,
		now.Add(-time.Hour).Format(http.TimeFormat):      0,
		now.Add(2 * time.Hour).Format(http.TimeFormat):   Max,
	} {
		if d, ok := Parse(v, now); !ok || d != want {
			t.Errorf("%q: %v %v, want %v", v, d, ok, want)
		}
	}
	for _, v := range []string{"", "-1", "later"} {
		if _, ok := Parse(v, now); ok {
			t.Errorf("%q accepted", v)
		}
	}
}
