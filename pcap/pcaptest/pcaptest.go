// Package pcaptest compares captures with golden pcap files kept in the
// repository's top-level testdata/ directory, which the capture tests of
// several packages (admin, cmd/corral, e2e) share (STYLE 1.8, 7.2).
//
// A capture is compared in canonical form: the same file with packet i's
// timestamp replaced by i seconds after the Unix epoch, so that the header
// (snaplen, link type), every record's lengths and bytes, and the order
// are pinned, and the capture time is not.
package pcaptest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/corralnet/corral/pcap"
)

// Canonical returns capture file b in canonical form (see the package
// doc), written by [pcap.Writer].
func Canonical(b []byte) ([]byte, error) {
	h, ps, err := pcap.ReadAll(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	w, err := pcap.NewWriter(&out, h.Snaplen, h.LinkType)
	if err != nil {
		return nil, err
	}
	for i, p := range ps {
		if err := w.WritePacket(time.Unix(int64(i), 0), p.Len, p.Data); err != nil {
			return nil, fmt.Errorf("packet %d: %w", i, err)
		}
	}
	return out.Bytes(), nil
}

// Golden checks that capture file got equals, in canonical form, the
// golden file testdata/name of the repository (name itself when it is an
// absolute path). With update it writes the canonical form of got to the
// golden file instead (the caller's -update flag).
func Golden(t testing.TB, got []byte, name string, update bool) {
	t.Helper()
	canon, err := Canonical(got)
	if err != nil {
		t.Fatalf("capture for %s: %v", name, err)
	}
	path := name
	if !filepath.IsAbs(path) {
		path = filepath.Join(TestdataDir(t), name)
	}
	if update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, canon, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", path)
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run the test with -update to create it)", err)
	}
	if bytes.Equal(canon, want) {
		return
	}
	t.Errorf("capture differs from %s (run the test with -update if the change is intended): %s", path, describeDiff(canon, want))
}

// describeDiff names the first difference between two canonical files.
func describeDiff(got, want []byte) string {
	gh, gps, gerr := pcap.ReadAll(bytes.NewReader(got))
	wh, wps, werr := pcap.ReadAll(bytes.NewReader(want))
	switch {
	case werr != nil:
		return fmt.Sprintf("the golden file does not read: %v", werr)
	case gerr != nil:
		return fmt.Sprintf("the capture does not read: %v", gerr)
	case gh != wh:
		return fmt.Sprintf("header %+v, want %+v", gh, wh)
	}
	for i := range min(len(gps), len(wps)) {
		g, w := gps[i], wps[i]
		if g.Len != w.Len || !bytes.Equal(g.Data, w.Data) {
			return fmt.Sprintf("packet %d: %d of %d bytes % x, want %d of %d bytes % x", i, len(g.Data), g.Len, g.Data, len(w.Data), w.Len, w.Data)
		}
	}
	return fmt.Sprintf("%d packets, want %d", len(gps), len(wps))
}

// TestdataDir returns the repository's top-level testdata directory: the
// one beside go.mod, found from the working directory (a test runs in its
// package's directory) upwards.
func TestdataDir(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "testdata")
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("pcaptest: no go.mod above the working directory")
		}
		dir = parent
	}
}
