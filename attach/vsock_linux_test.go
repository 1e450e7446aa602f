package attach

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mdlayher/vsock"
	"golang.org/x/sys/unix"

	vswitch "github.com/corralnet/corral/switch"
)

// needVsockLoopback skips the test, saying exactly why, when AF_VSOCK
// connections to the local loopback CID (1) do not work: the one skip the
// project allows. As root it first tries modprobe vsock_loopback.
func needVsockLoopback(t *testing.T) {
	t.Helper()
	var modprobe string
	if os.Geteuid() == 0 {
		out, err := exec.Command("modprobe", "vsock_loopback").CombinedOutput()
		if err != nil {
			modprobe = fmt.Sprintf("; modprobe vsock_loopback: %v %s", err, strings.TrimSpace(string(out)))
		}
	}
	ln, err := vsock.ListenContextID(unix.VMADDR_CID_ANY, 0, nil)
	if err != nil {
		t.Skipf("skipping: AF_VSOCK unavailable: listen: %v%s", err, modprobe)
	}
	port := ln.Addr().(*vsock.Addr).Port
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		if c, err := ln.Accept(); err == nil {
			c.Close()
		}
	}()
	defer func() { ln.Close(); <-accepted }()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	c, err := vsock.DialContext(ctx, unix.VMADDR_CID_LOCAL, port, nil)
	if err != nil {
		t.Skipf("skipping: AF_VSOCK loopback (CID 1) does not connect: dial 1:%d: %v — the kernel has no vsock_loopback transport%s", port, err, modprobe)
	}
	c.Close()
}

func TestVsock(t *testing.T) {
	needVsockLoopback(t)
	c := newCollector()
	l := listenT(t, Addr{Vsock, ":0"}, c)
	_, port, _ := cutColon(l.Addr().Target)
	if port == "0" {
		t.Fatalf("Addr() = %v, want the real port", l.Addr())
	}
	p, err := DialOnce(context.Background(), Addr{Vsock, "1:" + port}, testOpts(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	g := c.next(t)
	var want [][]byte
	for i := 0; i < 20; i++ {
		want = append(want, frame(i, 60+i*100))
	}
	if _, err := p.Write(outBufs(want...), vswitch.Headroom); err != nil {
		t.Fatal(err)
	}
	sameFrames(t, readFrames(t, g.p, len(want)), want)
	g.p.Write(outBufs(want...), vswitch.Headroom)
	sameFrames(t, readFrames(t, p, len(want)), want)
}
