package stack

import (
	"bytes"
	"encoding/binary"
	"testing"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	ot "github.com/corralnet/corral/offload/offloadtest"
	vswitch "github.com/corralnet/corral/switch"
)

// gsoPacket wraps an Ethernet frame as gVisor hands a TCP packet to a
// host-GSO endpoint: checksum left to the endpoint, cut at mss.
func gsoPacket(frame []byte, v6 bool, mss int) *stack.PacketBuffer {
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(frame)})
	pkt.GSOOptions = stack.GSO{Type: stack.GSOTCPv4, NeedsCsum: true, MSS: uint16(mss), L3HdrLen: header.IPv4MinimumSize}
	if v6 {
		pkt.GSOOptions.Type, pkt.GSOOptions.L3HdrLen = stack.GSOTCPv6, header.IPv6MinimumSize
	}
	return pkt
}

// readAll reads frames from e until want have come.
func readAll(t *testing.T, e *linkEndpoint, batch, want int) [][]byte {
	t.Helper()
	bufs := make([][]byte, batch)
	for i := range bufs {
		bufs[i] = make([]byte, vswitch.BufSize)
	}
	sizes := make([]int, batch)
	var out [][]byte
	for len(out) < want {
		n, err := e.Read(bufs, sizes, vswitch.Headroom)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; i++ {
			out = append(out, append([]byte{}, bufs[i][vswitch.Headroom:vswitch.Headroom+sizes[i]]...))
		}
	}
	if len(out) != want {
		t.Fatalf("%d frames, want %d", len(out), want)
	}
	return out
}

// TestReadGSO: Read cuts a large TCP packet into MSS-sized frames (across
// Reads when the batch is small), with valid checksums and the payload in
// order; a pure ACK, which gVisor also sends with its checksum left to the
// endpoint, leaves as one valid frame; a malformed packet is dropped and
// counted. The segmentation rules are package offload's, tested there.
func TestReadGSO(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		e := newLinkEndpoint(guestMAC, 1500)
		defer e.closePort()
		pl := ot.Payload(1400*5+9, 4)
		super := ot.TCPFrame(ot.Fields{IPv6: v6, ID: 3, Seq: 100, Flags: ot.ACK | ot.PSH, Payload: pl, Partial: true})
		if !e.enqueue(gsoPacket(super, v6, 1400)) {
			t.Fatal("queue full")
		}
		ack := ot.TCPFrame(ot.Fields{IPv6: v6, ID: 4, Seq: 100, Flags: ot.ACK, Partial: true})
		if !e.enqueue(gsoPacket(ack, v6, 1400)) {
			t.Fatal("queue full")
		}
		frames := readAll(t, e, 4, 7) // 6 segments and the ACK, over Reads of 4
		var got []byte
		for i, f := range frames {
			if err := ot.Check(f); err != nil {
				t.Fatalf("v6=%v frame %d: %v", v6, i, err)
			}
			if len(f) > header.EthernetMinimumSize+1500 {
				t.Fatalf("v6=%v frame %d: %d bytes", v6, i, len(f))
			}
			if i < 6 {
				got = append(got, f[len(super)-len(pl):]...)
			}
		}
		if !bytes.Equal(got, pl) {
			t.Fatalf("v6=%v: segments do not carry the payload", v6)
		}
		// The ACK keeps every byte but its completed TCP checksum.
		last, want := frames[6], append([]byte{}, ack...)
		csum := len(ack) - ot.TCPLen + 16
		if len(last) != len(want) {
			t.Fatalf("v6=%v: pure ACK of %d bytes, want %d", v6, len(last), len(want))
		}
		copy(want[csum:csum+2], last[csum:csum+2])
		if !bytes.Equal(last, want) {
			t.Fatalf("v6=%v: pure ACK changed beyond its checksum", v6)
		}
		if e.gsoSplits.Load() != 1 || e.outTooLong.Load() != 0 {
			t.Fatalf("v6=%v: gsoSplits %d outTooLong %d, want 1 and 0", v6, e.gsoSplits.Load(), e.outTooLong.Load())
		}
		// The IP version of the GSO type must match the frame's.
		if !e.enqueue(gsoPacket(super, !v6, 1400)) {
			t.Fatal("queue full")
		}
		if !e.enqueue(gsoPacket(ack, v6, 1400)) {
			t.Fatal("queue full")
		}
		if f := readAll(t, e, 4, 1)[0]; binary.BigEndian.Uint16(f[12:]) != binary.BigEndian.Uint16(ack[12:]) || len(f) != len(ack) {
			t.Fatalf("v6=%v: after a malformed GSO packet, got a frame of %d bytes, want the ACK", v6, len(f))
		}
		if e.outTooLong.Load() != 1 {
			t.Fatalf("v6=%v: outTooLong %d, want 1", v6, e.outTooLong.Load())
		}
	}
}

// TestReadGSONoAlloc: splitting large TCP packets on Read allocates
// nothing once the segmenter's buffer exists (STYLE 4.4).
func TestReadGSONoAlloc(t *testing.T) {
	e := newLinkEndpoint(guestMAC, 1500)
	defer e.closePort()
	const runs = 100
	super := ot.TCPFrame(ot.Fields{Seq: 1, Flags: ot.ACK, Payload: ot.Payload(1448*8, 5), Partial: true})
	pkts := make([]*stack.PacketBuffer, runs+2)
	for i := range pkts {
		pkts[i] = gsoPacket(super, false, 1448)
	}
	bufs := make([][]byte, 8)
	for i := range bufs {
		bufs[i] = make([]byte, vswitch.BufSize)
	}
	sizes := make([]int, len(bufs))
	next := 0
	read := func() {
		if !e.enqueue(pkts[next]) {
			t.Fatal("queue full")
		}
		next++
		if n, err := e.Read(bufs, sizes, vswitch.Headroom); n != 8 || err != nil {
			t.Fatalf("Read = %d, %v; want 8 segments", n, err)
		}
	}
	read() // allocates the segmenter's buffer
	if allocs := testing.AllocsPerRun(runs, read); allocs != 0 {
		t.Fatalf("GSO Read allocates %v times per large packet", allocs)
	}
}
