package azuritetest

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// FaultKind is what FaultProxy does to one read request (GET or HEAD).
type FaultKind int

const (
	Pass      FaultKind = iota // forward it unharmed
	Status                     // answer Fault.Status (with Fault.RetryAfter), never forwarded
	Drop                       // close the connection without an answer
	Stall                      // accept, then answer nothing until the client gives up
	StallBody                  // headers and half the body, then nothing until the client gives up
	Drip                       // the body at Fault.Rate bytes per second
	Reset                      // headers and half the body, then a TCP reset (RST)
	Short                      // headers and half the body, then a clean close: fewer bytes than Content-Length
	Delay                      // forward it after Fault.Delay (a slow but working request)
)

// Fault is one fault to inject.
type Fault struct {
	Kind       FaultKind
	Status     int    // for Status: 500, 503, 429...
	RetryAfter string // for Status: the Retry-After header, if any
	Rate       int64  // for Drip: bytes per second
	Delay      time.Duration
}

func (f Fault) String() string {
	switch f.Kind {
	case Status:
		s := strconv.Itoa(f.Status)
		if f.RetryAfter != "" {
			s += " Retry-After " + f.RetryAfter
		}
		return s
	case Drip:
		return "drip " + strconv.FormatInt(f.Rate, 10) + " B/s"
	case Delay:
		return "delay " + f.Delay.String()
	}
	return [...]string{"pass", "status", "drop", "stall", "stall-body", "drip", "reset", "short"}[f.Kind]
}

// FaultProxy forwards HTTP between a client and Azurite on the loopback
// interface and breaks read requests on demand; Down and Up make its port
// refuse connections and accept them again.
type FaultProxy struct {
	upstream string
	addr     string // 127.0.0.1:PORT, kept across Down and Up
	tr       *http.Transport

	mu     sync.Mutex
	srv    *http.Server
	gone   chan struct{} // closed by Down: stalled handlers return
	queue  []Fault
	always Fault

	reads    atomic.Int64
	injected atomic.Int64
	inflight atomic.Int64
}

// NewFaultProxy starts a proxy to upstream (HOST:PORT), closed at the end of
// the test.
func NewFaultProxy(t testing.TB, upstream string) *FaultProxy {
	t.Helper()
	p := &FaultProxy{upstream: upstream, tr: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 64}}
	if err := p.listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Down()
		p.tr.CloseIdleConnections()
	})
	return p
}

func (p *FaultProxy) listen(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: http.HandlerFunc(p.serve), ErrorLog: nil}
	p.mu.Lock()
	p.addr, p.srv, p.gone = ln.Addr().String(), srv, make(chan struct{})
	p.mu.Unlock()
	go srv.Serve(ln)
	return nil
}

// Host is 127.0.0.1:PORT.
func (p *FaultProxy) Host() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.addr
}

// Endpoint is the proxied account endpoint.
func (p *FaultProxy) Endpoint() string { return "http://" + p.Host() + "/" + Account }

// Down closes the listener and every connection: new connections are
// refused until Up.
func (p *FaultProxy) Down() {
	p.mu.Lock()
	srv, gone := p.srv, p.gone
	p.srv = nil
	p.mu.Unlock()
	if srv != nil {
		close(gone)
		srv.Close()
	}
}

// Up listens on the same port again after Down.
func (p *FaultProxy) Up() error {
	var err error
	for range 20 { // the port was ours a moment ago; rarely, another takes it
		if err = p.listen(p.Host()); err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return err
}

// Set applies queue to the next read requests, one each, then always to
// every later one.
func (p *FaultProxy) Set(always Fault, queue ...Fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.always, p.queue = always, append([]Fault(nil), queue...)
}

// Reads is the number of read requests seen, Injected the faults applied,
// InFlight the requests being answered now.
func (p *FaultProxy) Reads() int64    { return p.reads.Load() }
func (p *FaultProxy) Injected() int64 { return p.injected.Load() }
func (p *FaultProxy) InFlight() int64 { return p.inflight.Load() }

func (p *FaultProxy) next() (Fault, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f := p.always
	if len(p.queue) > 0 {
		f, p.queue = p.queue[0], p.queue[1:]
	}
	return f, p.gone
}

func (p *FaultProxy) serve(w http.ResponseWriter, r *http.Request) {
	p.inflight.Add(1)
	defer p.inflight.Add(-1)
	f, gone := Fault{}, (<-chan struct{})(nil)
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		p.reads.Add(1)
		f, gone = p.next()
	}
	if f.Kind != Pass {
		p.injected.Add(1)
	}
	wait := func() {
		select {
		case <-r.Context().Done():
		case <-gone:
		}
	}
	switch f.Kind {
	case Status:
		code := map[int]string{429: "TooManyRequests", 500: "InternalError", 503: "ServerBusy"}[f.Status]
		w.Header().Set("x-ms-error-code", code)
		if f.RetryAfter != "" {
			w.Header().Set("Retry-After", f.RetryAfter)
		}
		w.WriteHeader(f.Status)
		return
	case Drop:
		if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
			conn.Close()
		}
		return
	case Stall:
		wait()
		return
	case Delay:
		select {
		case <-time.After(f.Delay):
		case <-r.Context().Done():
			return
		case <-gone:
			return
		}
	}
	resp := Forward(w, r, p.tr, p.upstream)
	if resp == nil {
		return
	}
	defer resp.Body.Close()
	switch f.Kind {
	case StallBody, Reset, Short:
		if resp.ContentLength > 1 {
			io.CopyN(w, resp.Body, resp.ContentLength/2)
		}
		w.(http.Flusher).Flush()
		cut(w, f.Kind, wait)
	case Drip:
		drip(w, resp.Body, f.Rate, r, gone)
	default:
		io.Copy(w, resp.Body)
	}
}

// cut ends a response after the part already written: silence, a reset or a
// clean close.
func cut(w http.ResponseWriter, kind FaultKind, wait func()) {
	if kind == StallBody {
		wait()
		return
	}
	conn, _, err := w.(http.Hijacker).Hijack()
	if err != nil {
		return
	}
	if tc, ok := conn.(*net.TCPConn); ok && kind == Reset {
		tc.SetLinger(0) // close sends RST
	}
	conn.Close()
}

// drip copies body to w at rate bytes per second, in small writes.
func drip(w http.ResponseWriter, body io.Reader, rate int64, r *http.Request, gone <-chan struct{}) {
	piece := max(min(rate/8, 4096), 1)
	buf := make([]byte, piece)
	for {
		n, err := body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-time.After(time.Duration(int64(n) * int64(time.Second) / rate)):
			case <-r.Context().Done():
				return
			case <-gone:
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// DNS is a DNS server on loopback (UDP) that answers every A query with
// 127.0.0.1, or fails them all (NXDOMAIN or SERVFAIL) on demand. Use its
// Resolver in a client's dialer.
type DNS struct {
	pc    net.PacketConn
	rcode atomic.Int32 // 0: answer; 2: SERVFAIL; 3: NXDOMAIN
	Count atomic.Int64 // queries answered
}

// DNS response codes for SetRcode.
const (
	RcodeOK       = 0
	RcodeServFail = 2
	RcodeNXDomain = 3
)

// NewDNS starts a DNS server, stopped at the end of the test.
func NewDNS(t testing.TB) *DNS {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &DNS{pc: pc}
	go d.serve()
	t.Cleanup(func() { pc.Close() })
	return d
}

// SetRcode makes every later answer carry rcode (RcodeOK answers 127.0.0.1).
func (d *DNS) SetRcode(rcode int) { d.rcode.Store(int32(rcode)) }

// Resolver resolves through this server only (never the system's).
func (d *DNS) Resolver() *net.Resolver {
	addr := d.pc.LocalAddr().String()
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "udp", addr)
	}}
}

func (d *DNS) serve() {
	buf := make([]byte, 1500)
	for {
		n, from, err := d.pc.ReadFrom(buf)
		if err != nil {
			return
		}
		if out, err := d.answer(buf[:n]); err == nil {
			d.pc.WriteTo(out, from)
			d.Count.Add(1)
		}
	}
}

// answer builds the response to one query: the question echoed, and an A
// record for 127.0.0.1 when asked for one and the rcode is OK.
func (d *DNS) answer(q []byte) ([]byte, error) {
	if len(q) < 12 || binary.BigEndian.Uint16(q[4:]) != 1 {
		return nil, errors.New("not one question")
	}
	i := 12
	for i < len(q) && q[i] != 0 {
		i += int(q[i]) + 1
	}
	if i+5 > len(q) {
		return nil, errors.New("truncated question")
	}
	question := q[12 : i+5]
	qtype := binary.BigEndian.Uint16(q[i+1:])
	rcode := uint16(d.rcode.Load())
	out := make([]byte, 12, 64)
	copy(out, q[:2])                                                                  // ID
	binary.BigEndian.PutUint16(out[2:], 0x8000|0x0400|uint16(q[2]&1)<<8|0x0080|rcode) // QR AA RD RA
	binary.BigEndian.PutUint16(out[4:], 1)
	out = append(out, question...)
	if rcode == RcodeOK && qtype == 1 {
		binary.BigEndian.PutUint16(out[6:], 1)
		out = append(out, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 127, 0, 0, 1)
	}
	return out, nil
}
