// Command loadgen is the far end of the bare-socket benchmark in
// e2e/bench_linux_test.go: it connects to a unix stream socket and either
// sends length-prefixed Ethernet frames, many per write, or echoes back
// every byte it reads. It stops by itself after -duration.
package main

import (
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

func main() {
	mode := flag.String("mode", "send", "send: write frames as fast as the socket takes them; echo: return every byte read")
	path := flag.String("connect", "", "unix stream socket to connect to")
	hdr := flag.Int("hdr", 4, "bytes of the big-endian length before each frame: 2 or 4")
	size := flag.Int("size", 64, "frame length in bytes (send)")
	batch := flag.Int("batch", 64<<10, "bytes packed into one write (send)")
	dst := flag.String("dst", "52:54:00:be:00:02", "destination MAC (send)")
	src := flag.String("src", "52:54:00:be:00:01", "source MAC (send)")
	duration := flag.Duration("duration", 10*time.Second, "stop after this long")
	flag.Parse()
	if err := run(*mode, *path, *hdr, *size, *batch, *dst, *src, *duration); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func run(mode, path string, hdr, size, batch int, dst, src string, d time.Duration) error {
	if hdr != 2 && hdr != 4 {
		return fmt.Errorf("-hdr %d: want 2 or 4", hdr)
	}
	if size < 18 || (hdr == 2 && size > 0xffff) || size > 65536 {
		return fmt.Errorf("-size %d: out of range", size)
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(d)); err != nil {
		return err
	}
	switch mode {
	case "echo":
		_, err = io.Copy(c, c)
	case "send":
		var buf []byte
		buf, err = frames(hdr, size, batch, dst, src)
		if err != nil {
			return err
		}
		for err == nil {
			_, err = c.Write(buf)
		}
	default:
		return fmt.Errorf("-mode %q: want send or echo", mode)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, net.ErrClosed) || isPeerGone(err) {
		return nil
	}
	return err
}

// frames packs as many size-byte frames as fit in batch bytes (at least one).
func frames(hdr, size, batch int, dst, src string) ([]byte, error) {
	d, err := net.ParseMAC(dst)
	if err != nil || len(d) != 6 {
		return nil, fmt.Errorf("-dst %q: not a MAC", dst)
	}
	s, err := net.ParseMAC(src)
	if err != nil || len(s) != 6 {
		return nil, fmt.Errorf("-src %q: not a MAC", src)
	}
	rec := hdr + size
	n := max(1, batch/rec)
	buf := make([]byte, n*rec)
	for i := range n {
		f := buf[i*rec:]
		if hdr == 2 {
			binary.BigEndian.PutUint16(f, uint16(size))
		} else {
			binary.BigEndian.PutUint32(f, uint32(size))
		}
		f = f[hdr:rec]
		copy(f[0:6], d)
		copy(f[6:12], s)
		binary.BigEndian.PutUint16(f[12:14], 0x88b6)
		binary.BigEndian.PutUint32(f[14:18], 1)
	}
	return buf, nil
}

// isPeerGone reports the errors of writing to a socket the benchmark has
// closed at the end of its window.
func isPeerGone(err error) bool {
	var op *net.OpError
	if !errors.As(err, &op) {
		return false
	}
	var se *os.SyscallError
	if errors.As(op.Err, &se) {
		s := se.Err.Error()
		return s == "broken pipe" || s == "connection reset by peer"
	}
	return false
}
