package offload

import (
	"bytes"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	ot "github.com/corralnet/corral/offload/offloadtest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// Golden vectors: testdata/*.txt hold super-frames with the segments they
// are cut into, and runs of frames with the super-frame header they are
// coalesced into, as whitespace-tolerant hex in sections headed
// "-- name --". The test reads the inputs from the files; -update
// rewrites the files from goldenCases.

type goldenCase struct {
	name    string
	comment string
	// Segment: super cut at mss. Coalesce: frames.
	super  []byte
	v6     bool
	mss    int
	frames [][]byte
}

func goldenCases() []goldenCase {
	run := func(v6 bool, n, mss, last int) [][]byte {
		var fs [][]byte
		for i := 0; i < n; i++ {
			plen, flags := mss, byte(ot.ACK)
			if i == n-1 {
				plen, flags = last, ot.ACK|ot.PSH
			}
			fs = append(fs, ot.TCPFrame(ot.Fields{IPv6: v6, ID: uint16(0x100 + i), Seq: uint32(0xfffffff0 + i*mss), Flags: flags, Payload: ot.Payload(plen, uint64(i))}))
		}
		return fs
	}
	return []goldenCase{
		{
			name:    "segment-v4-fin-cwr",
			comment: "IPv4 super-frame (ID 0x1234, seq 0xfffffff0: wraps), ACK|PSH|FIN|CWR, 250 bytes cut at MSS 100: IDs count up, CWR only on the first, FIN and PSH only on the last.",
			super:   ot.TCPFrame(ot.Fields{ID: 0x1234, Seq: 0xfffffff0, Flags: ot.ACK | ot.PSH | ot.FIN | ot.CWR, Payload: ot.Payload(250, 1), Partial: true}),
			mss:     100,
		},
		{
			name:    "segment-v6",
			comment: "IPv6 super-frame, ACK|PSH, 201 bytes cut at MSS 100: a last segment of 1 byte.",
			super:   ot.TCPFrame(ot.Fields{IPv6: true, Seq: 1000, Flags: ot.ACK | ot.PSH, Payload: ot.Payload(201, 2), Partial: true}),
			v6:      true,
			mss:     100,
		},
		{
			name:    "segment-v4-vlan",
			comment: "IPv4 super-frame behind an 802.1Q tag (VID 42), ACK, 120 bytes cut at MSS 64: the tag is kept.",
			super:   ot.VLANTag(ot.TCPFrame(ot.Fields{ID: 7, Seq: 5, Flags: ot.ACK, Payload: ot.Payload(120, 3), Partial: true}), 0x8100, 42),
			mss:     64,
		},
		{
			name:    "segment-v4-empty",
			comment: "IPv4 ACK without payload (a gVisor GSO packet can be one): one segment, its checksum computed.",
			super:   ot.TCPFrame(ot.Fields{ID: 9, Seq: 77, Flags: ot.ACK, Partial: true}),
			mss:     1448,
		},
		{
			name:    "coalesce-v4",
			comment: "Three IPv4 segments of MSS 100 (IDs count up, DF set), the last of 50 bytes with PSH: one super-frame header with PSH, the total length and the pseudo-header sum in the TCP checksum.",
			frames:  run(false, 3, 100, 50),
		},
		{
			name:    "coalesce-v6",
			comment: "Two IPv6 segments of MSS 80, the last of 80 bytes with PSH.",
			frames:  run(true, 2, 80, 80),
		},
	}
}

// goldenOutput computes the output sections of a case from its inputs.
func goldenOutput(t *testing.T, sec map[string][]byte, params map[string]int) (map[string][]byte, map[string]int) {
	t.Helper()
	out := map[string][]byte{}
	res := map[string]int{}
	if super, ok := sec["super"]; ok {
		s, err := ParseSuper(super, params["ipv6"] == 1, params["mss"])
		if err != nil {
			t.Fatalf("ParseSuper: %v", err)
		}
		res["segments"] = s.Segments
		for i := 0; i < s.Segments; i++ {
			b := make([]byte, s.SegmentLen(i))
			if _, err := s.Segment(b, super, i); err != nil {
				t.Fatal(err)
			}
			out[fmt.Sprintf("segment %d", i)] = b
		}
		return out, res
	}
	var frames [][]byte
	for i := 0; ; i++ {
		f, ok := sec[fmt.Sprintf("frame %d", i)]
		if !ok {
			break
		}
		frames = append(frames, f)
	}
	hdr := make([]byte, MaxHeadersLen)
	n, c := Coalesce(frames, hdr)
	res["n"], res["hdrlen"], res["mss"], res["tcpoff"] = n, c.HdrLen, c.MSS, c.TCPOff
	if c.IPv6 {
		res["ipv6"] = 1
	}
	out["header"] = hdr[:c.HdrLen]
	return out, res
}

func TestGolden(t *testing.T) {
	if *update {
		for _, c := range goldenCases() {
			writeGolden(t, c)
		}
	}
	files, err := filepath.Glob(filepath.Join("testdata", "*.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(goldenCases()) {
		t.Fatalf("%d golden files, want %d (run go test -run TestGolden -update)", len(files), len(goldenCases()))
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			sec, params := readGolden(t, file)
			in := map[string][]byte{}
			for k, v := range sec {
				if k == "super" || strings.HasPrefix(k, "frame ") {
					in[k] = v
				}
			}
			out, res := goldenOutput(t, in, params)
			for k, got := range out {
				want, ok := sec[k]
				if !ok {
					t.Fatalf("no section %q", k)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("%s:\n got %x\nwant %x", k, got, want)
				}
			}
			for k, v := range res {
				if params[k] != v {
					t.Errorf("%s = %d, file says %d", k, v, params[k])
				}
			}
			// Every segment is also a valid frame by the independent checker.
			for k, b := range out {
				if strings.HasPrefix(k, "segment ") {
					if err := ot.Check(b); err != nil {
						t.Errorf("%s: %v", k, err)
					}
				}
			}
		})
	}
}

// writeGolden renders c with its outputs into testdata/<name>.txt.
func writeGolden(t *testing.T, c goldenCase) {
	t.Helper()
	in := map[string][]byte{}
	params := map[string]int{}
	var w strings.Builder
	fmt.Fprintf(&w, "# %s\n", c.comment)
	fmt.Fprintf(&w, "# Generated by go test -run TestGolden -update; the test reads the inputs.\n")
	if c.super != nil {
		in["super"] = c.super
		params["mss"] = c.mss
		if c.v6 {
			params["ipv6"] = 1
		}
	} else {
		for i, f := range c.frames {
			in[fmt.Sprintf("frame %d", i)] = f
		}
	}
	out, res := goldenOutput(t, in, params)
	for k, v := range res {
		params[k] = v
	}
	fmt.Fprintf(&w, "-- params --\n")
	for _, k := range []string{"ipv6", "mss", "segments", "n", "hdrlen", "tcpoff"} {
		if v, ok := params[k]; ok {
			fmt.Fprintf(&w, "%s %d\n", k, v)
		}
	}
	section := func(name string, b []byte) {
		fmt.Fprintf(&w, "-- %s --\n", name)
		for len(b) > 0 {
			line := b[:min(16, len(b))]
			b = b[len(line):]
			var words []string
			for len(line) > 0 {
				wd := line[:min(2, len(line))]
				line = line[len(wd):]
				words = append(words, hex.EncodeToString(wd))
			}
			fmt.Fprintln(&w, strings.Join(words, " "))
		}
	}
	if c.super != nil {
		section("super", c.super)
		for i := 0; i < res["segments"]; i++ {
			k := fmt.Sprintf("segment %d", i)
			section(k, out[k])
		}
	} else {
		for i := range c.frames {
			k := fmt.Sprintf("frame %d", i)
			section(k, in[k])
		}
		section("header", out["header"])
	}
	if err := os.WriteFile(filepath.Join("testdata", c.name+".txt"), []byte(w.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// readGolden parses a golden file: "#" comments, "-- name --" section
// heads, "key value" lines in the params section, hex elsewhere.
func readGolden(t *testing.T, file string) (map[string][]byte, map[string]int) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	sec := map[string][]byte{}
	params := map[string]int{}
	cur := ""
	var hexText strings.Builder
	flush := func() {
		if cur != "" && cur != "params" {
			b, err := hex.DecodeString(strings.Join(strings.Fields(hexText.String()), ""))
			if err != nil {
				t.Fatalf("%s: section %q: %v", file, cur, err)
			}
			sec[cur] = b
		}
		hexText.Reset()
	}
	for _, line := range strings.Split(string(data), "\n") {
		switch {
		case strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "-- ") && strings.HasSuffix(line, " --"):
			flush()
			cur = strings.TrimSuffix(strings.TrimPrefix(line, "-- "), " --")
		case cur == "params":
			if k, v, ok := strings.Cut(strings.TrimSpace(line), " "); ok {
				n, err := strconv.Atoi(v)
				if err != nil {
					t.Fatalf("%s: param %q: %v", file, line, err)
				}
				params[k] = n
			}
		default:
			hexText.WriteString(line)
			hexText.WriteByte(' ')
		}
	}
	flush()
	return sec, params
}
