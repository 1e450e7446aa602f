package e2e

// Switch benchmarks (issue 2 item 9): two ports of one switch, each a unix
// stream socket with a length prefix per frame, driven by this process.
// The same workloads run, side by side, through corral, gvproxy's switch,
// vde_switch and one bare unix socket between two processes (the physical
// limit). contrib/bench/run.sh (`make bench`) installs the peers, runs
// these benchmarks in interleaved rounds and prints the Markdown table.
//
// Every run is bounded in time; all traffic is on unix sockets.

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/corralnet/corral/e2e/harness"
)

// Bounds of one measurement.
const (
	benchWarmup       = 500 * time.Millisecond // traffic before the window opens
	benchWindow       = 3 * time.Second        // the measured window of a throughput run
	benchPings        = 20000                  // round trips at most per latency run
	benchPingWindow   = 3 * time.Second        // and at most this long
	benchPingTimeout  = 2 * time.Second        // one round trip longer than this is lost
	benchBatchBytes   = 64 << 10               // bytes the sender packs into one write
	benchSetupTimeout = 30 * time.Second       // a switch must accept its clients within this
	benchLearnSize    = 60                     // size of the frames that teach the switch the MACs
	benchEtherType    = 0x88b6                 // IEEE 802 local experimental EtherType 2
)

// benchMAC is an Ethernet address (this file does not import the switch,
// so that the benchmark builds while the switch changes).
type benchMAC = [6]byte

// benchMaxFrame is the largest frame any client accepts (vswitch.MaxFrameSize).
const benchMaxFrame = 65536

var (
	benchMACA = benchMAC{0x52, 0x54, 0x00, 0xbe, 0x00, 0x01}
	benchMACB = benchMAC{0x52, 0x54, 0x00, 0xbe, 0x00, 0x02}
)

// benchWorkload is one measurement.
type benchWorkload struct {
	name string
	size int  // Ethernet frame length without FCS
	rtt  bool // ping-pong of single frames instead of one-way throughput
}

var benchWorkloads = []benchWorkload{
	{name: "tput-64B", size: 64},
	{name: "tput-1500B", size: 1500},
	{name: "rtt-64B", size: 64, rtt: true},
}

// benchPair is what a target sets up for one workload: client a (port A,
// MAC benchMACA) and client b (port B, MAC benchMACB). For throughput a
// sends and b receives; for latency a pings and b echoes. a == nil means
// another process already sends; b == nil means another process echoes.
type benchPair struct {
	a, b  *benchConn
	learn bool // the switch must learn both MACs before the measurement
	// after, if set, runs after each measurement (to log the switch's own
	// counters: where frames were dropped).
	after func()
}

// benchTarget is one switch under test.
type benchTarget struct {
	name  string
	setup func(b *testing.B, w benchWorkload) benchPair
}

var benchTargets = []benchTarget{
	{name: "corral", setup: benchSetupCorral},
	{name: "gvproxy", setup: benchSetupGvproxy},
	{name: "vde-plug", setup: benchSetupVdePlug},
	{name: "vde-native", setup: benchSetupVdeNative},
	{name: "bare-unix", setup: benchSetupBare},
}

// BenchmarkSwitch measures frames/s, Gbit/s of frame bytes and round-trip
// latency between two ports of each switch. Run it with -benchtime 1x:
// every iteration is one bounded measurement.
func BenchmarkSwitch(b *testing.B) {
	for _, tg := range benchTargets {
		for _, w := range benchWorkloads {
			b.Run(tg.name+"/"+w.name, func(b *testing.B) {
				benchRun(b, tg, w)
			})
		}
	}
	// What two VMs on one host see: iperf3 TCP between two namespaces whose
	// TAPs `corral plug` attaches to one corral.
	for _, mtu := range []int{1500, 65520} {
		b.Run(fmt.Sprintf("corral/iperf3-tcp-mtu%d", mtu), func(b *testing.B) {
			benchIperfRuns(b, func(b *testing.B) (client, server *harness.NS, addr string) {
				harness.NeedRoot(b)
				sock := benchStartCorralSwitch(b)
				return benchPlugGuests(b, [2]string{sock, sock}, mtu)
			})
		})
	}
}

func benchRun(b *testing.B, tg benchTarget, w benchWorkload) {
	var mpps, gbps, p50, p99, lost, delivered float64
	var pings int
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		p := tg.setup(b, w)
		if p.learn {
			benchLearn(b, p)
		}
		b.StartTimer()
		if w.rtt {
			r := benchRTT(b, p, w.size)
			p50 += r.p50.Seconds() * 1e6
			p99 += r.p99.Seconds() * 1e6
			pings += r.n
			lost += float64(r.lost)
		} else {
			r := benchThroughput(b, p, w.size)
			if p.after != nil {
				p.after()
			}
			mpps += r.pps / 1e6
			gbps += r.bps / 1e9
			delivered += r.delivered
		}
	}
	n := float64(b.N)
	b.ReportMetric(0, "ns/op")
	if w.rtt {
		b.ReportMetric(p50/n, "p50-us")
		b.ReportMetric(p99/n, "p99-us")
		b.ReportMetric(float64(pings)/n, "pings")
		b.ReportMetric(lost/n, "lost")
	} else {
		b.ReportMetric(mpps/n, "Mpps")
		b.ReportMetric(gbps/n, "Gbit/s")
		if delivered >= 0 {
			b.ReportMetric(delivered/n, "delivered-%")
		}
	}
}

// benchConn is a client of a stream port: frames preceded by a big-endian
// length of hdr bytes (4 for QEMU's framing, 2 for VDE's stream); or, with
// dgram set, of a datagram port: one frame per datagram (the blobs that
// send takes still carry a length of hdr bytes before each frame).
type benchConn struct {
	c     net.Conn
	hdr   int
	dgram bool
	// Read side: buf[r:w] is received and not yet consumed.
	buf  []byte
	r, w int
}

func newBenchConn(b testing.TB, c net.Conn, hdr int) *benchConn {
	b.Cleanup(func() { c.Close() })
	return &benchConn{c: c, hdr: hdr, buf: make([]byte, 1<<20)}
}

// send writes a blob of length-prefixed frames (as frames returns). It
// returns how many bytes of blob went out (a frame sent as a datagram
// counts with its length prefix).
func (bc *benchConn) send(blob []byte) (int, error) {
	if !bc.dgram {
		return bc.c.Write(blob)
	}
	sent := 0
	for len(blob)-sent >= bc.hdr {
		l := bc.hdr + bc.frameLen(blob[sent:])
		if _, err := bc.c.Write(blob[sent+bc.hdr : sent+l]); err != nil {
			return sent, err
		}
		sent += l
	}
	return sent, nil
}

func (bc *benchConn) frameLen(b []byte) int {
	if bc.hdr == 2 {
		return int(binary.BigEndian.Uint16(b))
	}
	return int(binary.BigEndian.Uint32(b))
}

// next returns the next frame; it is valid until the next call.
func (bc *benchConn) next() ([]byte, error) {
	if bc.dgram {
		n, err := bc.c.Read(bc.buf)
		if err != nil {
			return nil, err
		}
		return bc.buf[:n], nil
	}
	for {
		if avail := bc.w - bc.r; avail >= bc.hdr {
			l := bc.frameLen(bc.buf[bc.r:])
			if l == 0 || l > benchMaxFrame {
				return nil, fmt.Errorf("bad frame length %d", l)
			}
			if avail >= bc.hdr+l {
				f := bc.buf[bc.r+bc.hdr : bc.r+bc.hdr+l]
				bc.r += bc.hdr + l
				return f, nil
			}
		}
		if bc.r > 0 {
			bc.w = copy(bc.buf, bc.buf[bc.r:bc.w])
			bc.r = 0
		}
		n, err := bc.c.Read(bc.buf[bc.w:])
		bc.w += n
		if n == 0 && err != nil {
			return nil, err
		}
	}
}

// drained reports whether next will have to read from the socket.
func (bc *benchConn) drained() bool { return bc.dgram || bc.w-bc.r < bc.hdr }

// frames returns count frames of size bytes from src to dst, each preceded
// by its length, seq in the 4 bytes after the Ethernet header.
func (bc *benchConn) frames(count, size int, dst, src benchMAC, seq uint32) []byte {
	rec := bc.hdr + size
	out := make([]byte, count*rec)
	for i := range count {
		f := out[i*rec:]
		if bc.hdr == 2 {
			binary.BigEndian.PutUint16(f, uint16(size))
		} else {
			binary.BigEndian.PutUint32(f, uint32(size))
		}
		f = f[bc.hdr : bc.hdr+size]
		copy(f[0:6], dst[:])
		copy(f[6:12], src[:])
		binary.BigEndian.PutUint16(f[12:14], benchEtherType)
		binary.BigEndian.PutUint32(f[14:18], seq)
	}
	return out
}

// benchLearn makes the switch learn both MACs, so that the measurement is
// forwarded unicast rather than flooded (gvproxy drops unknown unicast):
// b sends to a; a sends to b until b gets one; b sends to a until a gets
// one. Learning frames are benchLearnSize long, which no workload uses.
func benchLearn(b *testing.B, p benchPair) {
	b.Helper()
	toA := p.b.frames(1, benchLearnSize, benchMACA, benchMACB, 0)
	toB := p.a.frames(1, benchLearnSize, benchMACB, benchMACA, 0)
	deadline := time.Now().Add(benchSetupTimeout)
	if _, err := p.b.send(toA); err != nil {
		b.Fatalf("learn: write b: %v", err)
	}
	for _, step := range []struct {
		name     string
		from, to *benchConn
		frame    []byte
		src      benchMAC
	}{
		{"a to b", p.a, p.b, toB, benchMACA},
		{"b to a", p.b, p.a, toA, benchMACB},
	} {
		got := false
		for !got {
			if time.Now().After(deadline) {
				b.Fatalf("learn: no frame %s within %v", step.name, benchSetupTimeout)
			}
			if _, err := step.from.send(step.frame); err != nil {
				b.Fatalf("learn %s: write: %v", step.name, err)
			}
			step.to.c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			for {
				f, err := step.to.next()
				if err != nil {
					if errors.Is(err, os.ErrDeadlineExceeded) {
						break
					}
					b.Fatalf("learn %s: read: %v", step.name, err)
				}
				if len(f) >= 14 && bytes.Equal(f[6:12], step.src[:]) {
					got = true
					break
				}
			}
		}
	}
	// Whatever else arrives (flooded copies) is skipped by the workloads'
	// filters: their frames are never benchLearnSize long.
	p.a.c.SetReadDeadline(time.Time{})
	p.b.c.SetReadDeadline(time.Time{})
}

type benchTputResult struct {
	pps, bps float64
	// delivered is the share of the frames sent over the whole run (warm-up
	// included) that arrived, in percent; -1 when another process sent.
	delivered float64
}

// benchThroughput sends size-byte frames from a to b as fast as the path
// takes them for benchWarmup+benchWindow and counts, at b, the frames to b
// of that size that arrive within the window.
func benchThroughput(b *testing.B, p benchPair, size int) benchTputResult {
	b.Helper()
	var frames, sentBytes atomic.Uint64
	var wg sync.WaitGroup
	var rxErr, txErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		var n uint64
		for {
			f, err := p.b.next()
			if err != nil {
				frames.Store(n)
				if !errors.Is(err, os.ErrDeadlineExceeded) {
					rxErr = err
				}
				return
			}
			if len(f) == size && f[5] == benchMACB[5] && f[11] == benchMACA[5] {
				n++
			}
			if n&1023 == 0 || p.b.drained() {
				frames.Store(n)
			}
		}
	}()
	if p.a != nil {
		batch := p.a.frames(max(1, benchBatchBytes/(p.a.hdr+size)), size, benchMACB, benchMACA, 1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				n, err := p.a.send(batch)
				sentBytes.Add(uint64(n))
				if err != nil {
					if !errors.Is(err, os.ErrDeadlineExceeded) {
						txErr = err
					}
					return
				}
			}
		}()
	}
	time.Sleep(benchWarmup)
	f0, t0 := frames.Load(), time.Now()
	time.Sleep(benchWindow)
	f1, t1 := frames.Load(), time.Now()
	if p.a != nil {
		p.a.c.SetWriteDeadline(time.Now())
	}
	p.b.c.SetReadDeadline(time.Now())
	wg.Wait()
	if rxErr != nil || txErr != nil {
		b.Fatalf("throughput run failed: receive: %v; send: %v", rxErr, txErr)
	}
	if f1 == f0 {
		b.Fatalf("no %d-byte frame arrived within %v", size, benchWindow)
	}
	secs := t1.Sub(t0).Seconds()
	pps := float64(f1-f0) / secs
	r := benchTputResult{pps: pps, bps: pps * float64(size) * 8, delivered: -1}
	if p.a != nil {
		if sent := sentBytes.Load() / uint64(p.a.hdr+size); sent > 0 {
			r.delivered = 100 * float64(frames.Load()) / float64(sent)
		}
	}
	return r
}

type benchRTTResult struct {
	p50, p99 time.Duration
	n, lost  int
}

// benchRTT sends single size-byte frames from a to b, which returns each
// one; a waits for each before sending the next.
func benchRTT(b *testing.B, p benchPair, size int) benchRTTResult {
	b.Helper()
	var wg sync.WaitGroup
	var echoErr error
	if p.b != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out := make([]byte, p.b.hdr+size)
			for {
				f, err := p.b.next()
				if err != nil {
					if !errors.Is(err, os.ErrDeadlineExceeded) {
						echoErr = err
					}
					return
				}
				if len(f) != size {
					continue
				}
				// Back to the sender: swap the MACs.
				o := out[:p.b.hdr+len(f)]
				if p.b.hdr == 2 {
					binary.BigEndian.PutUint16(o, uint16(len(f)))
				} else {
					binary.BigEndian.PutUint32(o, uint32(len(f)))
				}
				copy(o[p.b.hdr:], f)
				copy(o[p.b.hdr:p.b.hdr+6], f[6:12])
				copy(o[p.b.hdr+6:p.b.hdr+12], f[0:6])
				if _, err := p.b.send(o); err != nil {
					echoErr = err
					return
				}
			}
		}()
	}
	rtts := make([]time.Duration, 0, benchPings)
	lost := 0
	end := time.Now().Add(benchPingWindow)
	var pingErr error
	for seq := uint32(1); len(rtts) < benchPings && time.Now().Before(end); seq++ {
		ping := p.a.frames(1, size, benchMACB, benchMACA, seq)
		t0 := time.Now()
		if _, err := p.a.send(ping); err != nil {
			pingErr = err
			break
		}
		p.a.c.SetReadDeadline(t0.Add(benchPingTimeout))
		for {
			f, err := p.a.next()
			if errors.Is(err, os.ErrDeadlineExceeded) {
				lost++
				break
			}
			if err != nil {
				pingErr = err
				break
			}
			if len(f) == size && binary.BigEndian.Uint32(f[14:18]) == seq {
				rtts = append(rtts, time.Since(t0))
				break
			}
		}
		if pingErr != nil || lost > 10 {
			break
		}
	}
	if p.b != nil {
		p.b.c.SetReadDeadline(time.Now())
	}
	wg.Wait()
	if pingErr != nil || echoErr != nil || len(rtts) == 0 {
		b.Fatalf("latency run failed after %d round trips, %d lost: ping: %v; echo: %v", len(rtts), lost, pingErr, echoErr)
	}
	slices.Sort(rtts)
	return benchRTTResult{
		p50:  rtts[len(rtts)/2],
		p99:  rtts[len(rtts)*99/100],
		n:    len(rtts),
		lost: lost,
	}
}

// benchDial connects to a unix stream socket, waiting for it to appear.
func benchDial(b testing.TB, path string) net.Conn {
	b.Helper()
	var c net.Conn
	harness.WaitFor(b, benchSetupTimeout, "a listener on "+path, func() bool {
		var err error
		c, err = net.Dial("unix", path)
		return err == nil
	})
	return c
}

// benchSetupCorral starts the real binary with one fence listening on a
// unix socket and attaches both clients there.
func benchSetupCorral(b *testing.B, w benchWorkload) benchPair {
	sock := benchStartCorralSwitch(b)
	admin := filepath.Join(filepath.Dir(sock), "admin.sock")
	return benchPair{
		a:     newBenchConn(b, benchDial(b, sock), 4),
		b:     newBenchConn(b, benchDial(b, sock), 4),
		learn: true,
		after: func() { b.Logf("corral counters: %s", benchCorralCounters(b, admin)) },
	}
}

// benchStartCorralSwitch starts corral with one fence (no gateway) on the
// unix socket it returns; the admin socket is admin.sock beside it.
func benchStartCorralSwitch(b *testing.B) string {
	dir := harness.ShortTempDir(b)
	sock := filepath.Join(dir, "bench.sock")
	cfg := fmt.Sprintf(`fences:
  - name: bench
    id: 1
    listen: ["unix://%s"]
    gateway: {enabled: false}
admin:
  listen: "unix://%s"
log:
  level: info
`, sock, filepath.Join(dir, "admin.sock"))
	harness.StartCorral(b, nil, cfg)
	return sock
}

// benchCorralCounters summarizes a running corral's frame counters and
// drops by reason (from `corral status --json`), for the benchmark's log.
func benchCorralCounters(b testing.TB, admin string) string {
	out, err := exec.Command(harness.CorralBinary(b), "status", "--json", "--admin", "unix://"+admin).Output()
	if err != nil {
		return fmt.Sprintf("corral status: %v", err)
	}
	var st struct {
		Fences []struct {
			FramesIn  uint64            `json:"frames_in"`
			FramesOut uint64            `json:"frames_out"`
			Drops     map[string]uint64 `json:"drops"`
		} `json:"fences"`
		Ports []struct {
			Name     string            `json:"name"`
			RxFrames uint64            `json:"rx_frames"`
			TxFrames uint64            `json:"tx_frames"`
			Drops    map[string]uint64 `json:"drops"`
		} `json:"ports"`
		Trunk *struct {
			RxFrames uint64            `json:"rx_frames"`
			TxFrames uint64            `json:"tx_frames"`
			Drops    map[string]uint64 `json:"drops"`
		} `json:"trunk"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		return fmt.Sprintf("corral status: %v", err)
	}
	var sb strings.Builder
	for _, f := range st.Fences {
		fmt.Fprintf(&sb, "fence in=%d out=%d drops=%v", f.FramesIn, f.FramesOut, f.Drops)
	}
	for _, p := range st.Ports {
		fmt.Fprintf(&sb, "; port %s rx=%d tx=%d drops=%v", p.Name, p.RxFrames, p.TxFrames, p.Drops)
	}
	if st.Trunk != nil {
		fmt.Fprintf(&sb, "; trunk rx=%d tx=%d drops=%v", st.Trunk.RxFrames, st.Trunk.TxFrames, st.Trunk.Drops)
	}
	return sb.String()
}

// benchTool returns the path of a peer program: $env if set, else the
// file under .cache/bin where run.sh installs it, else the PATH.
func benchTool(b testing.TB, env, name string) string {
	b.Helper()
	if p := os.Getenv(env); p != "" {
		return p
	}
	if p := filepath.Join(harness.RepoRoot(b), ".cache", "bin", name); benchFileExists(p) {
		return p
	}
	p, err := exec.LookPath(name)
	if err != nil {
		b.Fatalf("%s not found (set %s, or run contrib/bench/run.sh, which installs it): %v", name, env, err)
	}
	return p
}

func benchFileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// benchSetupGvproxy starts gvproxy with its QEMU socket (port A; it takes
// exactly one client) and its API socket, on which `POST /connect` turns
// the connection into a second port with the same framing (port B).
func benchSetupGvproxy(b *testing.B, w benchWorkload) benchPair {
	bin := benchTool(b, "CORRAL_BENCH_GVPROXY", "gvproxy")
	dir := harness.ShortTempDir(b)
	qemu := filepath.Join(dir, "qemu.sock")
	api := filepath.Join(dir, "api.sock")
	harness.Start(b, nil, bin, "-listen-qemu", "unix://"+qemu, "-listen", "unix://"+api, "-ssh-port", "-1")
	a := newBenchConn(b, benchDial(b, qemu), 4)
	bc := benchDial(b, api)
	if _, err := bc.Write([]byte("POST /connect HTTP/1.1\r\nHost: gvproxy\r\n\r\n")); err != nil {
		b.Fatal(err)
	}
	// gvproxy hijacks the connection without answering; frames sent before
	// the hijack could stay in its HTTP reader. Learning checks the result.
	time.Sleep(200 * time.Millisecond)
	return benchPair{a: a, b: newBenchConn(b, bc, 4), learn: true}
}

// benchProc is a child process that this file starts itself (the harness
// gives children no stdin; vde_switch exits on EOF of stdin, vde_plug talks
// on stdin and stdout).
func benchProc(b testing.TB, stdin, stdout *os.File, name string, args ...string) {
	b.Helper()
	cmd := exec.Command(name, args...)
	var log bytes.Buffer
	var mu sync.Mutex
	logw := benchWriterFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return log.Write(p) })
	cmd.Stdin = stdin
	if stdout != nil {
		cmd.Stdout = stdout
	} else {
		cmd.Stdout = logw
	}
	cmd.Stderr = logw
	if err := cmd.Start(); err != nil {
		b.Fatalf("start %s: %v", cmd, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	b.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if b.Failed() {
			mu.Lock()
			b.Logf("output of %s:\n%s", cmd, log.String())
			mu.Unlock()
		}
	})
}

type benchWriterFunc func([]byte) (int, error)

func (f benchWriterFunc) Write(p []byte) (int, error) { return f(p) }

// benchSocketpair returns a connected pair of unix stream sockets: one as
// a net.Conn, the other as a file for a child's stdin and stdout.
func benchSocketpair(b testing.TB) (net.Conn, *os.File) {
	b.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	mine := os.NewFile(uintptr(fds[0]), "bench-socketpair")
	theirs := os.NewFile(uintptr(fds[1]), "bench-socketpair-child")
	c, err := net.FileConn(mine)
	mine.Close()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { theirs.Close() })
	return c, theirs
}

// benchStartVde starts vde_switch with its control directory in dir and
// returns the directory.
func benchStartVde(b *testing.B, dir string) string {
	sw := benchTool(b, "CORRAL_BENCH_VDE_SWITCH", "vde_switch")
	ctl := filepath.Join(dir, "vde.ctl")
	// vde_switch reads its console from stdin and exits on EOF: give it a
	// pipe that stays open until cleanup.
	pr, pw, err := os.Pipe()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { pw.Close(); pr.Close() })
	benchProc(b, pr, nil, sw, "-s", ctl)
	harness.WaitFor(b, benchSetupTimeout, "vde_switch's control socket", func() bool {
		return benchFileExists(filepath.Join(ctl, "ctl"))
	})
	return ctl
}

// benchSetupVdePlug starts vde_switch and attaches each client through a
// vde_plug process speaking VDE's stream framing (2-byte length) on its
// stdin and stdout.
func benchSetupVdePlug(b *testing.B, w benchWorkload) benchPair {
	plug := benchTool(b, "CORRAL_BENCH_VDE_PLUG", "vde_plug")
	dir := harness.ShortTempDir(b)
	ctl := benchStartVde(b, dir)
	var conns [2]*benchConn
	for i := range conns {
		c, child := benchSocketpair(b)
		benchProc(b, child, child, plug, ctl)
		child.Close()
		conns[i] = newBenchConn(b, c, 2)
	}
	return benchPair{a: conns[0], b: conns[1], learn: true}
}

// benchSetupVdeNative starts vde_switch and attaches each client with
// VDE's own protocol: a request_v3 on the control socket names a datagram
// socket of ours; the switch answers with the address of its data socket
// for the new port; then one frame per datagram both ways. vde_switch
// sends without blocking, so frames a full receive queue cannot take are
// lost (counted only if received).
func benchSetupVdeNative(b *testing.B, w benchWorkload) benchPair {
	dir := harness.ShortTempDir(b)
	ctl := benchStartVde(b, dir)
	var conns [2]*benchConn
	for i := range conns {
		ctlc, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: filepath.Join(ctl, "ctl"), Net: "unix"})
		if err != nil {
			b.Fatalf("vde control socket: %v", err)
		}
		b.Cleanup(func() { ctlc.Close() })
		local := filepath.Join(dir, fmt.Sprintf("port%d", i))
		data, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: local, Net: "unixgram"})
		if err != nil {
			b.Fatal(err)
		}
		// struct request_v3 (packed, host byte order): magic 0xfeedface,
		// version 3, type REQ_NEW_CONTROL (port 0: any), sockaddr_un (110
		// bytes), description.
		const sunLen = 110
		req := make([]byte, 12+sunLen, 12+sunLen+32)
		binary.NativeEndian.PutUint32(req[0:], 0xfeedface)
		binary.NativeEndian.PutUint32(req[4:], 3)
		binary.NativeEndian.PutUint32(req[8:], 0)
		binary.NativeEndian.PutUint16(req[12:], syscall.AF_UNIX)
		copy(req[14:12+sunLen], local)
		req = append(req, "corral-bench"...)
		if _, err := ctlc.Write(req); err != nil {
			b.Fatalf("vde request: %v", err)
		}
		reply := make([]byte, sunLen)
		ctlc.SetReadDeadline(time.Now().Add(benchSetupTimeout))
		if _, err := io.ReadFull(ctlc, reply); err != nil {
			b.Fatalf("vde reply: %v", err)
		}
		path := reply[2:]
		if i := bytes.IndexByte(path, 0); i >= 0 {
			path = path[:i]
		}
		// Connect the datagram socket to the port's data socket, so that
		// frames go out with write(2) like VDE clients send them.
		rc, err := data.SyscallConn()
		if err != nil {
			b.Fatal(err)
		}
		var cerr error
		if err := rc.Control(func(fd uintptr) {
			cerr = syscall.Connect(int(fd), &syscall.SockaddrUnix{Name: string(path)})
		}); err != nil || cerr != nil {
			b.Fatalf("connect to vde data socket %s: %v %v", path, err, cerr)
		}
		bc := newBenchConn(b, data, 4)
		bc.dgram = true
		conns[i] = bc
	}
	return benchPair{a: conns[0], b: conns[1], learn: true}
}

var loadgenOnce = sync.OnceValues(func() (string, error) {
	if p := os.Getenv("CORRAL_BENCH_LOADGEN"); p != "" {
		return p, nil
	}
	root, err := os.Getwd()
	if err != nil {
		return "", err
	}
	root = filepath.Dir(root) // the test runs in e2e/
	bin := filepath.Join(root, ".cache", "bin", "corral-loadgen")
	tmp := fmt.Sprintf("%s.%d", bin, os.Getpid())
	cmd := exec.Command("go", "build", "-o", tmp, "./contrib/bench/loadgen")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./contrib/bench/loadgen: %v\n%s", err, out)
	}
	return bin, os.Rename(tmp, bin)
})

// benchSetupBare is one unix stream socket between this process and a
// loadgen process: for throughput loadgen sends (the same packed writes as
// the other senders), for latency it echoes what it reads.
func benchSetupBare(b *testing.B, w benchWorkload) benchPair {
	bin, err := loadgenOnce()
	if err != nil {
		b.Fatal(err)
	}
	dir := harness.ShortTempDir(b)
	sock := filepath.Join(dir, "bare.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	args := []string{"-connect", sock, "-hdr", "4", "-size", fmt.Sprint(w.size),
		"-batch", fmt.Sprint(benchBatchBytes),
		"-duration", (benchWarmup + benchWindow + benchPingWindow + 10*time.Second).String()}
	if w.rtt {
		args = append(args, "-mode", "echo")
	} else {
		args = append(args, "-mode", "send",
			"-dst", net.HardwareAddr(benchMACB[:]).String(), "-src", net.HardwareAddr(benchMACA[:]).String())
	}
	harness.Start(b, nil, bin, args...)
	ln.SetDeadline(time.Now().Add(benchSetupTimeout))
	c, err := ln.Accept()
	if err != nil {
		b.Fatalf("loadgen did not connect: %v", err)
	}
	bc := newBenchConn(b, c, 4)
	if w.rtt {
		return benchPair{a: bc}
	}
	return benchPair{b: bc}
}
