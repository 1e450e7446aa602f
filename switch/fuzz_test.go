package vswitch_test

import (
	"encoding/binary"
	"testing"

	vswitch "github.com/corralnet/corral/switch"
)

// FuzzIsolation feeds arbitrary bytes, cut into frames, to ports of two
// fences and to the trunk, and checks the isolation property (see
// TestIsolation): each frame gets its origin fence appended, and every
// receiver checks it. The data's first byte of each chunk picks the
// origin and the chunk length.
func FuzzIsolation(f *testing.F) {
	f.Add(append(append([]byte{0x00, 18}, frame(vswitch.Broadcast, mac(1), 0)[:18]...), 0x01, 18))
	f.Add(append([]byte{0x02, 20}, frame(mac(2), mac(1), 0)[:20]...))
	f.Add([]byte{0x03, 5, 1, 2, 3, 4, 5})
	f.Fuzz(func(t *testing.T, data []byte) {
		s := newSwitch(t, vswitch.Config{MaxPortMACs: 4}, vswitch.FenceConfig{ID: 1, MaxMACs: 8}, vswitch.FenceConfig{ID: 2, MaxMACs: 8})
		l := newLab(t, s)
		l.port("a1", vswitch.PortConfig{Fence: 1})
		l.port("a2", vswitch.PortConfig{Fence: 1})
		l.port("b1", vswitch.PortConfig{Fence: 2})
		l.port("b2", vswitch.PortConfig{Fence: 2})
		tr := l.withTrunk()
		origins := []string{"a1", "a2", "b1", "b2"}
		fenceOf := map[string]uint32{"a1": 1, "a2": 1, "b1": 2, "b2": 2}
		for len(data) >= 2 {
			sel, n := data[0], int(data[1])
			data = data[2:]
			n = min(n, len(data))
			body := data[:n]
			data = data[n:]
			switch {
			case sel&7 < 4:
				o := origins[sel&3]
				l.send(o, binary.BigEndian.AppendUint32(append([]byte(nil), body...), fenceOf[o]))
			default:
				fence := uint32(sel>>3) % 4 // 0 and 3 are unknown here
				fr := binary.BigEndian.AppendUint32(append([]byte(nil), body...), fence)
				if len(fr) < vswitch.MinFrameSize {
					continue
				}
				tr.Inject([][]byte{fr}, []uint32{fence}, [][6]byte{hostA})
			}
			for name, p := range l.ports {
				p.Drain(func(fr []byte) {
					if got := binary.BigEndian.Uint32(fr[len(fr)-4:]); got != fenceOf[name] {
						t.Fatalf("port %s of fence %d got a frame from fence %d", name, fenceOf[name], got)
					}
				})
			}
			tr.Drain(func(fr []byte, fence uint32, _ vswitch.MAC) {
				if got := binary.BigEndian.Uint32(fr[len(fr)-4:]); got != fence {
					t.Fatalf("trunk frame of fence %d has meta fence %d", got, fence)
				}
			})
		}
	})
}
