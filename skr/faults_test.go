package skr

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chestfs/chestfs/attest"
)

// faultServer is an attestation service or key vault on loopback (TLS)
// that answers each request from a script: a status (with Retry-After), a
// stall (no answer until the client gives up) or, past the script, 200.
type faultServer struct {
	srv   *httptest.Server
	mu    sync.Mutex
	plan  []string // "stall", "503", "429:1" (status:Retry-After), ...
	reqs  atomic.Int64
	times []time.Time
}

func newFaultServer(t *testing.T, plan ...string) *faultServer {
	f := &faultServer{plan: plan}
	gone := make(chan struct{})
	f.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Read the body: only then does the server notice a client that
		// hung up.
		io.Copy(io.Discard, r.Body)
		f.reqs.Add(1)
		f.mu.Lock()
		f.times = append(f.times, time.Now())
		step := "200"
		if len(f.plan) > 0 {
			step, f.plan = f.plan[0], f.plan[1:]
		}
		f.mu.Unlock()
		if step == "stall" {
			select {
			case <-r.Context().Done():
			case <-gone:
			}
			return
		}
		code, ra, _ := strings.Cut(step, ":")
		if ra != "" {
			w.Header().Set("Retry-After", ra)
		}
		var status int
		fmt.Sscan(code, &status)
		w.WriteHeader(status)
		if status != 200 {
			fmt.Fprintf(w, `{"error":{"code":"Busy","message":"scripted %d"}}`, status)
		}
	}))
	t.Cleanup(func() {
		close(gone)
		f.srv.Close()
	})
	return f
}

func (f *faultServer) opts(timeout time.Duration, attempts int) Options {
	return Options{HTTPClient: f.srv.Client(), Token: "t", Attempts: attempts, Backoff: 50 * time.Millisecond,
		Timeout: timeout, Logger: slog.New(slog.DiscardHandler)}
}

// keyFigure is one row of the key-release fault table (logged).
func keyFigure(t *testing.T, fault, sees string, d time.Duration, reqs int64) {
	t.Logf("| %s | %s | %v | %d |", fault, sees, d.Round(10*time.Millisecond), reqs)
}

// The attestation service or the vault stalls: each try is bounded by
// Options.Timeout, the tries by Attempts; then one error line.
func TestKeyReleaseStall(t *testing.T) {
	const timeout, attempts = 300 * time.Millisecond, 3
	ev, err := fakeEvidence(t)
	if err != nil {
		t.Fatal(err)
	}
	priv, _ := rsa.GenerateKey(rand.Reader, 2048)
	for _, c := range []struct {
		name string
		call func(f *faultServer) error
	}{
		{"attestation service stalls", func(f *faultServer) error {
			_, _, err := Attest(context.Background(), f.srv.URL, ev, f.opts(timeout, attempts))
			return err
		}},
		{"key vault stalls", func(f *faultServer) error {
			_, err := ReleaseKey(context.Background(), f.srv.URL, "k", "", "attestation-token", priv, f.opts(timeout, attempts))
			return err
		}},
	} {
		f := newFaultServer(t, "stall", "stall", "stall", "stall", "stall")
		start := time.Now()
		err := c.call(f)
		d := time.Since(start)
		if err == nil || strings.Contains(err.Error(), "\n") {
			t.Fatalf("%s: %v", c.name, err)
		}
		// 3 tries of 300ms and 50+100ms of backoff; generous for a busy box.
		if d > 3*(attempts*timeout+time.Second) {
			t.Errorf("%s: gave up after %v", c.name, d)
		}
		if n := f.reqs.Load(); n != attempts {
			t.Errorf("%s: %d requests, want %d", c.name, n, attempts)
		}
		t.Logf("%s: %v", c.name, err)
		keyFigure(t, c.name+" (Timeout 300ms, Attempts 3)", "error: "+firstWords(err), d, f.reqs.Load())
	}
}

func firstWords(err error) string {
	s := err.Error()
	if i := strings.Index(s, ": "); i > 0 && len(s) > 90 {
		return s[:90] + "..."
	}
	return s
}

func fakeEvidence(t *testing.T) (*attest.Evidence, error) {
	p, err := attest.NewFake(attest.FakeOptions{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, err
	}
	return p.Evidence(context.Background(), []byte("runtime data"))
}

// 5xx and 429 answers: retried with backoff, Retry-After honoured in full,
// at most Attempts requests, then one line naming the status.
func TestKeyReleaseBusy(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name     string
		plan     []string
		attempts int
		ok       bool
		minWait  time.Duration // exact lower bound: the Retry-After asked for
		reqs     int64
	}{
		{"503 burst (2), then 200", []string{"503", "503"}, 4, true, 50 * time.Millisecond, 3},
		{"500 lasting", []string{"500", "500", "500", "500", "500"}, 4, false, 0, 4},
		{"429 Retry-After: 1, then 200", []string{"429:1"}, 4, true, time.Second, 2},
		{"429 Retry-After: 2 lasting", []string{"429:2", "429:2", "429:2", "429:2"}, 3, false, 4 * time.Second, 3},
		{"503 Retry-After as an HTTP date (+2s), then 200", []string{"503:DATE+2"}, 4, true, time.Second, 2},
	} {
		plan := slices.Clone(c.plan)
		for i, p := range plan { // an HTTP date 2 s from now
			plan[i] = strings.Replace(p, "DATE+2", time.Now().Add(2*time.Second).UTC().Format(http.TimeFormat), 1)
		}
		f := newFaultServer(t, plan...)
		o := f.opts(5*time.Second, c.attempts)
		start := time.Now()
		status, _, err := o.do(ctx, "key vault test", http.MethodGet, f.srv.URL+"/x", nil, nil)
		d := time.Since(start)
		if c.ok != (err == nil && status == 200) {
			t.Fatalf("%s: status %d, %v", c.name, status, err)
		}
		if d < c.minWait {
			t.Errorf("%s: answered after %v, before the %v asked for", c.name, d, c.minWait)
		}
		if n := f.reqs.Load(); n != c.reqs {
			t.Errorf("%s: %d requests, want %d", c.name, n, c.reqs)
		}
		sees := "released"
		if !c.ok {
			sees = fmt.Sprintf("error after the last answer (HTTP %d)", status)
		}
		keyFigure(t, c.name, sees, d, f.reqs.Load())
	}
}

// A Retry-After past the caller's deadline ends the request at once, with
// one line saying so, rather than a retry that cannot come in time.
func TestKeyReleaseRetryAfterPastDeadline(t *testing.T) {
	f := newFaultServer(t, "429:30")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	o := f.opts(5*time.Second, 4)
	start := time.Now()
	_, _, err := o.do(ctx, "key vault test", http.MethodGet, f.srv.URL+"/x", nil, nil)
	d := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "retry after 30s") || !strings.Contains(err.Error(), "429") {
		t.Fatalf("err %v", err)
	}
	if f.reqs.Load() != 1 || d > 4*time.Second {
		t.Fatalf("%d requests, %v", f.reqs.Load(), d)
	}
	t.Logf("%v", err)
	keyFigure(t, "429 Retry-After: 30, deadline 5s", "error at once: "+firstWords(err), d, f.reqs.Load())
	if !errors.Is(ctx.Err(), nil) {
		t.Fatal("the caller's deadline passed")
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"1": time.Second, "0": 0, "3600": maxRetryAfter,
		now.Add(9 * time.Second).Format(http.TimeFormat): 9 * time.Second,
	} {
		if d, ok := parseRetryAfter(v, now); !ok || d != want {
			t.Errorf("%q: %v %v, want %v", v, d, ok, want)
		}
	}
	for _, v := range []string{"", "-1", "later"} {
		if _, ok := parseRetryAfter(v, now); ok {
			t.Errorf("%q accepted", v)
		}
	}
}
