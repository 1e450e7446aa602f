package tap

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corralnet/corral/attach"
	"github.com/corralnet/corral/offload"
	ot "github.com/corralnet/corral/offload/offloadtest"
	vswitch "github.com/corralnet/corral/switch"
)

// cable builds what TestIntegrationTapCable does, with or without
// offloads: two namespaces, a TAP in each (192.0.2.1 and 2001:db8::1 in
// a, .2 and ::2 in b), joined by two Splices over a unix stream socket.
func cable(t testing.TB, offload bool) (nsA, nsB string, ta, tb *Device) {
	return cable2(t, offload, offload)
}

// cable2 is cable with the offloads of each end chosen separately.
func cable2(t testing.TB, offA, offB bool) (nsA, nsB string, ta, tb *Device) {
	t.Helper()
	nsA, nsB = newNS(t, "oa"), newNS(t, "ob")
	var err error
	ta, err = Open(Config{Name: "otapa", NetNS: nsA, MTU: 1500, Offload: offA})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ta.Close() })
	tb, err = Open(Config{Name: "otapb", NetNS: nsB, MTU: 1500, Offload: offB})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tb.Close() })
	ipIn(t, nsA, "addr", "add", "192.0.2.1/24", "dev", "otapa")
	ipIn(t, nsB, "addr", "add", "192.0.2.2/24", "dev", "otapb")
	ipIn(t, nsA, "addr", "add", "2001:db8::1/64", "dev", "otapa", "nodad")
	ipIn(t, nsB, "addr", "add", "2001:db8::2/64", "dev", "otapb", "nodad")

	ln, err := net.Listen("unix", filepath.Join(t.TempDir(), "c"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ca, err := net.Dial("unix", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	cb, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errs := make(chan error, 2)
	go func() { errs <- attach.Splice(ctx, ta, attach.NewStreamPort(ca, attach.Options{})) }()
	go func() { errs <- attach.Splice(ctx, tb, attach.NewStreamPort(cb, attach.Options{})) }()
	t.Cleanup(func() {
		cancel()
		for i := 0; i < 2; i++ {
			select {
			case <-errs:
			case <-time.After(20 * time.Second):
				t.Error("Splice did not return after cancel")
			}
		}
	})
	return nsA, nsB, ta, tb
}

// inNS runs fn on an OS thread inside the named namespace: sockets fn
// creates live there. The thread is discarded if it cannot switch back.
func inNS(t testing.TB, ns string, fn func() error) error {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		defer unix.Close(orig)
		target, err := unix.Open(filepath.Join(NetNSDir, ns), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		err = unix.Setns(target, unix.CLONE_NEWNET)
		unix.Close(target)
		if err != nil {
			errc <- err
			return
		}
		err = fn()
		if unix.Setns(orig, unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// transfer sends size pseudo-random bytes over TCP from a client in
// nsFrom to a server at addr in nsTo; the server answers with the SHA-256
// of what it got, which must match what was sent.
func transfer(t *testing.T, nsFrom, nsTo, addr string, size int64) {
	t.Helper()
	var ln net.Listener
	if err := inNS(t, nsTo, func() (err error) { ln, err = net.Listen("tcp", addr); return err }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srv := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			srv <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(120 * time.Second))
		h := sha256.New()
		if _, err := io.Copy(h, c); err != nil {
			srv <- err
			return
		}
		_, err = c.Write(h.Sum(nil))
		srv <- err
	}()
	var c net.Conn
	if err := inNS(t, nsFrom, func() (err error) {
		c, err = net.DialTimeout("tcp", ln.Addr().String(), 20*time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(120 * time.Second))
	h := sha256.New()
	src := io.TeeReader(io.LimitReader(&prng{r: rand.NewPCG(uint64(size), 9)}, size), h)
	start := time.Now()
	if _, err := io.CopyBuffer(c, src, make([]byte, 256<<10)); err != nil {
		t.Fatalf("send: %v", err)
	}
	c.(*net.TCPConn).CloseWrite()
	got := make([]byte, sha256.Size)
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read digest: %v", err)
	}
	if err := <-srv; err != nil {
		t.Fatalf("server: %v", err)
	}
	if want := h.Sum(nil); !bytes.Equal(got, want) {
		t.Fatalf("SHA-256 at the receiver %x, sent %x", got, want)
	}
	el := time.Since(start)
	t.Logf("%s: %d MiB in %v (%.2f Gbit/s, -race)", addr, size>>20, el.Round(time.Millisecond), float64(size*8)/el.Seconds()/1e9)
}

type prng struct{ r *rand.PCG }

func (p *prng) Read(b []byte) (int, error) {
	n := len(b)
	for len(b) >= 8 {
		binary.LittleEndian.PutUint64(b, p.r.Uint64())
		b = b[8:]
	}
	for i := range b {
		b[i] = byte(p.r.Uint64())
	}
	return n, nil
}

// TestIntegrationTapOffloadCable moves data both ways, IPv4 and IPv6,
// through offload-enabled TAPs joined by a cable, and checks the offloads
// were really used (super-frames cut on Read, segments merged on Write).
func TestIntegrationTapOffloadCable(t *testing.T) {
	needRoot(t)
	nsA, nsB, ta, tb := cable(t, true)
	if !ta.Offload() || !tb.Offload() {
		t.Fatal("Offload() false")
	}
	out, err := exec.Command("ip", "netns", "exec", nsA, "ping", "-c", "2", "-i", "0.2", "-W", "5", "-M", "do", "-s", "1472", "192.0.2.2").CombinedOutput()
	if err != nil {
		t.Fatalf("ping across the cable: %v\n%s", err, out)
	}
	transfer(t, nsA, nsB, "192.0.2.2:5001", 64<<20)
	transfer(t, nsB, nsA, "[2001:db8::1]:5002", 32<<20)
	t.Logf("a: segmented %d coalesced %d rxbad %d drops %d; b: segmented %d coalesced %d rxbad %d drops %d",
		ta.Segmented(), ta.Coalesced(), ta.RxBad(), ta.Drops(), tb.Segmented(), tb.Coalesced(), tb.RxBad(), tb.Drops())
	if ta.Segmented() == 0 || tb.Segmented() == 0 {
		t.Error("no TCP super-frame came from the kernel: TSO not in use")
	}
	if ta.Coalesced() == 0 || tb.Coalesced() == 0 {
		t.Error("no segments coalesced on Write")
	}
	if ta.RxBad()+tb.RxBad()+ta.Drops()+tb.Drops() != 0 {
		t.Error("frames dropped")
	}
}

// TestIntegrationTapOffloadMixed: offloads on a only. b's kernel checks
// every IP and TCP checksum of the segments a's Read cut from its kernel's
// super-frames (nothing is coalesced on the way into b), and b's plain
// frames are coalesced into a.
func TestIntegrationTapOffloadMixed(t *testing.T) {
	needRoot(t)
	nsA, nsB, ta, tb := cable2(t, true, false)
	if !ta.Offload() || tb.Offload() {
		t.Fatal("Offload() wrong")
	}
	transfer(t, nsA, nsB, "192.0.2.2:5003", 32<<20)
	transfer(t, nsA, nsB, "[2001:db8::2]:5004", 16<<20)
	transfer(t, nsB, nsA, "192.0.2.1:5005", 16<<20)
	if ta.Segmented() == 0 || ta.Coalesced() == 0 {
		t.Errorf("a: segmented %d coalesced %d, want both > 0", ta.Segmented(), ta.Coalesced())
	}
	out, err := exec.Command("ip", "netns", "exec", nsB, "nstat", "-az", "TcpInCsumErrors", "IpInHdrErrors", "Ip6InHdrErrors").CombinedOutput()
	if err != nil {
		t.Fatalf("nstat: %v %s", err, out)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && !strings.HasPrefix(l, "#") && f[1] != "0" {
			t.Errorf("b's kernel counted bad frames: %s", l)
		}
	}
	if ta.RxBad()+ta.Drops()+tb.Drops() != 0 {
		t.Error("frames dropped")
	}
}

// TestIntegrationTapOffloadNoAllocs: a steady Write of a coalescable run
// of TCP segments plus the Reads of the kernel's answer (an RST, through
// the virtio_net_hdr path) allocate nothing; the RST answers the whole
// super-frame, so the kernel took it.
func TestIntegrationTapOffloadNoAllocs(t *testing.T) {
	needRoot(t)
	ns := newNS(t, "of")
	d, err := Open(Config{Name: "otapn", NetNS: ns, Offload: true})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ipIn(t, ns, "addr", "add", "192.0.2.2/24", "dev", "otapn")
	ipIn(t, ns, "neigh", "add", "192.0.2.1", "lladdr", "52:54:00:00:00:0a", "dev", "otapn", "nud", "permanent")
	link := ipIn(t, ns, "-o", "link", "show", "otapn")
	i := strings.Index(link, "link/ether ")
	mac, err := net.ParseMAC(link[i+11 : i+28])
	if err != nil {
		t.Fatalf("tap MAC in %q: %v", link, err)
	}
	const nseg = 8
	out := make([][]byte, nseg)
	for k := range out {
		f := tcpFrame(false, uint16(k), uint32(5000+k*1448), ot.ACK, payload(1448, uint64(k)), "full")
		copy(f[0:6], mac)
		out[k] = append(make([]byte, vswitch.Headroom), f...)
	}
	bufs := make([][]byte, 8)
	for i := range bufs {
		bufs[i] = make([]byte, vswitch.BufSize)
	}
	sizes := make([]int, 8)
	timer := time.AfterFunc(60*time.Second, func() { d.Close() })
	defer timer.Stop()
	var rst []byte
	round := func() {
		if n, err := d.Write(out, vswitch.Headroom); err != nil || n != nseg {
			t.Fatalf("Write = %d, %v", n, err)
		}
		for {
			n, err := d.Read(bufs, sizes, vswitch.Headroom)
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < n; i++ {
				f := bufs[i][vswitch.Headroom : vswitch.Headroom+sizes[i]]
				if h, ok := offload.ParseTCP(f); ok && f[h.TCPOff()+13]&ot.RST != 0 {
					rst = f
					return
				}
			}
		}
	}
	round()
	if d.Coalesced() != nseg {
		t.Fatalf("Coalesced() = %d, want %d", d.Coalesced(), nseg)
	}
	// The RST is valid (its checksum completed by Read if the kernel left
	// it partial) and answers our ACK number.
	checkFrame(t, rst)
	if seq := binary.BigEndian.Uint32(rst[14+20+4:]); seq != 0x01020304 {
		t.Fatalf("RST seq %#x, want our ACK 0x01020304", seq)
	}
	if a := testing.AllocsPerRun(50, round); a != 0 {
		t.Fatalf("offload TAP Write+Read: %v allocations per run, want 0", a)
	}
	if d.Drops() != 0 || d.RxBad() != 0 {
		t.Fatalf("drops %d rxbad %d", d.Drops(), d.RxBad())
	}
	// Segmentation and coalescing themselves allocate nothing either.
	super := tcpFrame(false, 1, 1, ot.ACK|ot.PSH, payload(1448*40, 1), "partial")
	g, err := parseGSO(super, gsoHdr(false, 1448))
	if err != nil {
		t.Fatal(err)
	}
	frames := make([][]byte, g.Segments)
	for i := range frames {
		frames[i] = make([]byte, 2048)
	}
	hdr := make([]byte, superHdrMax)
	if a := testing.AllocsPerRun(50, func() {
		for i := 1; i < g.Segments; i++ {
			frames[i] = frames[i][:cap(frames[i])]
			n, _ := g.Segment(frames[i], super, i)
			frames[i] = frames[i][:n]
		}
		frames[0] = frames[0][:cap(frames[0])]
		n, _ := g.Segment(frames[0], super, 0)
		frames[0] = frames[0][:n]
		if n, _ := coalesceRun(frames, hdr); n != g.Segments {
			t.Fatalf("coalesced %d of %d", n, g.Segments)
		}
	}); a != 0 {
		t.Fatalf("segment+coalesce: %v allocations per run", a)
	}
}

// BenchmarkTapCableIperf runs iperf3 -t 5 from a to b through the cable,
// with and without offloads, and reports Gbit/s. Run with -benchtime 1x.
func BenchmarkTapCableIperf(b *testing.B) {
	needRoot(b)
	if _, err := exec.LookPath("iperf3"); err != nil {
		b.Fatal("iperf3 not installed")
	}
	for _, off := range []bool{false, true} {
		b.Run(fmt.Sprintf("offload=%v", off), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				nsA, nsB, ta, tb := cable(b, off)
				srv := exec.Command("ip", "netns", "exec", nsB, "iperf3", "-s", "-1", "-B", "192.0.2.2")
				if err := srv.Start(); err != nil {
					b.Fatal(err)
				}
				var out []byte
				var err error
				for try := 0; try < 50; try++ {
					time.Sleep(100 * time.Millisecond)
					out, err = exec.Command("ip", "netns", "exec", nsA, "iperf3", "-c", "192.0.2.2", "-t", "5", "-J").Output()
					if err == nil {
						break
					}
				}
				srv.Process.Kill()
				srv.Wait()
				if err != nil {
					b.Fatalf("iperf3: %v\n%s", err, out)
				}
				var r struct {
					End struct {
						SumReceived struct {
							BitsPerSecond float64 `json:"bits_per_second"`
						} `json:"sum_received"`
						SumSent struct {
							Retransmits int `json:"retransmits"`
						} `json:"sum_sent"`
					} `json:"end"`
				}
				if err := json.Unmarshal(out, &r); err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(r.End.SumReceived.BitsPerSecond/1e9, "Gbit/s")
				b.ReportMetric(float64(r.End.SumSent.Retransmits), "retr")
				b.Logf("offload=%v: %.2f Gbit/s, %d retransmits; a segmented %d coalesced %d, b segmented %d coalesced %d",
					off, r.End.SumReceived.BitsPerSecond/1e9, r.End.SumSent.Retransmits, ta.Segmented(), ta.Coalesced(), tb.Segmented(), tb.Coalesced())
			}
		})
	}
}

// TestIntegrationTapOffloadReadGSOAllocs sends a 40-segment TCP super-frame out
// of the TAP through an AF_PACKET socket with PACKET_VNET_HDR in the
// namespace: the device gets it whole (TSO) and Read cuts it into valid
// segments that carry the payload, across Reads of 16 bufs (the pending
// path), allocating nothing in steady state.
func TestIntegrationTapOffloadReadGSOAllocs(t *testing.T) {
	needRoot(t)
	ns := newNS(t, "og")
	d, err := Open(Config{Name: "otapg", NetNS: ns, Offload: true})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var fd int
	if err := inNS(t, ns, func() error {
		ifi, err := net.InterfaceByName("otapg")
		if err != nil {
			return err
		}
		if fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0); err != nil {
			return err
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1); err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: ifi.Index, Protocol: 0x0008}) // htons(ETH_P_IP)
	}); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)

	const nseg, mss = 40, 1448
	pl := payload(nseg*mss-100, 5)
	super := tcpFrame(false, 300, 7777, ot.ACK|ot.PSH, pl, "partial")
	hdr := make([]byte, VnetHdrLen)
	gsoHdr(false, mss).encode(hdr)
	msg := append(hdr, super...)

	const batch = 16
	bufs := make([][]byte, batch)
	for i := range bufs {
		bufs[i] = make([]byte, vswitch.BufSize)
	}
	sizes := make([]int, batch)
	timer := time.AfterFunc(60*time.Second, func() { d.Close() })
	defer timer.Stop()
	var got []byte // payload of the first round, checked after
	first := true
	round := func() {
		if _, err := unix.Write(fd, msg); err != nil {
			t.Fatalf("packet socket write: %v", err)
		}
		segs := 0
		for segs < nseg {
			n, err := d.Read(bufs, sizes, vswitch.Headroom)
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < n; i++ {
				f := bufs[i][vswitch.Headroom : vswitch.Headroom+sizes[i]]
				h, ok := offload.ParseTCP(f)
				if !ok || binary.BigEndian.Uint16(f[14+20:]) != 40000 {
					continue // IPv6 router solicitations and the like
				}
				if first {
					checkFrame(t, f)
					if len(f) > 1514 {
						t.Fatalf("segment of %d bytes", len(f))
					}
					got = append(got, f[h.Len():]...)
				}
				segs++
			}
		}
		if segs != nseg {
			t.Fatalf("%d segments, want %d", segs, nseg)
		}
		first = false
	}
	round()
	if !bytes.Equal(got, pl) {
		t.Fatal("segments do not carry the super-frame's payload")
	}
	if d.Segmented() != 1 {
		t.Fatalf("Segmented() = %d: the kernel did not hand the super-frame over whole", d.Segmented())
	}
	if a := testing.AllocsPerRun(50, round); a != 0 {
		t.Fatalf("offload TAP Read of super-frames: %v allocations per run, want 0", a)
	}
	if d.RxBad() != 0 {
		t.Fatalf("rxbad %d", d.RxBad())
	}
}
