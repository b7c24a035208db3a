package azuritetest

import (
	"context"
	"sync"
	"time"
)

// pacer is a token bucket in the form of a virtual link: each send
// reserves its transmission time after the previous one's, and the sender
// waits until its bytes would have left the link (less a little slack for
// timer granularity). An idle link gathers no credit beyond that slack, as
// a NIC cannot send faster later for having been idle.
type pacer struct {
	mu   sync.Mutex
	rate float64 // bytes per second; <= 0: unlimited
	next time.Time
}

// pacerSlack: how far ahead of the virtual link a sender may run. Sleeps
// shorter than about a millisecond are not worth a timer.
const pacerSlack = 2 * time.Millisecond

func (p *pacer) setRate(bytesPerSec int64) {
	p.mu.Lock()
	p.rate = float64(bytesPerSec)
	p.next = time.Time{}
	p.mu.Unlock()
}

// reserve books n bytes on the link at now and returns how long the
// sender must wait before writing them (<= 0: not at all).
func (p *pacer) reserve(n int, now time.Time) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.rate <= 0 {
		return 0
	}
	if p.next.Before(now) {
		p.next = now
	}
	p.next = p.next.Add(time.Duration(float64(n) / p.rate * float64(time.Second)))
	return p.next.Sub(now) - pacerSlack
}

// wait blocks until n more bytes may go out, or ctx ends.
func (p *pacer) wait(ctx context.Context, n int) error {
	d := p.reserve(n, time.Now())
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// linkPiece is the unit in which a shaped body is written: small enough
// that connections sharing a link interleave finely, large enough that the
// pacing costs little CPU.
const linkPiece = 64 << 10

// SetLink shapes what the server sends from now on: at most linkBytes per
// second over all connections together (the client VM's NIC), and at most
// connBytes per second on each connection (one TCP stream's share of a
// WAN path). 0 means no limit. Safe to call while serving.
func (s *ReadServer) SetLink(linkBytes, connBytes int64) {
	s.link.setRate(linkBytes)
	s.connRate.Store(connBytes)
}

// send writes body through the link's shaping. HTTP/1.1 serves one request
// at a time per connection, so a pacer per response is one per connection.
func (s *ReadServer) send(ctx context.Context, w interface{ Write([]byte) (int, error) }, body []byte) {
	cr := s.connRate.Load()
	s.link.mu.Lock()
	shaped := s.link.rate > 0
	s.link.mu.Unlock()
	if !shaped && cr <= 0 {
		w.Write(body)
		return
	}
	conn := &pacer{rate: float64(cr)}
	for len(body) > 0 {
		n := min(len(body), linkPiece)
		if conn.wait(ctx, n) != nil || s.link.wait(ctx, n) != nil {
			return
		}
		if _, err := w.Write(body[:n]); err != nil {
			return
		}
		body = body[n:]
	}
}
