package mockkms_test

import (
	"context"
	"encoding/hex"
	"os"

	"github.com/chestfs/chestfs/attest"
	"github.com/chestfs/chestfs/skr"
	"github.com/chestfs/chestfs/skr/mockkms"
)

// The laptop demo: a mock KMS, a key imported under a policy that admits the
// fake attestation's HOST_DATA, and a release through the real client.
func Example() {
	ctx := context.Background()
	kms, _ := mockkms.New(mockkms.Options{AcceptFakeSNP: true})
	_ = kms.Start("127.0.0.1:0") // or kms.Serve(ctx, addr) until ctx is done
	defer kms.Close()
	_ = kms.WriteCAFile("ca.pem") // the client's --ca

	uvmPolicy := []byte("package policy\n")
	fake, _ := attest.NewFake(attest.FakeOptions{Policy: uvmPolicy})
	hd := fake.HostData()
	policy, _ := skr.PolicyForHostData(kms.Endpoint(), hex.EncodeToString(hd[:]))

	opts := skr.Options{CAPEM: kms.CAPEM(), Token: "any"}
	luksKey := []byte("0123456789abcdef0123456789abcdef")
	_, _ = skr.ImportKey(ctx, kms.URL(), "fs-key", luksKey, policy, opts)

	blob, _ := skr.ParseKeyBlob(kms.KeyBlobJSON("fs-key", "oct-HSM"))
	key, _ := skr.Release(ctx, blob, fake, opts)
	os.Stdout.Write(key[:0])
}
