package uplink

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/corralnet/corral/fence"
	vswitch "github.com/corralnet/corral/switch"
)

// learning returns a host that learns peers with return routability
// checked (the production setting of uplink.udp.learn_peers).
func learning(mod func(*Config)) func(*Config) {
	return func(c *Config) {
		c.trustLearned = false
		if mod != nil {
			mod(c)
		}
	}
}

// TestLearnedPeerConfirmed: with learn_peers and sealing off, a forger
// on a plain socket that sends frames (data and hellos, under a fresh
// outer MAC and under a real peer's) gets no flood and no hello: only
// probes, never more bytes than it sent; none of its frames is
// delivered. A real host that learns the same way is confirmed through
// the cookie echo and gets floods.
func TestLearnedPeerConfirmed(t *testing.T) {
	a := newHost(t, 1, []uint32{1}, learning(nil))
	forger, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer forger.Close()
	var received, sent int
	rxDone := make(chan struct{})
	probes := 0
	go func() {
		defer close(rxDone)
		buf := make([]byte, 65536)
		for {
			forger.SetReadDeadline(time.Now().Add(2 * time.Second))
			n, _, err := forger.ReadFromUDP(buf)
			if err != nil {
				return
			}
			received += n
			fr, err := fence.Params{}.Parse(buf[:n])
			if err != nil || fr.Header().Fence() != fence.ControlFence {
				t.Errorf("forger received a non-control frame (%d bytes)", n)
				continue
			}
			var h fence.Hello
			if err := h.Decode(fr.Inner()); err != nil || !h.IsProbe() || h.Cookie == 0 || len(h.Fences) != 0 {
				t.Errorf("forger received a hello that is not a probe: %+v %v", h, err)
				continue
			}
			probes++
		}
	}()
	to := net.UDPAddrFromAddrPort(a.u.LocalAddr())
	send := func(b []byte) {
		if _, err := forger.WriteToUDP(b, to); err != nil {
			t.Fatal(err)
		}
		sent += len(b)
	}
	p := fence.Params{}
	fake := p.OuterMAC(0x0666)
	b := newHost(t, 2, []uint32{1}, learning(func(c *Config) { c.Peers = []netip.AddrPort{a.u.LocalAddr()} }))
	for i := range 200 {
		send(encap(p, fence.BroadcastMAC, fake, fence.HeaderFields{Fence: 1}, frame(60+i%100, 0xff, 9, byte(i))))
		// A small hello with a wrong echo, and one under b's outer MAC
		// (moving b to the forger's address is refused too).
		hl := fence.Hello{HostID: 0x0666, Instance: 7, Cookie: 1, Echo: uint64(i) + 1}
		send(encap(p, fence.BroadcastMAC, fake, fence.HeaderFields{Fence: fence.ControlFence}, hl.AppendTo(nil)))
		send(encap(p, fence.BroadcastMAC, b.u.OuterMAC(), fence.HeaderFields{Fence: 1}, frame(64, 0xff, 2, byte(i))))
	}
	// b (which has a as a static peer) and a confirm each other; a floods.
	waitFor(t, "a confirms b", func() bool { pb, ok := a.peer(b.u.OuterMAC()); return ok && pb.Addr == b.u.LocalAddr().String() })
	f := frame(100, 0xff, 1, 1)
	a.send(t, 1, vswitch.Broadcast, f)
	b.expect(t, 1, a.u.OuterMAC(), f)
	a.send(t, 1, vswitch.Broadcast, f)
	<-rxDone
	if received > sent {
		t.Fatalf("forger sent %d bytes and received %d: amplification", sent, received)
	}
	if probes == 0 {
		t.Fatal("no probe reached the forger")
	}
	if _, ok := a.peer(fake); ok {
		t.Fatal("the forger's outer MAC became a peer")
	}
	st := a.u.Status()
	if st.RxByFence[1] != 0 {
		t.Fatalf("%d forged frames delivered", st.RxByFence[1])
	}
	if st.Counters["drop_unconfirmed"] < 600 || st.Counters["peers_confirmed"] < 1 {
		t.Fatalf("counters %v", st.Counters)
	}
	t.Logf("forger: %d bytes sent, %d bytes of %d probes received", sent, received, probes)
}
