package uplinktest

import (
	"bytes"
	"errors"
	"net"
	"testing"

	vswitch "github.com/corralnet/corral/switch"
)

var _ vswitch.Trunk = (*Trunk)(nil)

func read(t *testing.T, tr *Trunk) ([]byte, vswitch.TrunkMeta) {
	t.Helper()
	bufs := [][]byte{make([]byte, vswitch.BufSize)}
	sizes := make([]int, 1)
	meta := make([]vswitch.TrunkMeta, 1)
	n, err := tr.ReadTrunk(bufs, sizes, meta, vswitch.Headroom)
	if err != nil || n != 1 {
		t.Fatalf("ReadTrunk = %d, %v", n, err)
	}
	return bufs[0][vswitch.Headroom : vswitch.Headroom+sizes[0]], meta[0]
}

func TestNetwork(t *testing.T) {
	n := NewNetwork()
	a, b, c := n.Trunk(vswitch.MAC{2, 0, 0, 0, 0, 1}), n.Trunk(vswitch.MAC{2, 0, 0, 0, 0, 2}), n.Trunk(vswitch.MAC{2, 0, 0, 0, 0, 3})
	c.Fences = func(f uint32) bool { return f == 2 }
	buf := append(make([]byte, vswitch.Headroom), []byte("0123456789abcdef")...)
	if _, err := a.WriteTrunk([][]byte{buf}, []vswitch.TrunkMeta{{Fence: 1, Host: vswitch.Broadcast}}, vswitch.Headroom); err != nil {
		t.Fatal(err)
	}
	got, m := read(t, b)
	if !bytes.Equal(got, buf[vswitch.Headroom:]) || m.Fence != 1 || m.Host != a.Host() {
		t.Fatalf("b got %q %+v", got, m)
	}
	if len(c.in) != 0 {
		t.Fatal("c, without fence 1, got the flood")
	}
	if _, err := b.WriteTrunk([][]byte{buf}, []vswitch.TrunkMeta{{Fence: 2, Host: c.Host()}}, vswitch.Headroom); err != nil {
		t.Fatal(err)
	}
	if _, m := read(t, c); m.Fence != 2 || m.Host != b.Host() {
		t.Fatalf("c got %+v", m)
	}
	a.Close()
	a.Close()
	if _, err := a.ReadTrunk([][]byte{buf}, []int{0}, []vswitch.TrunkMeta{{}}, vswitch.Headroom); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("ReadTrunk after Close: %v", err)
	}
}
