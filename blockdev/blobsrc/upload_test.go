package blobsrc_test

import (
	"bytes"
	"crypto/md5"
	"errors"
	"io"
	"io/fs"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/sas"

	"github.com/chestfs/chestfs/blockdev/blobsrc"
	"github.com/chestfs/chestfs/blockdev/blobsrc/azuritetest"
	"github.com/chestfs/chestfs/internal/progress"
)

func keyUpload(block bool) blobsrc.UploadOptions {
	return blobsrc.UploadOptions{Block: block, Auth: "sharedkey", AccountName: azuritetest.Account, AccountKey: azuritetest.Key,
		Parallel: 4, BlockSize: 1 << 20}
}

// blobProps reads the blob's properties back from the service.
func blobProps(t *testing.T, url string) blob.GetPropertiesResponse {
	t.Helper()
	c, err := blob.NewClientWithSharedKeyCredential(url, needAzurite(t).Credential(), nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := c.GetProperties(testCtx(t), nil)
	if err != nil {
		t.Fatalf("properties of %s: %v", url, err)
	}
	return p
}

func readBlob(t *testing.T, url string) []byte {
	t.Helper()
	b, err := blobsrc.Open(testCtx(t), url, keyOpts)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	data := make([]byte, b.Size())
	if _, err := b.ReadAt(data, 0); err != nil && err != io.EOF {
		t.Fatal(err)
	}
	return data
}

// TestUploadMD5: the blob's Content-MD5, as the service reports it, is the
// MD5 of the whole blob (a page blob's zero padding included), and
// UploadFile returns it.
func TestUploadMD5(t *testing.T) {
	srv := needAzurite(t)
	c := newContainer(t, false)
	for _, tc := range []struct {
		name  string
		block bool
		size  int
	}{{"page", false, 5<<20 + 100}, {"block", true, 3<<20 + 7}, {"empty-page", false, 0}, {"empty-block", true, 0}} {
		t.Run(tc.name, func(t *testing.T) {
			var data []byte
			if tc.size > 0 {
				data = imageData(9, tc.size)
			}
			url := srv.BlobURL(c, tc.name+".img")
			res, err := blobsrc.UploadFile(testCtx(t), writeTemp(t, data), url, keyUpload(tc.block))
			if err != nil {
				t.Fatal(err)
			}
			content := data
			if !tc.block {
				content = append(content, make([]byte, (512-len(data)%512)%512)...)
			}
			want := md5.Sum(content)
			p := blobProps(t, url)
			if !bytes.Equal(p.ContentMD5, want[:]) {
				t.Errorf("Content-MD5 %x, want %x", p.ContentMD5, want)
			}
			if !bytes.Equal(res.MD5, want[:]) || res.Size != int64(len(content)) {
				t.Errorf("result %+v, want size %d md5 %x", res, len(content), want)
			}
			if got := readBlob(t, url); !bytes.Equal(got, content) {
				t.Error("content differs")
			}
		})
	}
}

// TestUploadRefusesOverwrite: an existing blob is kept, and refused before
// any data goes out; Overwrite replaces it. A SAS that may write but not
// read cannot see the blob beforehand: the conditional create/commit
// (If-None-Match: *) still refuses, as it would against a concurrent upload.
func TestUploadRefusesOverwrite(t *testing.T) {
	srv := needAzurite(t)
	c := newContainer(t, false)
	first, second := imageData(1, 2<<20+512), imageData(2, 1<<20+3)
	for _, block := range []bool{false, true} {
		name := map[bool]string{false: "page", true: "block"}[block]
		t.Run(name, func(t *testing.T) {
			url := srv.BlobURL(c, name+".img")
			if err := blobsrc.Upload(testCtx(t), writeTemp(t, first), url, keyUpload(block)); err != nil {
				t.Fatal(err)
			}
			orig := readBlob(t, url)
			o := keyUpload(block)
			o.OnProgress = func(done, total int64) { t.Errorf("data phase began (%d of %d)", done, total) }
			err := blobsrc.Upload(testCtx(t), writeTemp(t, second), url, o)
			if !errors.Is(err, blobsrc.ErrBlobExists) || !errors.Is(err, fs.ErrExist) || !strings.Contains(err.Error(), "--overwrite") {
				t.Fatalf("second upload: %v", err)
			}
			t.Logf("%v", err)

			wo, err := srv.SASURL(c, name+".img", sas.BlobPermissions{Create: true, Write: true}, time.Now().Add(time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			o = blobsrc.UploadOptions{Block: block, BlockSize: 1 << 20}
			if err := blobsrc.Upload(testCtx(t), writeTemp(t, second), wo, o); !errors.Is(err, blobsrc.ErrBlobExists) {
				t.Fatalf("upload with a write-only SAS: %v", err)
			}
			if got := readBlob(t, url); !bytes.Equal(got, orig) {
				t.Fatal("the existing blob changed")
			}

			o.Overwrite = true
			if err := blobsrc.Upload(testCtx(t), writeTemp(t, second), wo, o); err != nil {
				t.Fatalf("overwrite: %v", err)
			}
			got := readBlob(t, url)
			if !bytes.Equal(got[:len(second)], second) || len(got) >= len(orig) {
				t.Fatalf("not replaced: %d bytes", len(got))
			}
		})
	}
}

// TestUploadCreateContainer: a missing container is an error naming the
// option, unless CreateContainer; an existing container is fine too.
func TestUploadCreateContainer(t *testing.T) {
	srv := needAzurite(t)
	name := newContainer(t, false) + "-new"
	url := srv.BlobURL(name, "dir/a.img")
	data := imageData(4, 4096)
	err := blobsrc.Upload(testCtx(t), writeTemp(t, data), url, keyUpload(false))
	if !errors.Is(err, blobsrc.ErrNotFound) || !strings.Contains(err.Error(), "--create-container") {
		t.Fatalf("upload into a missing container: %v", err)
	}
	t.Logf("%v", err)
	for _, block := range []bool{false, true} {
		o := keyUpload(block)
		o.CreateContainer, o.Overwrite = true, true
		if err := blobsrc.Upload(testCtx(t), writeTemp(t, data), url, o); err != nil {
			t.Fatalf("block %v: %v", block, err)
		}
		if got := readBlob(t, url); !bytes.Equal(got, data) {
			t.Fatal("content differs")
		}
		// Overwrite also replaces a blob of the other type.
		if typ := blobProps(t, url).BlobType; typ == nil || (*typ == blob.BlobTypeBlockBlob) != block {
			t.Errorf("block %v: blob type %v", block, typ)
		}
	}
	// Private: anonymous reads are refused.
	if _, err := blobsrc.Open(testCtx(t), url, blobsrc.Options{Auth: "anonymous"}); err == nil {
		t.Error("the new container is public")
	}
}

// TestUploadProgress: the Progress writer gets the steps and the bar up to
// 100%; a quiet printer nothing.
func TestUploadProgress(t *testing.T) {
	srv := needAzurite(t)
	c := newContainer(t, false)
	data := imageData(5, 3<<20)
	var out bytes.Buffer
	o := keyUpload(false)
	o.Progress = progress.New(&out, progress.Options{Prefix: "up", Mode: progress.ModeBar})
	if err := blobsrc.Upload(testCtx(t), writeTemp(t, data), srv.BlobURL(c, "a.img"), o); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	if !strings.HasPrefix(s, "\r\x1b[Kup: creating the page blob") || !strings.Contains(s, "up: uploading 100%") ||
		!strings.Contains(s, "3.0/3.0 MiB") || !strings.HasSuffix(s, "\n") {
		t.Errorf("progress: %q", s)
	}

	out.Reset()
	o.Progress, o.Block = progress.New(&out, progress.Options{Mode: progress.ModeQuiet}), true
	if err := blobsrc.Upload(testCtx(t), writeTemp(t, data), srv.BlobURL(c, "b.img"), o); err != nil {
		t.Fatal(err)
	}
	if out.Len() != 0 {
		t.Errorf("quiet: %q", out.String())
	}
}

// TestAccessHints: each refusal says what is missing for the credentials
// used: none at all, a SAS's read or write permission.
func TestAccessHints(t *testing.T) {
	srv := needAzurite(t)
	t.Setenv(blobsrc.EnvAccount, "")
	t.Setenv(blobsrc.EnvKey, "")
	c := newContainer(t, false)
	upload(t, imageData(3, 4096), srv.BlobURL(c, "a.img"), false)
	ctx := testCtx(t)
	writeOnly, err := srv.SASURL(c, "a.img", sas.BlobPermissions{Create: true, Write: true}, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	readOnly, err := srv.SASURL(c, "b.img", sas.BlobPermissions{Read: true}, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	check := func(name string, err error, sentinel error, want []string, not string) {
		t.Helper()
		if !errors.Is(err, sentinel) {
			t.Fatalf("%s: %v", name, err)
		}
		msg := err.Error()
		t.Logf("%s: %s", name, msg)
		for _, w := range want {
			if !strings.Contains(msg, w) {
				t.Errorf("%s: %q lacks %q", name, msg, w)
			}
		}
		if not != "" && strings.Contains(msg, not) {
			t.Errorf("%s: %q says %q", name, msg, not)
		}
	}
	_, err = blobsrc.Open(ctx, srv.BlobURL(c, "a.img"), blobsrc.Options{})
	check("anonymous auto", err, blobsrc.ErrAccessDenied,
		[]string{"no credentials were found", "--sas-file", "$CHESTFS_SAS", "$AZURE_STORAGE_KEY", "--auth azuread"}, "refused")
	_, err = blobsrc.Open(ctx, srv.BlobURL(c, "a.img"), blobsrc.Options{Auth: "anonymous"})
	check("anonymous asked", err, blobsrc.ErrAccessDenied, []string{"anonymous access was refused", "--sas-file"}, "")
	_, err = blobsrc.Open(ctx, writeOnly, blobsrc.Options{})
	check("write-only SAS read", err, blobsrc.ErrAccessDenied, []string{"the SAS lacks read permission"}, "role")
	err = blobsrc.Upload(ctx, writeTemp(t, imageData(3, 4096)), readOnly, blobsrc.UploadOptions{})
	check("read-only SAS upload", err, blobsrc.ErrAccessDenied, []string{"the SAS lacks write permission"}, "role")
	err = blobsrc.Upload(ctx, writeTemp(t, imageData(3, 4096)), srv.BlobURL(c, "c.img"), blobsrc.UploadOptions{})
	check("anonymous upload", err, blobsrc.ErrAccessDenied, []string{"no credentials were found"}, "")
}
