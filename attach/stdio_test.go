package attach

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	vswitch "github.com/corralnet/corral/switch"
)

func TestMain(m *testing.M) {
	if os.Getenv("ATTACH_STDIO_HELPER") == "1" {
		stdioEcho()
	}
	code := m.Run()
	if code == 0 {
		// Every listener, port and Dial loop stops its goroutines.
		deadline := time.Now().Add(10 * time.Second)
		for {
			leaked := leakedGoroutines()
			if leaked == "" {
				break
			}
			if time.Now().After(deadline) {
				fmt.Fprintf(os.Stderr, "goroutine leak:\n%s\n", leaked)
				code = 1
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	os.Exit(code)
}

// stdioEcho is the child process of TestStdioPort: an echo over its own
// standard input and output.
func stdioEcho() {
	p, err := NewStdioPort(Options{})
	if err != nil {
		os.Exit(3)
	}
	bufs, sizes := batch(p.BatchSize())
	for {
		n, err := p.Read(bufs, sizes, vswitch.Headroom)
		if err != nil {
			os.Exit(0)
		}
		out := make([][]byte, n)
		for i := range out {
			out[i] = bufs[i][:vswitch.Headroom+sizes[i]]
		}
		if _, err := p.Write(out, vswitch.Headroom); err != nil {
			os.Exit(4)
		}
	}
}

func TestStdioPort(t *testing.T) {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "ATTACH_STDIO_HELPER=1")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	var want [][]byte
	for i := 0; i < 200; i++ {
		want = append(want, frame(i, 14+(i*97)%3000))
	}
	go in.Write(encode(want...))
	for i := range want {
		if got := readFramed(t, out); !bytes.Equal(got, want[i]) {
			t.Fatalf("echoed frame %d differs", i)
		}
	}
	in.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("helper: %v", err)
	}
}

// leakedGoroutines returns the stacks of goroutines still running code of
// this package (TestMain aside).
func leakedGoroutines() string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var leaked []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "corral/attach.") && !strings.Contains(g, "attach.TestMain") {
			leaked = append(leaked, g)
		}
	}
	return strings.Join(leaked, "\n\n")
}
