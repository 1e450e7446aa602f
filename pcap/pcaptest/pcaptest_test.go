package pcaptest

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/corralnet/corral/pcap"
)

func capture(t *testing.T, start time.Time, frames ...[]byte) []byte {
	t.Helper()
	var b bytes.Buffer
	w, err := pcap.NewWriter(&b, 1514, pcap.LinkTypeEthernet)
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range frames {
		if err := w.WritePacket(start.Add(time.Duration(i)*time.Millisecond), len(f), f); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

func TestCanonicalIgnoresTimeOnly(t *testing.T) {
	f1, f2 := bytes.Repeat([]byte{1}, 60), bytes.Repeat([]byte{2}, 60)
	a, err := Canonical(capture(t, time.Unix(1e9, 0), f1, f2))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Canonical(capture(t, time.Now(), f1, f2))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Errorf("the same frames at other times differ in canonical form")
	}
	c, err := Canonical(capture(t, time.Now(), f2, f1))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a, c) {
		t.Errorf("the same frames in another order are equal in canonical form")
	}
	if _, err := Canonical([]byte("not a pcap")); err == nil {
		t.Errorf("Canonical of garbage: no error")
	}
}

// fakeT records failures instead of stopping the test.
type fakeT struct {
	testing.TB
	failed bool
}

func (f *fakeT) Helper()               {}
func (f *fakeT) Errorf(string, ...any) { f.failed = true }

func TestTestdataDir(t *testing.T) {
	dir := TestdataDir(t)
	if _, err := os.Stat(filepath.Join(dir, "..", "go.mod")); err != nil || filepath.Base(dir) != "testdata" {
		t.Fatalf("TestdataDir = %s: %v", dir, err)
	}
}

func TestGolden(t *testing.T) {
	name := filepath.Join(t.TempDir(), "golden.pcap")
	f := bytes.Repeat([]byte{7}, 60)
	Golden(t, capture(t, time.Now(), f), name, true)
	Golden(t, capture(t, time.Unix(1e9, 0), f), name, false) // another time: equal
	for _, other := range [][]byte{capture(t, time.Now(), f, f), capture(t, time.Now(), f[:59])} {
		ft := &fakeT{TB: t}
		Golden(ft, other, name, false)
		if !ft.failed {
			t.Errorf("another capture matched the golden file")
		}
	}
}
