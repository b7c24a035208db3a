package luks

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// WriteText prints the header in the layout of `cryptsetup luksDump`.
func (h *Header) WriteText(w io.Writer) error {
	bw := bufio.NewWriter(w)
	switch {
	case h.Version == 1 && h.V1 != nil:
		h.writeLUKS1(bw)
	case h.Version == 2 && h.Metadata != nil:
		h.writeLUKS2(bw)
	default:
		return fmt.Errorf("%w: empty header", ErrCorrupt)
	}
	return bw.Flush()
}

// hexLines renders b as cryptsetup does: 16 bytes per line, "xx " each,
// continuation lines indented by indent.
func hexLines(b []byte, indent string) string {
	var sb strings.Builder
	for i, c := range b {
		if i > 0 && i%16 == 0 {
			sb.WriteString("\n" + indent)
		}
		fmt.Fprintf(&sb, "%02x ", c)
	}
	return sb.String()
}

// hexFlat renders b on one line (cryptsetup prints the 20-byte LUKS1 digest so).
func hexFlat(b []byte) string {
	var sb strings.Builder
	for _, c := range b {
		fmt.Fprintf(&sb, "%02x ", c)
	}
	return sb.String()
}

func orNone(s, none string) string {
	if s == "" {
		return none
	}
	return s
}

func priorityName(p *int) string {
	if p == nil {
		return "normal"
	}
	switch *p {
	case 0:
		return "ignored"
	case 1:
		return "normal"
	case 2:
		return "preferred"
	}
	return fmt.Sprintf("unknown (%d)", *p)
}

func (h *Header) writeLUKS2(w io.Writer) {
	md := h.Metadata
	fmt.Fprintf(w, "LUKS header information\n")
	fmt.Fprintf(w, "Version:       \t%d\n", 2)
	fmt.Fprintf(w, "Epoch:         \t%d\n", h.Binary.SeqID)
	fmt.Fprintf(w, "Metadata area: \t%d [bytes]\n", h.Binary.HdrSize)
	fmt.Fprintf(w, "Keyslots area: \t%d [bytes]\n", md.Config.KeyslotsSize)
	fmt.Fprintf(w, "UUID:          \t%s\n", h.UUID)
	fmt.Fprintf(w, "Label:         \t%s\n", orNone(h.Label, "(no label)"))
	fmt.Fprintf(w, "Subsystem:     \t%s\n", orNone(h.Subsystem, "(no subsystem)"))
	fmt.Fprintf(w, "Flags:       \t%s\n", orNone(strings.Join(md.Config.Flags, " "), "(no flags)"))
	if r := md.Config.Requirements; r != nil && len(r.Mandatory) > 0 {
		fmt.Fprintf(w, "Requirements:\t%s\n", strings.Join(r.Mandatory, " "))
	}
	if h.FromSecondary {
		fmt.Fprintf(w, "Header copy:   \tsecondary\n")
	}
	for _, warn := range h.Warnings {
		fmt.Fprintf(w, "Warning:       \t%s\n", warn)
	}

	fmt.Fprintf(w, "\nData segments:\n")
	for _, id := range sortedIDs(md.Segments) {
		s := md.Segments[id]
		fmt.Fprintf(w, "  %s: %s\n", id, s.Type)
		fmt.Fprintf(w, "\toffset: %d [bytes]\n", s.Offset)
		if s.Size == "dynamic" {
			fmt.Fprintf(w, "\tlength: (whole device)\n")
		} else {
			fmt.Fprintf(w, "\tlength: %s [bytes]\n", s.Size)
		}
		fmt.Fprintf(w, "\tcipher: %s\n", s.Encryption)
		fmt.Fprintf(w, "\tsector: %d [bytes]\n", s.SectorSize)
		if s.IVTweak != 0 {
			fmt.Fprintf(w, "\tIV tweak: %d\n", s.IVTweak)
		}
		if len(s.Integrity) > 0 && string(s.Integrity) != "null" {
			fmt.Fprintf(w, "\tintegrity: %s\n", s.Integrity)
		}
		if len(s.Flags) > 0 {
			fmt.Fprintf(w, "\tflags : %s\n", strings.Join(s.Flags, " "))
		}
	}

	fmt.Fprintf(w, "\nKeyslots:\n")
	for _, id := range sortedIDs(md.Keyslots) {
		ks := md.Keyslots[id]
		fmt.Fprintf(w, "  %s: %s\n", id, ks.Type)
		fmt.Fprintf(w, "\tKey:        %d bits\n", ks.KeySize*8)
		fmt.Fprintf(w, "\tPriority:   %s\n", priorityName(ks.Priority))
		if a := ks.Area; a != nil && a.Encryption != "" {
			fmt.Fprintf(w, "\tCipher:     %s\n", a.Encryption)
			fmt.Fprintf(w, "\tCipher key: %d bits\n", a.KeySize*8)
		}
		if k := ks.KDF; k != nil {
			fmt.Fprintf(w, "\tPBKDF:      %s\n", k.Type)
			if k.Type == "pbkdf2" {
				fmt.Fprintf(w, "\tHash:       %s\n", k.Hash)
				fmt.Fprintf(w, "\tIterations: %d\n", k.Iterations)
			} else {
				fmt.Fprintf(w, "\tTime cost:  %d\n", k.Time)
				fmt.Fprintf(w, "\tMemory:     %d\n", k.Memory)
				fmt.Fprintf(w, "\tThreads:    %d\n", k.CPUs)
			}
			fmt.Fprintf(w, "\tSalt:       %s\n", hexLines(k.Salt, "\t            "))
		}
		if af := ks.AF; af != nil {
			fmt.Fprintf(w, "\tAF stripes: %d\n", af.Stripes)
			fmt.Fprintf(w, "\tAF hash:    %s\n", af.Hash)
		}
		if a := ks.Area; a != nil {
			fmt.Fprintf(w, "\tArea offset:%d [bytes]\n", a.Offset)
			fmt.Fprintf(w, "\tArea length:%d [bytes]\n", a.Size)
		}
		for _, did := range sortedIDs(md.Digests) {
			for _, k := range md.Digests[did].Keyslots {
				if k == id {
					fmt.Fprintf(w, "\tDigest ID:  %s\n", did)
				}
			}
		}
	}

	fmt.Fprintf(w, "Tokens:\n")
	for _, id := range sortedIDs(md.Tokens) {
		fmt.Fprintf(w, "  %s: %s\n", id, tokenType(md.Tokens[id]))
	}
	fmt.Fprintf(w, "Digests:\n")
	for _, id := range sortedIDs(md.Digests) {
		d := md.Digests[id]
		fmt.Fprintf(w, "  %s: %s\n", id, d.Type)
		fmt.Fprintf(w, "\tHash:       %s\n", d.Hash)
		fmt.Fprintf(w, "\tIterations: %d\n", d.Iterations)
		fmt.Fprintf(w, "\tSalt:       %s\n", hexLines(d.Salt, "\t            "))
		fmt.Fprintf(w, "\tDigest:     %s\n", hexLines(d.Digest, "\t            "))
	}
}

// tokenType pulls "type" out of a token without trusting its shape.
func tokenType(raw []byte) string {
	var t struct {
		Type string `json:"type"`
	}
	if err := jsonUnmarshal(raw, &t); err != nil || t.Type == "" {
		return "(unknown)"
	}
	return t.Type
}

func (h *Header) writeLUKS1(w io.Writer) {
	p := h.V1
	fmt.Fprintf(w, "LUKS header information\n\n")
	fmt.Fprintf(w, "Version:       \t%d\n", p.Version)
	fmt.Fprintf(w, "Cipher name:   \t%s\n", p.CipherName)
	fmt.Fprintf(w, "Cipher mode:   \t%s\n", p.CipherMode)
	fmt.Fprintf(w, "Hash spec:     \t%s\n", p.HashSpec)
	fmt.Fprintf(w, "Payload offset:\t%d\n", p.PayloadOffset)
	fmt.Fprintf(w, "MK bits:       \t%d\n", p.KeyBytes*8)
	fmt.Fprintf(w, "MK digest:     \t%s\n", hexFlat(p.MKDigest))
	fmt.Fprintf(w, "MK salt:       \t%s\n", hexLines(p.MKDigestSalt, "               \t"))
	fmt.Fprintf(w, "MK iterations: \t%d\n", p.MKDigestIterations)
	fmt.Fprintf(w, "UUID:          \t%s\n\n", p.UUID)
	for i, k := range p.KeyBlocks {
		if !k.Enabled() {
			fmt.Fprintf(w, "Key Slot %d: DISABLED\n", i)
			continue
		}
		fmt.Fprintf(w, "Key Slot %d: ENABLED\n", i)
		fmt.Fprintf(w, "\tIterations:         \t%d\n", k.PasswordIterations)
		fmt.Fprintf(w, "\tSalt:               \t%s\n", hexLines(k.PasswordSalt, "\t                      \t"))
		fmt.Fprintf(w, "\tKey material offset:\t%d\n", k.KeyMaterialOffset)
		fmt.Fprintf(w, "\tAF stripes:            \t%d\n", k.Stripes)
	}
}
