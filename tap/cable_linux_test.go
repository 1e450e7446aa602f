package tap

import (
	"context"
	"net"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/corralnet/corral/attach"
)

// TestIntegrationTapCable joins two namespaces with two TAP devices and
// a unix stream "cable" (the 4-byte length framing), each end spliced to
// its TAP, the way two `corral plug` processes on either end of one link
// would be, and pings across:
//
//	ns a: ctapa0 192.0.2.1 ─ Splice ─ stream ═ unix socket ═ stream ─ Splice ─ ctapb0 192.0.2.2 :ns b
func TestIntegrationTapCable(t *testing.T) {
	needRoot(t)
	nsA, nsB := newNS(t, "ca"), newNS(t, "cb")
	ta, err := Open(Config{Name: "ctapa0", NetNS: nsA, MTU: 1500})
	if err != nil {
		t.Fatal(err)
	}
	tb, err := Open(Config{Name: "ctapb0", NetNS: nsB, MTU: 1500})
	if err != nil {
		ta.Close()
		t.Fatal(err)
	}
	ipIn(t, nsA, "addr", "add", "192.0.2.1/24", "dev", "ctapa0")
	ipIn(t, nsB, "addr", "add", "192.0.2.2/24", "dev", "ctapb0")

	dir := t.TempDir()
	ln, err := net.Listen("unix", filepath.Join(dir, "c"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ca, err := net.Dial("unix", filepath.Join(dir, "c"))
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
	defer func() {
		cancel()
		for i := 0; i < 2; i++ {
			select {
			case <-errs:
			case <-time.After(20 * time.Second):
				t.Error("Splice did not return after cancel")
			}
		}
	}()

	out, err := exec.Command("ip", "netns", "exec", nsA, "ping", "-c", "3", "-i", "0.2", "-W", "5", "192.0.2.2").CombinedOutput()
	if err != nil {
		t.Fatalf("ping across the cable: %v\n%s", err, out)
	}
	// A full-size frame crosses too (1472 + 28 = 1500 bytes of IP).
	out, err = exec.Command("ip", "netns", "exec", nsB, "ping", "-c", "2", "-i", "0.2", "-W", "5", "-M", "do", "-s", "1472", "192.0.2.1").CombinedOutput()
	if err != nil {
		t.Fatalf("full-size ping across the cable: %v\n%s", err, out)
	}
}
