package uplink

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"testing"

	"github.com/corralnet/corral/fence"
	vswitch "github.com/corralnet/corral/switch"
)

// fakeTransport hands queued datagrams to recv and discards sends.
type fakeTransport struct {
	in   [][]byte
	from netip.AddrPort
	sent int
}

func (f *fakeTransport) recv(bufs [][]byte, sizes []int, from []netip.AddrPort) (int, error) {
	if len(f.in) == 0 {
		return 0, net.ErrClosed
	}
	n := 0
	for n < len(bufs) && len(f.in) > 0 {
		sizes[n] = copy(bufs[n], f.in[0])
		from[n] = f.from
		f.in = f.in[1:]
		n++
	}
	return n, nil
}

func (f *fakeTransport) send(items []outItem) error { f.sent += len(items); return nil }
func (f *fakeTransport) close() error               { return nil }

func newFake(t testing.TB, in [][]byte) (*Uplink, *fakeTransport) {
	ft := &fakeTransport{in: in, from: netip.MustParseAddrPort("192.0.2.9:7407")}
	u, err := newBase(Config{HostID: 1, HelloInterval: 1 << 40})
	if err != nil {
		t.Fatal(err)
	}
	u.link.tr = ft
	u.link.maxEncap = 1472
	u.start(DefaultBatchSize)
	t.Cleanup(func() { u.Close() })
	return u, ft
}

// FuzzReadTrunk feeds arbitrary datagrams (split at 0xff 0x00 0xff) to the
// receive path: it must not panic, and whatever it delivers is a frame of
// a user fence (1 … 0xFFFFFE), at least 14 bytes, from a valid host of the
// installation other than ourselves; a whole frame arrives unchanged.
func FuzzReadTrunk(f *testing.F) {
	p := fence.Params{}
	src := p.OuterMAC(2)
	inner := frame(64, 1, 2, 0)
	f.Add(encap(p, fence.BroadcastMAC, src, fence.HeaderFields{Fence: 1}, inner))
	f.Add(encap(p, p.OuterMAC(1), src, fence.HeaderFields{Fence: 0xFFFFFE}, inner))
	f.Add(encap(p, fence.BroadcastMAC, p.OuterMAC(1), fence.HeaderFields{Fence: 1}, inner))
	f.Add(encap(p, fence.BroadcastMAC, src, fence.HeaderFields{Fence: 0}, (&fence.Hello{HostID: 2, Name: "x", Fences: []uint32{1}}).AppendTo(nil)))
	var fr fence.Fragmenter
	big := frame(2000, 1, 2, 1)
	first, last, _ := fr.Split(encap(p, fence.BroadcastMAC, src, fence.HeaderFields{Fence: 3}, big), 1472, make([]byte, 1472))
	f.Add(bytes.Join([][]byte{first, last}, []byte{0xff, 0, 0xff}))
	f.Fuzz(func(t *testing.T, data []byte) {
		in := bytes.Split(data, []byte{0xff, 0, 0xff})
		u, _ := newFake(t, in)
		bufs := make([][]byte, DefaultBatchSize)
		for i := range bufs {
			bufs[i] = make([]byte, vswitch.BufSize)
		}
		sizes := make([]int, len(bufs))
		fences := make([]uint32, len(bufs))
		hosts := make([][6]byte, len(bufs))
		for {
			n, err := u.ReadTrunk(bufs, sizes, fences, hosts, vswitch.Headroom)
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					t.Fatalf("ReadTrunk: %v", err)
				}
				return
			}
			for i := 0; i < n; i++ {
				if fences[i] == 0 || fences[i] > fence.MaxFenceID {
					t.Fatalf("delivered fence %#x", fences[i])
				}
				if sizes[i] < fence.MinInnerLen {
					t.Fatalf("delivered a %d-byte frame", sizes[i])
				}
				h := fence.OuterMAC(hosts[i])
				if h == u.self || h.OUI() != fence.DefaultOUI || h.Installation() != 0 || h.HostID() == 0 || h.HostID() == 0xFFFF {
					t.Fatalf("delivered from host %v", h)
				}
				got := bufs[i][vswitch.Headroom : vswitch.Headroom+sizes[i]]
				found := false
				for _, d := range in {
					if len(d) == fence.EncapLen+sizes[i] && bytes.Equal(d[fence.EncapLen:], got) && fence.Frame(d).Header().Fence() == fences[i] {
						found = true
					}
				}
				if !found && sizes[i] <= 1472-fence.EncapLen {
					t.Fatalf("delivered %d bytes that no input datagram carried whole", sizes[i])
				}
			}
		}
	})
}

// TestReadTrunkBatchCompaction checks that dropped frames in the middle of
// a batch do not leave holes: valid frames are delivered in order.
func TestReadTrunkBatchCompaction(t *testing.T) {
	p := fence.Params{}
	src := p.OuterMAC(2)
	var in [][]byte
	var want [][]byte
	for i := 0; i < 40; i++ {
		inner := frame(60+i, 1, 2, byte(i))
		switch i % 3 {
		case 0:
			in = append(in, encap(p, fence.BroadcastMAC, src, fence.HeaderFields{Fence: uint32(i + 1)}, inner))
			want = append(want, inner)
		case 1:
			in = append(in, []byte("garbage"))
		case 2:
			in = append(in, encap(p, fence.BroadcastMAC, p.OuterMAC(1), fence.HeaderFields{Fence: 1}, inner)) // own MAC
		}
	}
	u, _ := newFake(t, in)
	bufs := make([][]byte, DefaultBatchSize)
	for i := range bufs {
		bufs[i] = make([]byte, vswitch.BufSize)
	}
	sizes := make([]int, len(bufs))
	fences := make([]uint32, len(bufs))
	hosts := make([][6]byte, len(bufs))
	n, err := u.ReadTrunk(bufs, sizes, fences, hosts, vswitch.Headroom)
	if err != nil || n != len(want) {
		t.Fatalf("ReadTrunk = %d, %v; want %d", n, err, len(want))
	}
	for i := 0; i < n; i++ {
		if got := bufs[i][vswitch.Headroom : vswitch.Headroom+sizes[i]]; !bytes.Equal(got, want[i]) || fences[i] != uint32(3*i+1) {
			t.Fatalf("frame %d: fence %d, %d bytes; want fence %d, %d bytes", i, fences[i], len(got), 3*i+1, len(want[i]))
		}
	}
	c := u.Status().Counters
	if c["drop_short"] != 13 || c["drop_own_mac"] != 13 {
		t.Fatalf("drop_short %d, drop_own_mac %d; want 13, 13", c["drop_short"], c["drop_own_mac"])
	}
}
