package stack

import (
	"testing"

	vswitch "github.com/corralnet/corral/switch"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// TestReadNoAlloc: handing queued outbound frames to the switch does not
// allocate (STYLE 4.4).
func TestReadNoAlloc(t *testing.T) {
	e := newLinkEndpoint(guestMAC, 1500)
	defer e.closePort()
	const runs = 200
	frame := make([]byte, 1514)
	for i := 0; i < runs+1; i++ {
		pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(frame)})
		if !e.enqueue(pkt) {
			t.Fatal("queue full")
		}
	}
	bufs := [][]byte{make([]byte, vswitch.BufSize)}
	sizes := make([]int, 1)
	allocs := testing.AllocsPerRun(runs, func() {
		if n, err := e.Read(bufs, sizes, vswitch.Headroom); n != 1 || err != nil || sizes[0] != len(frame) {
			t.Fatalf("Read = %d, %v, size %d", n, err, sizes[0])
		}
	})
	if allocs != 0 {
		t.Fatalf("Read allocates %v times per frame", allocs)
	}
}
