package pcap

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/golden.pcap and the seed corpus of FuzzReader")

// mustHex decodes whitespace-tolerant hex.
func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// testFrame is a 60-byte Ethernet frame from 00:00:5e:00:53:src to dst
// (RFC 7042 documentation MACs), EtherType 0x88b5, payload bytes 1, 2, 3 …
func testFrame(dst, src byte) []byte {
	f := make([]byte, 60)
	copy(f, []byte{0, 0, 0x5e, 0, 0x53, dst, 0, 0, 0x5e, 0, 0x53, src, 0x88, 0xb5})
	if dst == 0xff {
		copy(f, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	}
	for i := 14; i < len(f); i++ {
		f[i] = byte(i - 13)
	}
	return f
}

// goldenSnaplen and goldenPackets are the content of testdata/golden.pcap:
// a broadcast, a unicast, and a frame cut to the snaplen.
const goldenSnaplen = 54

var goldenT0 = time.Date(2026, 1, 2, 3, 4, 5, 123456000, time.UTC)

func goldenPackets() []Packet {
	return []Packet{
		{Time: goldenT0, Len: 42, Data: testFrame(0xff, 0x01)[:42]},
		{Time: goldenT0.Add(1500 * time.Microsecond), Len: 50, Data: testFrame(0x01, 0x02)[:50]},
		{Time: goldenT0.Add(2 * time.Second), Len: 60, Data: testFrame(0x02, 0x01)[:goldenSnaplen]},
	}
}

func encode(t testing.TB, snaplen uint32, ps []Packet) []byte {
	t.Helper()
	var b bytes.Buffer
	w, err := NewWriter(&b, snaplen, LinkTypeEthernet)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		if err := w.WritePacket(p.Time, p.Len, p.Data); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

// TestWriterFields checks one file field by field against the format of
// the package doc.
func TestWriterFields(t *testing.T) {
	got := encode(t, 1514, []Packet{{Time: time.Unix(0x65000000, 999999999), Len: 60, Data: testFrame(0xff, 0x01)[:16]}})
	want := mustHex(t, `
		d4c3b2a1  0200 0400  00000000  00000000  ea050000  01000000
		00000065  3f420f00  10000000  3c000000
		ffffffffffff 00005e005301 88b5 0102`)
	if !bytes.Equal(got, want) {
		t.Fatalf("got  % x\nwant % x", got, want)
	}
}

func TestGolden(t *testing.T) {
	path := filepath.Join("testdata", "golden.pcap")
	got := encode(t, goldenSnaplen, goldenPackets())
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		writeSeeds(t)
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run TestGolden -update ./pcap/)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("writer output differs from %s (run with -update if the change is intended)\ngot  % x\nwant % x", path, got, want)
	}
	h, ps, err := ReadAll(bytes.NewReader(want))
	if err != nil {
		t.Fatal(err)
	}
	if wantH := (FileHeader{Snaplen: goldenSnaplen, LinkType: LinkTypeEthernet, ByteOrder: binary.LittleEndian}); h != wantH {
		t.Errorf("header: got %+v, want %+v", h, wantH)
	}
	if !samePackets(ps, goldenPackets()) {
		t.Errorf("packets: got %+v, want %+v", ps, goldenPackets())
	}
}

// samePackets compares packets, times by instant.
func samePackets(a, b []Packet) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].Time.Equal(b[i].Time) || a[i].Len != b[i].Len || !bytes.Equal(a[i].Data, b[i].Data) {
			return false
		}
	}
	return true
}

// TestReadByteOrdersAndResolutions reads files as other writers (tcpdump
// on a big-endian host, tcpdump --time-stamp-precision=nano) write them.
func TestReadByteOrdersAndResolutions(t *testing.T) {
	frame := testFrame(0xff, 0x01)
	for _, tc := range []struct {
		name  string
		file  []byte
		want  FileHeader
		nsec  int64
		frame []byte
	}{
		{"big endian µs", mustHex(t, `a1b2c3d4 0002 0004 00000000 00000000 00000400 00000001
			65000000 000f423f 0000003c 0000003c`), FileHeader{Snaplen: 1024, LinkType: 1, ByteOrder: binary.BigEndian}, 999999000, frame},
		{"little endian ns", mustHex(t, `4d3cb2a1 0200 0400 00000000 00000000 00000000 01000000
			00000065 ffc99a3b 3c000000 3c000000`), FileHeader{Snaplen: MaxSnaplen, LinkType: 1, Nanoseconds: true, ByteOrder: binary.LittleEndian}, 999999999, frame},
		{"big endian ns, minor version 2", mustHex(t, `a1b23c4d 0002 0002 00000000 00000000 0000ffff 00000071
			65000000 00000001 0000003c 0000003c`), FileHeader{Snaplen: 65535, LinkType: 113, Nanoseconds: true, ByteOrder: binary.BigEndian}, 1, frame},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, ps, err := ReadAll(bytes.NewReader(append(tc.file, tc.frame...)))
			if err != nil {
				t.Fatal(err)
			}
			if h != tc.want {
				t.Errorf("header: got %+v, want %+v", h, tc.want)
			}
			want := []Packet{{Time: time.Unix(0x65000000, tc.nsec), Len: 60, Data: tc.frame}}
			if !samePackets(ps, want) {
				t.Errorf("got %+v, want %+v", ps, want)
			}
		})
	}
}

func TestReaderErrors(t *testing.T) {
	good := encode(t, 64, []Packet{{Time: goldenT0, Len: 60, Data: testFrame(0xff, 0x01)}})
	patch := func(off int, v uint32) []byte {
		b := bytes.Clone(good)
		binary.LittleEndian.PutUint32(b[off:], v)
		return b
	}
	rec := FileHeaderLen
	for _, tc := range []struct {
		name    string
		file    []byte
		packets int  // read before the error
		eof     bool // the error wraps io.ErrUnexpectedEOF
	}{
		{"empty", nil, 0, true},
		{"header cut", good[:FileHeaderLen-1], 0, true},
		{"bad magic", patch(fileOffsetMagic, 0xa1b2c3d5), 0, false},
		{"version 3", patch(fileOffsetMajor, 3|4<<16), 0, false},
		{"huge snaplen", patch(fileOffsetSnaplen, MaxSnaplen+1), 0, false},
		{"record header cut", good[:rec+RecordHeaderLen-1], 0, true},
		{"data cut", good[:len(good)-1], 0, true},
		{"captured longer than original", patch(rec+recordOffsetOrigLen, 59), 0, false},
		{"captured length huge", patch(rec+recordOffsetCapLen, 0xFFFFFFFF), 0, false},
		{"a million µs", patch(rec+recordOffsetFrac, 1e6), 0, false},
		{"second record cut", append(bytes.Clone(good), good[rec:rec+20]...), 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, ps, err := ReadAll(bytes.NewReader(tc.file))
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("got error %v, want ErrFormat", err)
			}
			if got := errors.Is(err, io.ErrUnexpectedEOF); got != tc.eof {
				t.Errorf("error %v: wraps io.ErrUnexpectedEOF %v, want %v", err, got, tc.eof)
			}
			if len(ps) != tc.packets {
				t.Errorf("got %d packets before the error, want %d", len(ps), tc.packets)
			}
		})
	}
	// A read error that is not about the format passes through.
	boom := errors.New("boom")
	if _, err := NewReader(io.MultiReader(bytes.NewReader(good[:10]), iotestErrReader{boom})); !errors.Is(err, boom) || errors.Is(err, ErrFormat) {
		t.Errorf("read error: got %v, want boom only", err)
	}
}

type iotestErrReader struct{ err error }

func (r iotestErrReader) Read([]byte) (int, error) { return 0, r.err }

func TestWriterErrors(t *testing.T) {
	for _, snap := range []uint32{0, MaxSnaplen + 1} {
		if _, err := NewWriter(io.Discard, snap, LinkTypeEthernet); err == nil {
			t.Errorf("snaplen %d: got no error", snap)
		}
	}
	w, err := NewWriter(io.Discard, 20, LinkTypeEthernet)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		t    time.Time
		len  int
		data []byte
	}{
		{"longer than original", goldenT0, 10, make([]byte, 11)},
		{"longer than snaplen", goldenT0, 60, make([]byte, 21)},
		{"before 1970", time.Unix(-1, 0), 60, make([]byte, 20)},
		{"after 2106", time.Unix(1<<32, 0), 60, make([]byte, 20)},
	} {
		if err := w.WritePacket(tc.t, tc.len, tc.data); err == nil {
			t.Errorf("%s: got no error", tc.name)
		}
	}
}

// TestWritePacketAllocs: streaming a capture allocates nothing per packet.
func TestWritePacketAllocs(t *testing.T) {
	w, err := NewWriter(io.Discard, 1514, LinkTypeEthernet)
	if err != nil {
		t.Fatal(err)
	}
	f := testFrame(0xff, 0x01)
	if n := testing.AllocsPerRun(1000, func() {
		if err := w.WritePacket(goldenT0, len(f), f); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("WritePacket: %v allocations per call, want 0", n)
	}
}

func TestReadAllKeepsOrder(t *testing.T) {
	var ps []Packet
	for i := range 50 {
		ps = append(ps, Packet{Time: goldenT0.Add(time.Duration(i) * time.Millisecond), Len: 60 + i, Data: testFrame(byte(i), 0x01)})
	}
	_, got, err := ReadAll(bytes.NewReader(encode(t, 1514, ps)))
	if err != nil || !reflect.DeepEqual(len(got), len(ps)) || !samePackets(got, ps) {
		t.Fatalf("got %d packets, %v", len(got), err)
	}
}
