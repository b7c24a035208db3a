package azuritetest

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// ReadServer answers the Blob service's read requests for one blob held in
// memory: Get Blob Properties (HEAD) and Get Blob (GET, whole or ranged by
// x-ms-range or Range, with If-Match), at any path and with any query (a SAS
// is accepted, not checked). It stands in for Azure's storage front end in
// benchmarks, where the emulator's own CPU would set the pace: serving a
// range costs it one write from memory.
//
// GET /_gets answers the number of blob GETs served so far (not counted);
// GET /_link?link=B&conn=B calls SetLink (bytes per second).
type ReadServer struct {
	data     []byte
	etag     string
	kind     string
	modified string
	latency  time.Duration
	gets     atomic.Int64
	link     pacer
	connRate atomic.Int64
	// OnGet, when set before serving, sees the range of each ranged GET.
	OnGet func(from, to int64)
}

// NewReadServer serves data as a page blob, answering each request after
// latency (the round trip to a storage front end).
func NewReadServer(data []byte, latency time.Duration) *ReadServer {
	now := time.Now().UTC()
	return &ReadServer{data: data, latency: latency, kind: "PageBlob",
		etag:     fmt.Sprintf("\"0x%X\"", now.UnixNano()),
		modified: now.Format(http.TimeFormat)}
}

// Gets is the number of blob GETs served (answered or not).
func (s *ReadServer) Gets() int64 { return s.gets.Load() }

// ETag is the blob's ETag, quoted as the service sends it.
func (s *ReadServer) ETag() string { return s.etag }

func (s *ReadServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/_gets" {
		fmt.Fprintln(w, s.gets.Load())
		return
	}
	if r.URL.Path == "/_link" {
		q := r.URL.Query()
		link, err1 := strconv.ParseInt(q.Get("link"), 10, 64)
		conn, err2 := strconv.ParseInt(q.Get("conn"), 10, 64)
		if err1 != nil || err2 != nil {
			http.Error(w, "want link=BYTES&conn=BYTES (per second, 0: unlimited)", http.StatusBadRequest)
			return
		}
		s.SetLink(link, conn)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		s.fail(w, http.StatusMethodNotAllowed, "UnsupportedHttpVerb")
		return
	}
	if r.Method == http.MethodGet {
		s.gets.Add(1)
	}
	if s.latency > 0 {
		t := time.NewTimer(s.latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	h := w.Header()
	h.Set("ETag", s.etag)
	h.Set("Last-Modified", s.modified)
	h.Set("x-ms-blob-type", s.kind)
	h.Set("x-ms-version", "2023-11-03")
	h.Set("x-ms-request-id", "00000000-0000-0000-0000-000000000000")
	h.Set("Accept-Ranges", "bytes")
	h.Set("Content-Type", "application/octet-stream")
	if m := r.Header.Get("If-Match"); m != "" && m != "*" && m != s.etag {
		s.fail(w, http.StatusPreconditionFailed, "ConditionNotMet")
		return
	}
	size := int64(len(s.data))
	if r.Method == http.MethodHead {
		h.Set("Content-Length", strconv.FormatInt(size, 10))
		w.WriteHeader(http.StatusOK)
		return
	}
	rng := r.Header.Get("x-ms-range")
	if rng == "" {
		rng = r.Header.Get("Range")
	}
	if rng == "" {
		h.Set("Content-Length", strconv.FormatInt(size, 10))
		w.WriteHeader(http.StatusOK)
		s.send(r.Context(), w, s.data)
		return
	}
	from, to, ok := parseRange(rng, size)
	if !ok {
		h.Set("Content-Range", "bytes */"+strconv.FormatInt(size, 10))
		s.fail(w, http.StatusRequestedRangeNotSatisfiable, "InvalidRange")
		return
	}
	if s.OnGet != nil {
		s.OnGet(from, to)
	}
	h.Set("Content-Length", strconv.FormatInt(to-from, 10))
	h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", from, to-1, size))
	w.WriteHeader(http.StatusPartialContent)
	s.send(r.Context(), w, s.data[from:to])
}

// fail answers an error the way the service does: its code in
// x-ms-error-code and an XML body.
func (s *ReadServer) fail(w http.ResponseWriter, status int, code string) {
	w.Header().Set("x-ms-error-code", code)
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	fmt.Fprintf(w, "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>%s</Code><Message>%s</Message></Error>", code, code)
}

// parseRange reads "bytes=A-B" or "bytes=A-" into [from, to), clipped to
// size; false when it is malformed or starts past the end.
func parseRange(v string, size int64) (from, to int64, ok bool) {
	spec, found := strings.CutPrefix(strings.TrimSpace(v), "bytes=")
	if !found {
		return 0, 0, false
	}
	a, b, found := strings.Cut(spec, "-")
	if !found {
		return 0, 0, false
	}
	from, err := strconv.ParseInt(a, 10, 64)
	if err != nil || from < 0 || from >= size {
		return 0, 0, false
	}
	to = size
	if b != "" {
		last, err := strconv.ParseInt(b, 10, 64)
		if err != nil || last < from {
			return 0, 0, false
		}
		to = min(last+1, size)
	}
	return from, to, true
}
