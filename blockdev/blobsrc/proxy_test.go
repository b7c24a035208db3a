package blobsrc_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chestfs/chestfs/blockdev/blobsrc/azuritetest"
)

// fault is what the proxy does to one read request (GET or HEAD).
type fault int

const (
	pass     fault = iota
	busy           // 503 ServerBusy
	drop           // close the connection without an answer
	truncate       // send the headers and half the body, then cut the connection
	stall          // answer nothing until the client gives up
)

func (f fault) String() string {
	return [...]string{"pass", "503", "drop", "truncate", "stall"}[f]
}

// faultProxy sits between the client and Azurite on the loopback interface
// and breaks read requests on demand.
type faultProxy struct {
	t        testing.TB
	upstream string
	srv      *httptest.Server
	tr       *http.Transport

	mu      sync.Mutex
	latency time.Duration
	queue   []fault // applied to the next read requests, one each
	always  fault   // applied to every read request when the queue is empty
	rate    int64   // bytes per second per response body; 0 is unlimited

	reads    atomic.Int64 // read requests seen
	injected atomic.Int64 // faults applied
}

func newFaultProxy(t testing.TB, upstreamHost string) *faultProxy {
	p := &faultProxy{t: t, upstream: upstreamHost, tr: &http.Transport{DisableCompression: true}}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(func() {
		p.srv.CloseClientConnections()
		p.srv.Close()
		p.tr.CloseIdleConnections()
	})
	return p
}

// Endpoint is the proxied account endpoint.
func (p *faultProxy) Endpoint() string { return p.srv.URL + "/devstoreaccount1" }

func (p *faultProxy) set(latency time.Duration, always fault, queue ...fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.latency, p.always, p.queue = latency, always, append([]fault(nil), queue...)
}

// setRate limits each response body to bytesPerSec, like one TCP stream
// from a remote storage service.
func (p *faultProxy) setRate(bytesPerSec int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rate = bytesPerSec
}

func (p *faultProxy) next() (fault, time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f := p.always
	if len(p.queue) > 0 {
		f, p.queue = p.queue[0], p.queue[1:]
	}
	return f, p.latency
}

func (p *faultProxy) serve(w http.ResponseWriter, r *http.Request) {
	f, latency := pass, time.Duration(0)
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		p.reads.Add(1)
		f, latency = p.next()
	}
	if latency > 0 {
		select {
		case <-time.After(latency):
		case <-r.Context().Done():
			return
		}
	}
	if f != pass {
		p.injected.Add(1)
	}
	switch f {
	case busy:
		w.Header().Set("x-ms-error-code", "ServerBusy")
		w.Header().Set("Retry-After", "0")
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	case drop:
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
		return
	case stall:
		select {
		case <-r.Context().Done():
		case <-time.After(30 * time.Second):
		}
		return
	}

	resp := azuritetest.Forward(w, r, p.tr, p.upstream)
	if resp == nil {
		return
	}
	defer resp.Body.Close()
	if f == truncate && resp.ContentLength > 1 {
		io.CopyN(w, resp.Body, resp.ContentLength/2)
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // cuts the connection mid-body
	}
	p.mu.Lock()
	rate := p.rate
	p.mu.Unlock()
	if rate <= 0 {
		io.Copy(w, resp.Body)
		return
	}
	start, sent := time.Now(), int64(0)
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			sent += int64(n)
			if d := time.Duration(sent*int64(time.Second)/rate) - time.Since(start); d > 0 {
				time.Sleep(d)
			}
		}
		if err != nil {
			return
		}
	}
}
