package azuritetest

import (
	"bytes"
	"context"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
)

// TestKillRestart: a persistent server comes back after a crash on the same
// port with the blob saved before it.
func TestKillRestart(t *testing.T) {
	s := StartPersistent(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := s.CreateContainer(ctx, "ctr", false); err != nil {
		t.Fatal(err)
	}
	bc, err := blockblob.NewClientWithSharedKeyCredential(s.BlobURL("ctr", "b"), s.Credential(), nil)
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("chestfs "), 100000)
	up, err := bc.UploadBuffer(ctx, data, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.WaitSaved(ctx, strings.Trim(string(*up.ETag), `"`)); err != nil {
		t.Fatal(err)
	}
	s.Kill()
	short, cancelShort := context.WithTimeout(ctx, 10*time.Second)
	_, err = bc.GetProperties(short, nil)
	cancelShort()
	if err == nil {
		t.Fatal("the killed server still answers")
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	resp, err := bc.DownloadStream(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Errorf("after restart: %d bytes, want the %d uploaded", len(got), len(data))
	}
	if *resp.ETag != *up.ETag {
		t.Errorf("ETag after restart %s, before %s", *resp.ETag, *up.ETag)
	}
}

func TestNodeEnvTunables(t *testing.T) {
	env := nodeEnv([]string{"PATH=/bin", "GLIBC_TUNABLES=glibc.malloc.arena_max=2"})
	want := []string{"PATH=/bin", "GLIBC_TUNABLES=glibc.malloc.arena_max=2:" + mallocTunables}
	if !slices.Equal(env, want) {
		t.Errorf("nodeEnv = %q, want %q", env, want)
	}
	if env := nodeEnv([]string{"HOME=/root"}); !slices.Equal(env, []string{"HOME=/root", "GLIBC_TUNABLES=" + mallocTunables}) {
		t.Errorf("nodeEnv without tunables = %q", env)
	}
}
