package fence_test

import (
	"fmt"
	"time"

	"github.com/corralnet/corral/fence"
)

// Outbound: encapsulate an inner frame in place (the buffer has headroom),
// then split it for a UDP/IPv4 uplink with MTU 1500.
// Inbound: parse each datagram and reassemble.
func Example() {
	p := fence.Params{Installation: 1}
	self := p.OuterMAC(0x02c2)
	const headroom = 64

	buf := make([]byte, headroom+1500) // inner frame at buf[headroom:]
	fr := p.Encap(buf, headroom, 1500, fence.BroadcastMAC, self, fence.HeaderFields{Fence: 1})

	var fg fence.Fragmenter
	scratch := make([]byte, fence.MaxEncapLenUDP(1500, false))
	first, last, err := fg.Split(fr, fence.MaxEncapLenUDP(1500, false), scratch)
	fmt.Println(len(first), len(last), err)

	// On the receiving host (peer 02:fe:0c:01:00:03 is another host).
	r := fence.NewReassembler(fence.ReassemblyConfig{})
	out := make([]byte, fence.MaxInnerLen)
	for _, datagram := range [][]byte{first, last} {
		in, err := p.Parse(datagram)
		if err != nil {
			fmt.Println("drop:", err) // count by reason
			continue
		}
		inner, done, err := r.Add(in, time.Now(), out)
		if done {
			fmt.Println(in.Src(), in.Header().Fence(), len(inner), err)
		}
	}
	// Output:
	// 1472 64 <nil>
	// 02:fe:0c:01:02:c2 1 1500 <nil>
}

func ExampleHello() {
	h := fence.Hello{HostID: 0x02c2, Instance: 42, Name: "lab1", Fences: []uint32{1, 2}, Gateways: []uint32{1}}
	if err := h.Validate(); err != nil {
		panic(err)
	}
	b := h.AppendTo(nil)
	var got fence.Hello
	err := got.Decode(b)
	fmt.Printf("% x\n%v %+v\n", b, err, got)
	// Output:
	// 01 01 02 c2 00 00 00 00 00 00 00 2a 04 00 00 02 00 01 6c 61 62 31 00 00 01 00 00 02 00 00 01
	// <nil> {Version:1 HostID:706 Instance:42 Name:lab1 Fences:[1 2] Gateways:[1] Cookie:0 Echo:0}
}
