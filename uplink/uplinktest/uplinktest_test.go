package uplinktest

import (
	"bytes"
	"errors"
	"net"
	"testing"

	vswitch "github.com/corralnet/corral/switch"
)

var _ vswitch.Trunk = (*Trunk)(nil)

type meta struct {
	fence uint32
	host  [6]byte
}

func read(t *testing.T, tr *Trunk) ([]byte, meta) {
	t.Helper()
	bufs := [][]byte{make([]byte, vswitch.BufSize)}
	sizes := make([]int, 1)
	fences := make([]uint32, 1)
	hosts := make([][6]byte, 1)
	n, err := tr.ReadTrunk(bufs, sizes, fences, hosts, vswitch.Headroom)
	if err != nil || n != 1 {
		t.Fatalf("ReadTrunk = %d, %v", n, err)
	}
	return bufs[0][vswitch.Headroom : vswitch.Headroom+sizes[0]], meta{fences[0], hosts[0]}
}

func TestNetwork(t *testing.T) {
	if Flood != vswitch.Broadcast {
		t.Fatalf("Flood = % x, want the switch's flood host % x", Flood, vswitch.Broadcast)
	}
	n := NewNetwork()
	a, b, c := n.Trunk([6]byte{2, 0, 0, 0, 0, 1}), n.Trunk([6]byte{2, 0, 0, 0, 0, 2}), n.Trunk([6]byte{2, 0, 0, 0, 0, 3})
	c.Fences = func(f uint32) bool { return f == 2 }
	buf := append(make([]byte, vswitch.Headroom), []byte("0123456789abcdef")...)
	if _, err := a.WriteTrunk([][]byte{buf}, []uint32{1}, [][6]byte{vswitch.Broadcast}, vswitch.Headroom); err != nil {
		t.Fatal(err)
	}
	got, m := read(t, b)
	if !bytes.Equal(got, buf[vswitch.Headroom:]) || m.fence != 1 || m.host != a.Host() {
		t.Fatalf("b got %q %+v", got, m)
	}
	if len(c.in) != 0 {
		t.Fatal("c, without fence 1, got the flood")
	}
	if _, err := b.WriteTrunk([][]byte{buf}, []uint32{2}, [][6]byte{c.Host()}, vswitch.Headroom); err != nil {
		t.Fatal(err)
	}
	if _, m := read(t, c); m.fence != 2 || m.host != b.Host() {
		t.Fatalf("c got %+v", m)
	}
	a.Close()
	a.Close()
	if _, err := a.ReadTrunk([][]byte{buf}, []int{0}, []uint32{0}, [][6]byte{{}}, vswitch.Headroom); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("ReadTrunk after Close: %v", err)
	}
}
