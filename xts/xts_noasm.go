//go:build (!amd64 && !arm64) || purego

package xts

// asmKeys is empty where there is no assembly: XTS always uses the portable path.
type asmKeys struct{}

func (x *XTS) initAsm(key []byte) {}

func (a *asmKeys) implName() string { return "generic" }

func (x *XTS) cryptAsm(dst, src []byte, sectorSize int, n uint64, decrypt bool) {
	x.cryptGeneric(dst, src, sectorSize, n, decrypt)
}

// implNames lists the XTS code paths usable on this machine, best last.
func implNames() []string { return []string{"generic"} }

// setImpl switches x to the named code path; false if it is not available.
func (x *XTS) setImpl(name string) bool { return name == "generic" }
