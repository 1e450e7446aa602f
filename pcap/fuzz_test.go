package pcap

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// FuzzReader: the reader never panics and never returns a packet longer
// than its bounds; what it reads, the writer writes back so that it reads
// the same (at microsecond resolution), and a file in the writer's own
// form (little endian, µs, version 2.4) is written back byte for byte.
func FuzzReader(f *testing.F) {
	for _, s := range seeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, ps, err := ReadAll(bytes.NewReader(b))
		for i, p := range ps {
			if len(p.Data) > p.Len || len(p.Data) > MaxSnaplen {
				t.Fatalf("packet %d: %d of %d bytes", i, len(p.Data), p.Len)
			}
		}
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error %v does not wrap ErrFormat", err)
			}
			return
		}
		if h.Snaplen == 0 || h.Snaplen > MaxSnaplen {
			t.Fatalf("snaplen %d accepted", h.Snaplen)
		}
		fits := true
		for _, p := range ps {
			fits = fits && len(p.Data) <= int(h.Snaplen)
		}
		if !fits {
			return // the reader tolerates records above the snaplen; the writer refuses them
		}
		var out bytes.Buffer
		w, err := NewWriter(&out, h.Snaplen, h.LinkType)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ps {
			if err := w.WritePacket(p.Time, p.Len, p.Data); err != nil {
				t.Fatal(err)
			}
		}
		h2, ps2, err := ReadAll(bytes.NewReader(out.Bytes()))
		if err != nil {
			t.Fatal(err)
		}
		if h2.Snaplen != h.Snaplen || h2.LinkType != h.LinkType || len(ps2) != len(ps) {
			t.Fatalf("round trip: header %+v → %+v, %d → %d packets", h, h2, len(ps), len(ps2))
		}
		for i := range ps {
			if !ps2[i].Time.Equal(ps[i].Time.Truncate(time.Microsecond)) || ps2[i].Len != ps[i].Len || !bytes.Equal(ps2[i].Data, ps[i].Data) {
				t.Fatalf("round trip: packet %d %+v → %+v", i, ps[i], ps2[i])
			}
		}
		if ownForm(b) && !bytes.Equal(out.Bytes(), b) {
			t.Fatalf("a file in the writer's form is not written back as it was:\nin  % x\nout % x", b, out.Bytes())
		}
	})
}

// ownForm reports whether b's file header is one NewWriter writes: little
// endian, microseconds, version 2.4, reserved fields 0, snaplen 1 … MaxSnaplen.
func ownForm(b []byte) bool {
	if len(b) < FileHeaderLen {
		return false
	}
	var w bytes.Buffer
	if _, err := NewWriter(&w, 1, 0); err != nil {
		panic(err)
	}
	snaplen := binary.LittleEndian.Uint32(b[fileOffsetSnaplen:])
	return bytes.Equal(b[:fileOffsetSnaplen], w.Bytes()[:fileOffsetSnaplen]) && snaplen >= 1 && snaplen <= MaxSnaplen
}

// seeds are the golden file and the cases of the table tests.
func seeds(t testing.TB) map[string][]byte {
	golden := encode(t, goldenSnaplen, goldenPackets())
	return map[string][]byte{
		"seed-golden":    golden,
		"seed-empty":     golden[:FileHeaderLen],
		"seed-cut":       golden[:len(golden)-3],
		"seed-bigendian": append(mustHex(t, "a1b2c3d4 0002 0004 00000000 00000000 00000400 00000001 65000000 000f423f 0000003c 0000003c"), testFrame(0xff, 1)...),
		"seed-nanos":     append(mustHex(t, "4d3cb2a1 0200 0400 00000000 00000000 00000000 01000000 00000065 ffc99a3b 3c000000 3c000000"), testFrame(0xff, 1)...),
	}
}

// writeSeeds writes the seed corpus to testdata/fuzz/FuzzReader (with
// -update).
func writeSeeds(t testing.TB) {
	dir := filepath.Join("testdata", "fuzz", "FuzzReader")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range seeds(t) {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
