package blobsrc_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/chestfs/chestfs/blockdev/blobsrc"
)

// fakeCredential hands out a fixed token, or fails like a machine with no identity.
type fakeCredential struct{ token string }

func (c fakeCredential) GetToken(ctx context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
	if c.token == "" {
		return azcore.AccessToken{}, errors.New("no managed identity endpoint, no az login")
	}
	if len(o.Scopes) != 1 || !strings.HasPrefix(o.Scopes[0], "https://storage.azure.com") {
		return azcore.AccessToken{}, fmt.Errorf("unexpected scopes %v", o.Scopes)
	}
	return azcore.AccessToken{Token: c.token, ExpiresOn: time.Now().Add(time.Hour)}, nil
}

// fakeBlobService is a TLS server that serves one blob's HEAD and ranged
// GETs, to whoever presents the wanted bearer token ("" accepts anonymous).
type fakeBlobService struct {
	data  []byte
	want  string
	mu    sync.Mutex
	auths []string
}

func (f *fakeBlobService) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	auth := r.Header.Get("Authorization")
	f.mu.Lock()
	f.auths = append(f.auths, auth)
	f.mu.Unlock()
	if auth != f.want {
		w.Header().Set("x-ms-error-code", "NoAuthenticationInformation")
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	h := w.Header()
	h.Set("ETag", `"0x1"`)
	h.Set("x-ms-blob-type", "BlockBlob")
	if r.Method == http.MethodHead {
		h.Set("Content-Length", fmt.Sprint(len(f.data)))
		return
	}
	var a, b int
	if _, err := fmt.Sscanf(r.Header.Get("x-ms-range"), "bytes=%d-%d", &a, &b); err != nil || a > b || b >= len(f.data) {
		w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
		return
	}
	h.Set("Content-Length", fmt.Sprint(b-a+1))
	h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", a, b, len(f.data)))
	w.WriteHeader(http.StatusPartialContent)
	w.Write(f.data[a : b+1])
}

func TestAzureADAndAnonymousFallback(t *testing.T) {
	t.Setenv(blobsrc.EnvKey, "")
	data := imageData(12, 100<<10)
	for _, tc := range []struct {
		name, mode, token, serverWants string
		wantAuth                       string // "" means Open fails
	}{
		{"token", "azuread", "tok1", "Bearer tok1", "azuread"},
		{"auto-token", "auto", "tok1", "Bearer tok1", "azuread"},
		{"auto-no-identity-public", "auto", "", "", "anonymous"},
		{"azuread-no-identity", "azuread", "", "", ""},
		{"auto-no-identity-private", "auto", "", "Bearer tok1", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svc := &fakeBlobService{data: data, want: tc.serverWants}
			srv := httptest.NewTLSServer(svc)
			defer srv.Close()
			b, err := blobsrc.Open(testCtx(t), srv.URL+"/acct/c/b.img", blobsrc.Options{
				Auth: tc.mode, Credential: fakeCredential{tc.token}, HTTPClient: srv.Client(), Retries: -1,
			})
			if tc.wantAuth == "" {
				if err == nil {
					t.Fatal("opened")
				}
				if !errors.Is(err, blobsrc.ErrAccessDenied) {
					t.Fatalf("got %v", err)
				}
				t.Logf("%v", err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			if b.Auth() != tc.wantAuth {
				t.Fatalf("auth %q, want %q", b.Auth(), tc.wantAuth)
			}
			buf := make([]byte, 5000)
			if n, err := b.ReadAt(buf, 777); err != nil || n != len(buf) || !bytes.Equal(buf, data[777:777+5000]) {
				t.Fatalf("read: %d, %v", n, err)
			}
			svc.mu.Lock()
			defer svc.mu.Unlock()
			if last := svc.auths[len(svc.auths)-1]; last != tc.serverWants {
				t.Fatalf("server saw Authorization %q", last)
			}
		})
	}
}
