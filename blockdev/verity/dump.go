package verity

import (
	"encoding/hex"
	"fmt"
	"io"
)

// Info is what `veritysetup dump` shows of a superblock, plus the layout.
type Info struct {
	UUID          string `json:"uuid"`
	HashType      uint32 `json:"hash_type"`
	DataBlocks    uint64 `json:"data_blocks"`
	DataBlockSize uint32 `json:"data_block_size"`
	HashBlocks    uint64 `json:"hash_blocks"` // tree blocks, superblock excluded
	HashBlockSize uint32 `json:"hash_block_size"`
	HashAlgorithm string `json:"hash_algorithm"`
	Salt          string `json:"salt"` // hex, "-" for none
	HashOffset    int64  `json:"hash_offset"`
	TreeOffset    int64  `json:"tree_offset"`
	Levels        int    `json:"levels"`
	// HashDeviceSize is the size of the hash device up to the tree's end.
	HashDeviceSize int64 `json:"hash_device_size"`
}

// Dump reads the superblock at hashOffset and describes the tree.
func Dump(hash io.ReaderAt, hashOffset int64) (*Info, error) {
	p, err := readSuperblock(hash, hashOffset)
	if err != nil {
		return nil, fmt.Errorf("verity: dump: %w", err)
	}
	return p.Info()
}

// Info describes p's tree as Dump does.
func (p *Params) Info() (*Info, error) {
	g, err := newGeometry(p)
	if err != nil {
		return nil, prefix(err)
	}
	l := g.layout()
	salt := hex.EncodeToString(p.Salt)
	if salt == "" {
		salt = "-"
	}
	return &Info{
		UUID:           UUIDString(p.UUID),
		HashType:       p.HashType,
		DataBlocks:     p.DataBlocks,
		DataBlockSize:  p.DataBlockSize,
		HashBlocks:     l.TreeBlocks,
		HashBlockSize:  p.HashBlockSize,
		HashAlgorithm:  p.Algorithm,
		Salt:           salt,
		HashOffset:     p.HashOffset,
		TreeOffset:     l.TreeOffset,
		Levels:         l.Levels,
		HashDeviceSize: l.HashDeviceSize,
	}, nil
}

// WriteText prints the information as `veritysetup dump` (cryptsetup 2.6.1)
// does for a hash device called name. Like veritysetup, it shows the hash
// device size only for a tree at offset 0.
func (i *Info) WriteText(w io.Writer, name string) error {
	_, err := fmt.Fprintf(w, "VERITY header information for %s\n"+
		"UUID:            \t%s\n"+
		"Hash type:       \t%d\n"+
		"Data blocks:     \t%d\n"+
		"Data block size: \t%d\n"+
		"Hash blocks:     \t%d\n"+
		"Hash block size: \t%d\n"+
		"Hash algorithm:  \t%s\n"+
		"Salt:            \t%s\n",
		name, i.UUID, i.HashType, i.DataBlocks, i.DataBlockSize, i.HashBlocks, i.HashBlockSize, i.HashAlgorithm, i.Salt)
	if err == nil && i.HashOffset == 0 {
		_, err = fmt.Fprintf(w, "Hash device size: \t%d [bytes]\n", i.HashDeviceSize)
	}
	return err
}
