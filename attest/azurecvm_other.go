//go:build !linux

package attest

import (
	"errors"
	"io"
)

// openTPM: Azure confidential VMs run Linux here; other systems have no
// /dev/tpmrm0.
func openTPM(string) (io.ReadWriteCloser, error) {
	return nil, errors.New("the azure-cvm provider needs Linux (/dev/tpmrm0)")
}
