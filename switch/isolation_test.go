package vswitch_test

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"
	"time"

	vswitch "github.com/corralnet/corral/switch"
)

// TestIsolation is the isolation property (DESIGN.md section 2): across any
// input, no frame ever reaches a port of another fence, and no frame from
// the trunk is delivered outside the fence named in its meta.
//
// Every frame carries its origin fence: in its last 4 bytes, or, for
// frames of 14…17 bytes, in its EtherType. Every receiving port and the
// trunk check it. The switch core is driven directly (static ports and a
// static trunk, the functions the reader and writer goroutines call, all on
// this goroutine), so a million frames take seconds even under -race;
// TestPortsEndToEnd and friends cover the goroutines.
//
// Inputs: a small pool of MACs shared by all fences (so the same MACs live
// in several fences and move between ports and hosts), broadcast,
// multicast, zero and garbage MACs, VLAN tags, runts, random lengths,
// trunk frames for fences this host does not have, pinned and
// MAC-limited ports, a small fence table, aging, host flushes and ports
// detached and re-attached on the way.
func TestIsolation(t *testing.T) {
	const (
		frames    = 1_000_000
		numFences = 4
		perFence  = 3
	)
	clk := newClock()
	var fcs []vswitch.FenceConfig
	for id := uint32(1); id <= numFences; id++ {
		fcs = append(fcs, vswitch.FenceConfig{ID: id, MaxMACs: 24})
	}
	s := newSwitch(t, vswitch.Config{MaxPortMACs: 64, QueueLen: 64, AgingTime: time.Minute, Now: clk.Now}, fcs...)
	rng := rand.New(rand.NewPCG(1, 2))

	macs := make([]vswitch.MAC, 40)
	for i := range macs {
		macs[i] = vswitch.MAC{0x52, 0x54, 0x00, 0x00, 0x00, byte(i)}
	}
	macs[0], macs[1], macs[2], macs[3] = vswitch.Broadcast, mcast, vswitch.MAC{0x33, 0x33, 0, 0, 0, 1}, vswitch.MAC{}
	hosts := []vswitch.MAC{hostA, hostB, {0x02, 0xfe, 0x0c, 0x01, 0x00, 0x0c}}

	var ports []*vswitch.StaticPort
	attachOne := func(fence uint32) *vswitch.StaticPort {
		pc := vswitch.PortConfig{Fence: fence}
		switch rng.IntN(6) {
		case 0:
			pc.MaxMACs = 3
		case 1:
			pc.PinMAC = macs[4+rng.IntN(len(macs)-4)]
		}
		p, err := s.AttachStatic(pc, 32)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	for f := uint32(1); f <= numFences; f++ {
		for i := 0; i < perFence; i++ {
			ports = append(ports, attachOne(f))
		}
	}
	tr, err := s.AttachStaticTrunk(32)
	if err != nil {
		t.Fatal(err)
	}

	fenceOf := func(f []byte) uint32 {
		if len(f) < 18 {
			return uint32(binary.BigEndian.Uint16(f[12:14]))
		}
		return binary.BigEndian.Uint32(f[len(f)-4:])
	}
	makeFrame := func(buf []byte, fence uint32) []byte {
		var n int
		switch k := rng.IntN(20); {
		case k == 0: // runt
			n = rng.IntN(vswitch.MinFrameSize)
		case k == 1: // 14…17 bytes, tag in the EtherType
			n = 14 + rng.IntN(4)
		case k == 2: // big
			n = 18 + rng.IntN(9000)
		default:
			n = 18 + rng.IntN(200)
		}
		b := buf[:n]
		if rng.IntN(10) == 0 { // garbage
			for i := range b {
				b[i] = byte(rng.Uint32())
			}
		} else if n >= 12 {
			dst, src := macs[rng.IntN(len(macs))], macs[rng.IntN(len(macs))]
			copy(b[0:6], dst[:])
			copy(b[6:12], src[:])
			if n >= 18 && rng.IntN(5) == 0 { // VLAN-tagged
				binary.BigEndian.PutUint32(b[12:16], 0x81000000|uint32(rng.IntN(4096)))
			}
		}
		if n >= 18 {
			binary.BigEndian.PutUint32(b[n-4:], fence)
		} else if n >= 14 {
			binary.BigEndian.PutUint16(b[12:14], uint16(fence))
		}
		return b
	}

	var delivered, trunkOut, batches int
	check := func() {
		for _, p := range ports {
			want := p.Fence()
			delivered += p.Drain(func(f []byte) {
				if len(f) < vswitch.MinFrameSize {
					t.Fatalf("port %d got a %d-byte frame", p.ID(), len(f))
				}
				if got := fenceOf(f); got != want {
					t.Fatalf("port %d of fence %d got a frame from fence %d", p.ID(), want, got)
				}
			})
		}
		trunkOut += tr.Drain(func(f []byte, fence uint32, host vswitch.MAC) {
			if got := fenceOf(f); got != fence {
				t.Fatalf("trunk got a frame from fence %d with meta fence %d", got, fence)
			}
			if host == (vswitch.MAC{}) {
				t.Fatalf("trunk frame with zero host")
			}
		})
	}

	bufs := make([][]byte, 32)
	for i := range bufs {
		bufs[i] = make([]byte, 9100)
	}
	batch := make([][]byte, 0, 32)
	fences := make([]uint32, 32)
	hostOf := make([][6]byte, 32)
	start := time.Now()
	for sent := 0; sent < frames; {
		n := 1 + rng.IntN(32)
		batch = batch[:0]
		if rng.IntN(5) == 0 { // from the trunk, mixed fences in one batch
			for i := 0; i < n; i++ {
				fence := uint32(1 + rng.IntN(numFences+1)) // numFences+1 is unknown here
				switch rng.IntN(50) {
				case 0:
					fence = 0
				case 1:
					fence = 0xFFFFFF
				}
				batch = append(batch, makeFrame(bufs[i], fence))
				fences[i], hostOf[i] = fence, hosts[rng.IntN(len(hosts))]
			}
			tr.Inject(batch, fences[:n], hostOf[:n])
		} else {
			p := ports[rng.IntN(len(ports))]
			for i := 0; i < n; i++ {
				batch = append(batch, makeFrame(bufs[i], p.Fence()))
			}
			p.Inject(batch)
		}
		sent += n
		batches++
		if rng.IntN(3) != 0 { // sometimes let queues fill up
			check()
		}
		switch rng.IntN(2000) {
		case 0:
			clk.Advance(time.Duration(rng.IntN(90)) * time.Second)
			s.Expire(clk.Now())
		case 1:
			s.FlushHost(hosts[rng.IntN(len(hosts))])
		case 2: // replace a port
			i := rng.IntN(len(ports))
			ports[i].Detach(nil)
			ports[i].Drain(nil)
			ports[i] = attachOne(ports[i].Fence())
		}
	}
	check()
	t.Logf("%d frames in %d batches in %v: %d delivered to ports, %d to the trunk",
		frames, batches, time.Since(start).Round(time.Millisecond), delivered, trunkOut)
	// The property is only meaningful if frames did flow.
	if delivered < frames/4 || trunkOut < frames/10 {
		t.Errorf("too little traffic delivered: %d to ports, %d to the trunk", delivered, trunkOut)
	}
	st := s.Status()
	var moves, refused uint64
	for _, f := range st.Fences {
		moves += f.Moves
		refused += f.LearnRefused
	}
	portDrops := map[string]uint64{}
	for _, p := range st.Ports {
		for k, v := range p.Drops {
			portDrops[k] += v
		}
	}
	t.Logf("moves %d, learn refusals %d, trunk drops %v, port drops %v", moves, refused, st.Trunk.Drops, portDrops)
	if moves == 0 || st.Trunk.Drops["unknown_fence"] == 0 {
		t.Errorf("inputs did not exercise moves (%d) and unknown fences (%v)", moves, st.Trunk.Drops)
	}
}
