package attach

import (
	"bytes"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// portableEnv makes this test binary use the batch path of the other
// Unixes (recvmsgEach, sendmsgEach) instead of recvmmsg/sendmmsg.
const portableEnv = "CORRAL_ATTACH_PORTABLE_MMSG"

func init() {
	if os.Getenv(portableEnv) == "1" {
		portableMmsg = true // before any test makes a socket
	}
}

// portableTests are the datagram and seqpacket tests run again through
// the portable batch path: vfkit's and krunkit's unixgram framing (the
// VFKT greeting, one frame per datagram), QEMU's dgram, udp listeners
// and dialed datagram and unixpacket ports, and their allocation tests.
var portableTests = []string{
	"TestUDPManyPeers", "TestUDPBatchAndOversize", "TestDgramQueueFullDrops",
	"TestDgramPeerIdleExpiry", "TestUnixgramVFKTAndPeers", "TestDgramPeerNoAllocs",
	"TestDialDatagram", "TestUDPv6AndRefusedPeer", "TestDatagramPathsNoAllocs",
	"TestRefusedPeerClosedByOnPort", "TestUnixpacket", "TestPortConformance",
	"TestRecvmsgEach", "TestPortableBatchNoAllocs",
}

// TestPortableBatchPath runs portableTests in a child of this test binary
// with the portable batch path, as corral runs on macOS and FreeBSD.
func TestPortableBatchPath(t *testing.T) {
	if portableMmsg {
		t.Skip("already the child")
	}
	re := "^(" + strings.Join(portableTests, "|") + ")$"
	cmd := exec.Command(os.Args[0], "-test.run", re, "-test.v", "-test.count=1", "-test.timeout=5m")
	cmd.Env = append(os.Environ(), portableEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("portable batch path: %v\n%s", err, out)
	}
	for _, name := range portableTests {
		if !regexp.MustCompile(`(?m)^--- (PASS|SKIP): ` + name + ` `).Match(out) {
			t.Errorf("%s did not pass on the portable path:\n%s", name, out)
		}
	}
}

// TestRecvmsgEach checks the portable batch calls on a unixgram socket
// pair against what recvmmsg/sendmmsg do: lengths, truncation flags,
// stopping at EAGAIN, errors only when nothing was done.
func TestRecvmsgEach(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	a, b := uintptr(fds[0]), uintptr(fds[1])

	// Nothing queued: EAGAIN.
	rh := make([]mmsghdr, 4)
	riov := make([]unix.Iovec, 4)
	rbufs := make([][]byte, 4)
	for i := range rbufs {
		rbufs[i] = make([]byte, 100)
	}
	arm := func() {
		for i := range rh {
			setMsg(&rh[i], &riov[i], rbufs[i])
		}
	}
	arm()
	if n, e := recvmsgEach(b, rh); n != 0 || e != unix.EAGAIN {
		t.Fatalf("recvmsgEach on an empty socket = %d, %v; want 0, EAGAIN", n, e)
	}

	// Three messages, the second too big for its buffer.
	msgs := [][]byte{bytes.Repeat([]byte{1}, 60), bytes.Repeat([]byte{2}, 150), bytes.Repeat([]byte{3}, 14)}
	wh := make([]mmsghdr, 3)
	wiov := make([]unix.Iovec, 3)
	if n := setSendMsgs(wh, wiov, msgs, 0, nil, 0); n != 3 {
		t.Fatalf("setSendMsgs = %d", n)
	}
	if n, e := sendmsgEach(a, wh); n != 3 || e != 0 {
		t.Fatalf("sendmsgEach = %d, %v; want 3, 0", n, e)
	}
	arm()
	n, e := recvmsgEach(b, rh)
	if n != 3 || e != 0 {
		t.Fatalf("recvmsgEach = %d, %v; want 3, 0", n, e)
	}
	for i, want := range []int{60, 150, 14} {
		trunc := rh[i].Hdr.Flags&unix.MSG_TRUNC != 0
		if int(rh[i].Len) != want && !(trunc && rh[i].Len == 100) {
			t.Errorf("message %d: Len %d, want %d", i, rh[i].Len, want)
		}
		if trunc != (i == 1) {
			t.Errorf("message %d: MSG_TRUNC %v", i, trunc)
		}
	}
	if !bytes.Equal(rbufs[2][:14], msgs[2]) {
		t.Error("third message's bytes differ")
	}

	// Send to a closed peer: the first message's error, nothing sent.
	unix.Close(fds[1])
	fds[1] = -1
	setSendMsgs(wh, wiov, msgs, 0, nil, 0)
	if n, e := sendmsgEach(a, wh); n != 0 || e == 0 {
		t.Fatalf("sendmsgEach to a closed peer = %d, %v; want 0 and an error", n, e)
	}

}

// TestPortableBatchNoAllocs: the portable batch calls allocate nothing.
func TestPortableBatchNoAllocs(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	msg := [][]byte{bytes.Repeat([]byte{1}, 60)}
	wh, wiov := make([]mmsghdr, 1), make([]unix.Iovec, 1)
	rh, riov := make([]mmsghdr, 4), make([]unix.Iovec, 4)
	rbuf := make([]byte, 100)
	allocs := testing.AllocsPerRun(100, func() {
		setSendMsgs(wh, wiov, msg, 0, nil, 0)
		if n, e := sendmsgEach(uintptr(fds[0]), wh); n != 1 {
			t.Fatalf("sendmsgEach = %d, %v", n, e)
		}
		for i := range rh {
			setMsg(&rh[i], &riov[i], rbuf)
		}
		if n, e := recvmsgEach(uintptr(fds[1]), rh); n != 1 {
			t.Fatalf("recvmsgEach = %d, %v", n, e)
		}
	})
	if allocs != 0 {
		t.Fatalf("portable batch calls: %v allocations per run, want 0", allocs)
	}
}
