package attest

import (
	"context"
	"net/http"
	"testing"
	"time"
)

type deadlineRT struct{ left time.Duration }

func (d *deadlineRT) RoundTrip(r *http.Request) (*http.Response, error) {
	if dl, ok := r.Context().Deadline(); ok {
		d.left = time.Until(dl)
	} else {
		d.left = -1
	}
	return &http.Response{StatusCode: http.StatusNotFound, Status: "404 Not Found", Body: http.NoBody, Request: r}, nil
}

// TestTHIMHasATimeout: the THIM fetch is bounded with the default client
// and with a caller's client that has no timeout of its own.
func TestTHIMHasATimeout(t *testing.T) {
	if thimClient.Timeout <= 0 || thimClient.Timeout > THIMTimeout {
		t.Errorf("default THIM client timeout %v", thimClient.Timeout)
	}
	rt := &deadlineRT{}
	FetchTHIM(context.Background(), &http.Client{Transport: rt}, "http://169.254.169.254/x")
	if rt.left <= 0 || rt.left > THIMTimeout {
		t.Fatalf("THIM request deadline in %v, want within %v", rt.left, THIMTimeout)
	}
}

// TestFakeReferenceInfoDefault: the fake provider sends UVM reference info
// unless told not to.
func TestFakeReferenceInfoDefault(t *testing.T) {
	for _, no := range []bool{false, true} {
		f, err := NewFake(FakeOptions{Context: &SecurityContext{}, NoReferenceInfo: no})
		if err != nil {
			t.Fatal(err)
		}
		ev, err := f.Evidence(context.Background(), nil)
		if err != nil {
			t.Fatal(err)
		}
		if (len(ev.ReferenceInfo) > 0) == no {
			t.Errorf("NoReferenceInfo=%v: %d bytes of reference info", no, len(ev.ReferenceInfo))
		}
	}
}
