package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"flag"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corralnet/corral/pcap"
	"github.com/corralnet/corral/pcap/pcaptest"
)

var update = flag.Bool("update", false, "rewrite golden files: the shared captures in the repository's testdata/, docs/configuration.md")

func TestCaptureUsage(t *testing.T) {
	for _, argv := range [][]string{
		{"capture"},
		{"capture", "--fence", "a", "--port", "1"},
		{"capture", "--fence", "a", "--seconds", "-1"},
		{"capture", "--fence", "a", "-w", ""},
	} {
		if code, _, errOut := runCLI(t, append(argv, "--admin", "/nonexistent/admin.sock")...); code != exitConfig {
			t.Errorf("%q: exit %d (%s), want %d", argv, code, errOut, exitConfig)
		}
	}
}

func TestCaptureCommand(t *testing.T) {
	dir := shortDir(t)
	adminSock, portSock := filepath.Join(dir, "admin.sock"), filepath.Join(dir, "a.sock")
	startRun(t, `fences: [{name: a, id: 1, listen: ["unix://`+portSock+`"]}, {name: b, id: 2}]
admin: {listen: "unix://`+adminSock+`"}
`)
	if code, _, errOut := runCLI(t, "capture", "--admin", adminSock, "--fence", "nope"); code != exitFail || !strings.Contains(errOut, "no fence") {
		t.Errorf("unknown fence: exit %d stderr %q", code, errOut)
	}

	// A time-bounded capture of an idle fence: a valid, empty pcap.
	empty := filepath.Join(dir, "empty.pcap")
	if code, _, errOut := runCLI(t, "capture", "--admin", adminSock, "--fence", "b", "--seconds", "0.3", "-w", empty); code != 0 || !strings.Contains(errOut, "0 frames captured") {
		t.Fatalf("seconds: exit %d stderr %q", code, errOut)
	}
	if n := readPcap(t, empty); len(n) != 0 {
		t.Fatalf("idle fence: %d frames", len(n))
	}

	// -w - writes the pcap to stdout: the 24-byte header of an empty capture.
	code, out, errOut := runCLI(t, "capture", "--admin", adminSock, "--fence", "2", "--seconds", "0.2", "-w", "-")
	if code != 0 || len(out) != 24 || binary.LittleEndian.Uint32([]byte(out)) != 0xa1b2c3d4 {
		t.Fatalf("-w -: exit %d, %d bytes on stdout %x, stderr %q", code, len(out), out, errOut)
	}

	// -c 2 on fence a while a client sends.
	file := filepath.Join(dir, "a.pcap")
	stderr := &syncBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- execute(context.Background(), []string{"capture", "--admin", adminSock, "--fence", "a", "-c", "2", "-w", file},
			strings.NewReader(""), &syncBuffer{}, stderr)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(stderr.String(), "capturing fence a") {
		if time.Now().After(deadline) {
			t.Fatalf("capture did not start: %q", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	conn, err := net.Dial("unix", portSock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	frame := make([]byte, 60)
	copy(frame, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0, 0, 0x53, 1, 0x88, 0xb5})
	msg := binary.BigEndian.AppendUint32(nil, uint32(len(frame)))
	msg = append(msg, frame...)

send:
	for i := 0; ; i++ {
		if i == 300 {
			t.Fatalf("capture -c 2 did not end: %q", stderr.String())
		}
		if _, err := conn.Write(msg); err != nil {
			t.Fatal(err)
		}
		select {
		case code = <-done:
			break send
		case <-time.After(100 * time.Millisecond):
		}
	}
	if code != 0 || !strings.Contains(stderr.String(), "2 frames captured") {
		t.Fatalf("exit %d stderr %q", code, stderr.String())
	}
	frames := readPcap(t, file)
	if len(frames) != 2 || string(frames[0]) != string(frame) {
		t.Fatalf("pcap: %d frames, first %x", len(frames), frames)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	pcaptest.Golden(t, b, "capture/cli-fence-count-2.pcap", *update)
}

// readPcap returns the frames of a pcap file, checking that they are
// whole Ethernet frames captured in the last minute.
func readPcap(t *testing.T, file string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	h, ps, err := pcap.ReadAll(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if h.LinkType != pcap.LinkTypeEthernet {
		t.Fatalf("%s: link type %d, want Ethernet", file, h.LinkType)
	}
	var out [][]byte
	for _, p := range ps {
		if len(p.Data) != p.Len || time.Since(p.Time) > time.Minute {
			t.Errorf("%s: %d of %d bytes at %v", file, len(p.Data), p.Len, p.Time)
		}
		out = append(out, p.Data)
	}
	return out
}
