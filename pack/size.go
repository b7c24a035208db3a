package pack

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// ParseSize reads a byte count: a decimal number with an optional binary
// suffix K, M, G, T (also KiB, MiB, GiB, TiB; case-insensitive), e.g. "64M".
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	u := strings.ToUpper(t)
	u = strings.TrimSuffix(u, "IB")
	u = strings.TrimSuffix(u, "B")
	mult := int64(1)
	if n := len(u); n > 0 {
		switch u[n-1] {
		case 'K':
			mult = 1 << 10
		case 'M':
			mult = 1 << 20
		case 'G':
			mult = 1 << 30
		case 'T':
			mult = 1 << 40
		}
		if mult != 1 {
			u = u[:n-1]
		}
	}
	v, err := strconv.ParseInt(u, 10, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("invalid size %q (want e.g. 64M, 2G, 1048576)", s)
	}
	if v > math.MaxInt64/mult {
		return 0, fmt.Errorf("size %q too large", s)
	}
	return v * mult, nil
}

// Headroom is the free space Pack leaves when it sizes the image itself:
// Fraction of the estimated contents plus Bytes.
type Headroom struct {
	Fraction float64
	Bytes    int64
}

// DefaultHeadroom is 20% of the contents plus 16 MiB.
const DefaultHeadroom = "20%+16M"

// ParseHeadroom reads "P%", "SIZE" or "P%+SIZE" (e.g. "20%+16M", "50%",
// "100M", "0"). The empty string means DefaultHeadroom.
func ParseHeadroom(s string) (Headroom, error) {
	if strings.TrimSpace(s) == "" {
		s = DefaultHeadroom
	}
	var h Headroom
	for _, part := range strings.Split(s, "+") {
		part = strings.TrimSpace(part)
		if p, ok := strings.CutSuffix(part, "%"); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
			if err != nil || f < 0 || f > 10000 || math.IsNaN(f) {
				return Headroom{}, fmt.Errorf("pack: invalid headroom %q (want e.g. 20%%+16M)", s)
			}
			h.Fraction += f / 100
			continue
		}
		b, err := ParseSize(part)
		if err != nil || b > 1<<50 {
			return Headroom{}, fmt.Errorf("pack: invalid headroom %q (want e.g. 20%%+16M)", s)
		}
		h.Bytes += b
	}
	return h, nil
}

// ParseOwner reads "UID:GID" (numbers) for Options.Owner.
func ParseOwner(s string) (*[2]uint32, error) {
	u, g, ok := strings.Cut(s, ":")
	uid, err1 := strconv.ParseUint(u, 10, 32)
	gid, err2 := strconv.ParseUint(g, 10, 32)
	if !ok || err1 != nil || err2 != nil {
		return nil, fmt.Errorf("pack: invalid owner %q (want UID:GID, e.g. 1000:1000)", s)
	}
	return &[2]uint32{uint32(uid), uint32(gid)}, nil
}
