package stack

import (
	"testing"
	"time"

	vswitch "github.com/corralnet/corral/switch"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

func testPacket(size int) *stack.PacketBuffer {
	return stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(make([]byte, size))})
}

// writePackets calls e.WritePackets with n packets of size bytes and
// reports what it returned.
func writePackets(e *linkEndpoint, n, size int) (int, tcpip.Error) {
	var l stack.PacketBufferList
	for i := 0; i < n; i++ {
		l.PushBack(testPacket(size))
	}
	defer l.Reset()
	return e.WritePackets(l)
}

// TestOutQueueBackpressure: when the outbound queue is full (in bytes or
// in packets), WritePackets waits for the reader instead of dropping;
// every packet is read; nothing is counted dropped. Close releases a
// waiting writer with an error and counts what it could not queue.
func TestOutQueueBackpressure(t *testing.T) {
	for _, tc := range []struct {
		name       string
		n, size    int
		wantWaitAt int // the writer must have waited before this many were read
	}{
		{"bytes", 3 * outQueueBytes / 1500, 1500, outQueueBytes / 1500},
		{"packets", 3 * outQueueLen, 60, outQueueLen},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newLinkEndpoint(guestMAC, 1500)
			defer e.closePort()
			type result struct {
				n   int
				err tcpip.Error
			}
			done := make(chan result, 1)
			go func() {
				n, err := writePackets(e, tc.n, tc.size)
				done <- result{n, err}
			}()
			// The writer fills the queue and waits.
			deadline := time.Now().Add(10 * time.Second)
			for e.out.waits.Load() == 0 {
				if time.Now().After(deadline) {
					t.Fatalf("writer never waited; queued %d", e.out.queued.Load())
				}
				time.Sleep(time.Millisecond)
			}
			select {
			case r := <-done:
				t.Fatalf("WritePackets returned %d, %v with the queue full", r.n, r.err)
			default:
			}
			bufs := make([][]byte, batchSize)
			for i := range bufs {
				bufs[i] = make([]byte, vswitch.SmallBufSize)
			}
			sizes := make([]int, batchSize)
			read := 0
			for read < tc.n {
				n, err := e.Read(bufs, sizes, vswitch.Headroom)
				if err != nil {
					t.Fatal(err)
				}
				for i := 0; i < n; i++ {
					if sizes[i] != tc.size {
						t.Fatalf("frame %d: %d bytes, want %d", read+i, sizes[i], tc.size)
					}
				}
				read += n
			}
			r := <-done
			if r.n != tc.n || r.err != nil {
				t.Fatalf("WritePackets = %d, %v; want %d, nil", r.n, r.err, tc.n)
			}
			if d := e.outDrops.Load(); d != 0 {
				t.Fatalf("%d outbound drops", d)
			}
		})
	}
	t.Run("close", func(t *testing.T) {
		e := newLinkEndpoint(guestMAC, 1500)
		done := make(chan tcpip.Error, 1)
		go func() {
			_, err := writePackets(e, outQueueLen+10, 60)
			done <- err
		}()
		deadline := time.Now().Add(10 * time.Second)
		for e.out.waits.Load() == 0 {
			if time.Now().After(deadline) {
				t.Fatal("writer never waited")
			}
			time.Sleep(time.Millisecond)
		}
		e.closePort()
		select {
		case err := <-done:
			if _, ok := err.(*tcpip.ErrClosedForSend); !ok {
				t.Fatalf("WritePackets after close: %v, want ErrClosedForSend", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("writer still waiting after close")
		}
		// Queued and unqueued packets are both counted.
		if d := e.outDrops.Load(); d != outQueueLen+10 {
			t.Fatalf("outDrops %d, want %d", d, outQueueLen+10)
		}
		if n, err := writePackets(e, 1, 60); n != 0 || err == nil {
			t.Fatalf("WritePackets on a closed endpoint = %d, %v", n, err)
		}
	})
}

// TestOutQueueWakesReader: a Read waiting on an empty queue returns as
// soon as a packet is queued.
func TestOutQueueWakesReader(t *testing.T) {
	e := newLinkEndpoint(guestMAC, 1500)
	defer e.closePort()
	got := make(chan int, 1)
	go func() {
		bufs := [][]byte{make([]byte, vswitch.BufSize)}
		n, _ := e.Read(bufs, make([]int, 1), vswitch.Headroom)
		got <- n
	}()
	// Whether Read is already waiting or not, it must get the packet.
	e.enqueue(testPacket(60))
	select {
	case n := <-got:
		if n != 1 {
			t.Fatalf("Read = %d frames", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("reader not woken")
	}
}
