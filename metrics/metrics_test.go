package metrics

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape fetches /metrics in the text format and parses it.
func scrape(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("scrape: %s\n%s", resp.Status, b)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse the scrape: %v", err)
	}
	return fams
}

// value is the value of the series of family name whose labels include
// want (label, value pairs); -1 when there is none. For a histogram it is
// the number of observations.
func value(fams map[string]*dto.MetricFamily, name string, want ...string) float64 {
	f := fams[name]
	if f == nil {
		return -1
	}
next:
	for _, m := range f.Metric {
		have := map[string]string{}
		for _, l := range m.Label {
			have[l.GetName()] = l.GetValue()
		}
		for i := 0; i+1 < len(want); i += 2 {
			if have[want[i]] != want[i+1] {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return -1
}

// get returns the status code and body of GET base+path.
func get(t *testing.T, base, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(base + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func serve(t *testing.T, m *Metrics, ready func() bool) (string, *Server, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := m.Serve(ctx, "127.0.0.1:0", ready)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); srv.Close() })
	return "http://" + srv.Addr().String(), srv, cancel
}

// TestHealthReady: /healthz answers 200 while the server runs; /readyz
// follows the ready function; cancelling the context stops the listener.
func TestHealthReady(t *testing.T) {
	var ready atomic.Bool
	base, srv, cancel := serve(t, New(), ready.Load)
	for i, want := range []bool{false, true, false} {
		ready.Store(want)
		if code, body := get(t, base, "/healthz"); code != 200 || strings.TrimSpace(body) != "ok" {
			t.Fatalf("/healthz: %d %q", code, body)
		}
		code, body := get(t, base, "/readyz")
		if want && code != 200 || !want && code != http.StatusServiceUnavailable {
			t.Fatalf("step %d: /readyz with ready=%v: %d %q", i, want, code, body)
		}
	}
	cancel()
	<-srv.Done()
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Fatal("/healthz answers after the context ended")
	}
	if err := srv.Close(); err != nil {
		t.Fatalf("Close after the context ended: %v", err)
	}
}

// TestReadyNil: without a ready function the process is never ready.
func TestReadyNil(t *testing.T) {
	base, _, _ := serve(t, New(), nil)
	if code, _ := get(t, base, "/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz: %d", code)
	}
}

func TestServeBadAddress(t *testing.T) {
	m := New()
	_, srv, _ := serve(t, m, nil)
	for _, addr := range []string{srv.Addr().String(), "127.0.0.1:99999", "no-such-host.invalid:80"} {
		if s, err := m.Serve(context.Background(), addr, nil); err == nil {
			s.Close()
			t.Errorf("Serve(%q) succeeded", addr)
		} else if !strings.HasPrefix(err.Error(), "metrics: listen on "+addr) {
			t.Errorf("Serve(%q): %v", addr, err)
		}
	}
}

// TestFUSEObserver: each call is one observation of its operation; bytes
// add up; errors are counted by errno; an operation outside the known set
// is still counted.
func TestFUSEObserver(t *testing.T) {
	m := New()
	obs := m.FUSEObserver("a")
	obsB := m.FUSEObserver("b")
	obs("read", 3*time.Millisecond, 4096, nil)
	obs("read", time.Microsecond, 100, nil)
	obs("read", time.Millisecond, 0, syscall.EIO)
	obs("lookup", time.Microsecond, 0, nil)
	obs("getxattr", time.Microsecond, 0, syscall.ENODATA)
	obs("newop", time.Microsecond, 0, errors.New("not an errno"))
	obsB("read", time.Microsecond, 7, nil)
	base, _, _ := serve(t, m, nil)
	f := scrape(t, base)
	checks := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"chestfs_fuse_request_duration_seconds", []string{"fs", "a", "op", "read"}, 3},
		{"chestfs_fuse_request_duration_seconds", []string{"fs", "a", "op", "lookup"}, 1},
		{"chestfs_fuse_request_duration_seconds", []string{"fs", "a", "op", "newop"}, 1},
		{"chestfs_fuse_request_duration_seconds", []string{"fs", "a", "op", "statfs"}, 0},
		{"chestfs_fuse_request_duration_seconds", []string{"fs", "b", "op", "read"}, 1},
		{"chestfs_fuse_read_bytes_total", []string{"fs", "a"}, 4196},
		{"chestfs_fuse_read_bytes_total", []string{"fs", "b"}, 7},
		{"chestfs_fuse_request_errors_total", []string{"fs", "a", "op", "read", "errno", "EIO"}, 1},
		{"chestfs_fuse_request_errors_total", []string{"fs", "a", "op", "getxattr", "errno", "ENODATA"}, 1},
		{"chestfs_fuse_request_errors_total", []string{"fs", "a", "op", "newop", "errno", "other"}, 1},
	}
	for _, c := range checks {
		if got := value(f, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	// The 3 ms read falls in the 5 ms bucket, not the 2.5 ms one.
	for _, m := range f["chestfs_fuse_request_duration_seconds"].Metric {
		if labels(m)["fs"] != "a" || labels(m)["op"] != "read" {
			continue
		}
		for _, b := range m.Histogram.Bucket {
			want := map[float64]uint64{0.001: 2, 0.0025: 2, 0.005: 3}[b.GetUpperBound()]
			if want != 0 && b.GetCumulativeCount() != want {
				t.Errorf("bucket le=%v: %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want)
			}
		}
	}
	if value(f, "go_goroutines") <= 0 || value(f, "process_resident_memory_bytes") <= 0 {
		t.Error("the Go and process collectors are missing")
	}
}

func labels(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.Label {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

// randomFile writes n pseudo-random bytes to a new file in dir.
func randomFile(t *testing.T, dir, name string, n int, seed uint64) []byte {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return b
}

func diff(before, after map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	return value(after, name, labels...) - max(value(before, name, labels...), 0)
}

// BenchmarkFUSEObserver is the cost the observer adds to each FUSE request.
func BenchmarkFUSEObserver(b *testing.B) {
	obs := New().FUSEObserver("img")
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		obs("read", 40*time.Microsecond, 128<<10, nil)
	}
}
