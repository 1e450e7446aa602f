package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/corralnet/corral/attach"
	vswitch "github.com/corralnet/corral/switch"
)

// plugSwitch listens on a unix socket like corral and hands over the
// ports plug makes.
type plugSwitch struct {
	l     attach.Listener
	ports chan vswitch.Port
}

func listenPlugSwitch(t *testing.T, path string) *plugSwitch {
	t.Helper()
	s := &plugSwitch{ports: make(chan vswitch.Port, 4)}
	l, err := attach.Listen(context.Background(), attach.Addr{Scheme: attach.Unix, Target: path}, attach.Options{},
		func(p vswitch.Port, name string) (<-chan struct{}, error) {
			s.ports <- p
			return make(chan struct{}), nil
		})
	if err != nil {
		t.Fatal(err)
	}
	s.l = l
	t.Cleanup(func() { l.Close() })
	return s
}

func (s *plugSwitch) port(t *testing.T) vswitch.Port {
	t.Helper()
	select {
	case p := <-s.ports:
		return p
	case <-time.After(30 * time.Second):
		t.Fatal("plug did not connect within 30 s")
		return nil
	}
}

// readPlugFrame reads one frame from p, failing after 30 s.
func readPlugFrame(t *testing.T, p vswitch.Port) []byte {
	t.Helper()
	type res struct {
		b   []byte
		err error
	}
	c := make(chan res, 1)
	go func() {
		bufs := [][]byte{make([]byte, vswitch.BufSize)}
		sizes := []int{0}
		n, err := p.Read(bufs, sizes, vswitch.Headroom)
		if n == 0 {
			c <- res{nil, err}
			return
		}
		c <- res{bufs[0][vswitch.Headroom : vswitch.Headroom+sizes[0]], err}
	}()
	select {
	case r := <-c:
		if r.err != nil {
			t.Fatalf("switch port Read: %v", r.err)
		}
		return r.b
	case <-time.After(30 * time.Second):
		t.Fatal("no frame within 30 s")
		return nil
	}
}

// TestPlugRedials: the switch goes away under runPlug and comes back on
// the same socket; plug re-dials, and frames flow both ways again. With
// once, runPlug returns an error instead.
func TestPlugRedials(t *testing.T) {
	dir, err := os.MkdirTemp("", "plug")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "s.sock")
	addr := attach.Addr{Scheme: attach.Unix, Target: path}
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	opts := attach.Options{Logger: log}

	for _, once := range []bool{false, true} {
		sw := listenPlugSwitch(t, path)
		remote, err := attach.DialOnce(context.Background(), addr, opts)
		if err != nil {
			t.Fatal(err)
		}
		a, b := net.Pipe()
		local := attach.NewStreamPort(a, opts)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- runPlug(ctx, log, addr, opts, local, remote, once) }()

		frame := bytes.Repeat([]byte{0xab}, 60)
		send := func() {
			hdr := binary.BigEndian.AppendUint32(nil, uint32(len(frame)))
			if _, err := b.Write(append(hdr, frame...)); err != nil {
				t.Fatalf("write to plug's local side: %v", err)
			}
		}
		p := sw.port(t)
		send()
		if got := readPlugFrame(t, p); !bytes.Equal(got, frame) {
			t.Fatalf("switch got %x", got)
		}
		sw.l.Close() // the switch goes away

		if once {
			select {
			case err := <-done:
				if err == nil {
					t.Fatal("runPlug with once returned nil when the switch went away")
				}
			case <-time.After(30 * time.Second):
				t.Fatal("runPlug with once still running 30 s after the switch went away")
			}
			cancel()
			b.Close()
			continue
		}
		sw = listenPlugSwitch(t, path)
		p = sw.port(t)
		// Frames sent while disconnected are dropped; once re-plugged,
		// they flow both ways.
		stop := make(chan struct{})
		sent := make(chan struct{})
		go func() {
			defer close(sent)
			hdr := binary.BigEndian.AppendUint32(nil, uint32(len(frame)))
			for range 600 {
				if _, err := b.Write(append(hdr, frame...)); err != nil {
					return
				}
				select {
				case <-stop:
					return
				case <-time.After(50 * time.Millisecond):
				}
			}
		}()
		if got := readPlugFrame(t, p); !bytes.Equal(got, frame) {
			t.Fatalf("after re-dial the switch got %x", got)
		}
		out := append(make([]byte, vswitch.Headroom), frame...)
		if _, err := p.Write([][]byte{out}, vswitch.Headroom); err != nil {
			t.Fatal(err)
		}
		close(stop)
		hdr := make([]byte, 4)
		b.SetReadDeadline(time.Now().Add(30 * time.Second))
		if _, err := io.ReadFull(b, hdr); err != nil {
			t.Fatalf("local side after re-dial: %v", err)
		}
		cancel()
		b.Close()
		<-sent
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("runPlug after cancel: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("runPlug did not return after cancel")
		}
		sw.l.Close()
	}
	for _, want := range []string{"switch went away, re-dialing", "plugged again"} {
		if !bytes.Contains([]byte(logs.String()), []byte(want)) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
}
