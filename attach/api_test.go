package attach

import (
	"errors"
	"strconv"
	"strings"
	"testing"
)

func TestParseAddr(t *testing.T) {
	long := "unix:///" + strings.Repeat("a", 120)
	tests := []struct {
		name, in string
		want     Addr
		errHas   string // empty: no error
	}{
		{"unix", "unix:///run/corral/a.sock", Addr{Unix, "/run/corral/a.sock"}, ""},
		{"unix cleaned", "unix:///run//corral/./a.sock", Addr{Unix, "/run/corral/a.sock"}, ""},
		{"unixgram", "unixgram:///tmp/g", Addr{Unixgram, "/tmp/g"}, ""},
		{"unixpacket", "unixpacket:///tmp/p", Addr{Unixpacket, "/tmp/p"}, ""},
		{"scheme case", "UNIX:///tmp/x", Addr{Unix, "/tmp/x"}, ""},
		{"tcp", "tcp://127.0.0.1:5555", Addr{TCP, "127.0.0.1:5555"}, ""},
		{"tcp any host", "tcp://:0", Addr{TCP, ":0"}, ""},
		{"tcp v6", "tcp://[::1]:80", Addr{TCP, "[::1]:80"}, ""},
		{"tcp name", "tcp://localhost:80", Addr{TCP, "localhost:80"}, ""},
		{"udp", "udp://192.0.2.1:9", Addr{UDP, "192.0.2.1:9"}, ""},
		{"vsock any", "vsock://:1024", Addr{Vsock, ":1024"}, ""},
		{"vsock cid", "vsock://3:1024", Addr{Vsock, "3:1024"}, ""},
		{"stdio", "stdio", Addr{Stdio, ""}, ""},
		{"stdio url", "stdio://", Addr{Stdio, ""}, ""},

		{"empty", "", Addr{}, "empty address"},
		{"no scheme", "/tmp/x.sock", Addr{}, "missing scheme"},
		{"empty scheme", ":///tmp/x", Addr{}, "missing scheme"},
		{"bad scheme", "http://x:1", Addr{}, `unknown scheme "http"`},
		{"unix no path", "unix://", Addr{}, "missing socket path"},
		{"unix relative", "unix://run/x.sock", Addr{}, "not absolute"},
		{"unix dir", "unix:///tmp/", Addr{}, "names a directory"},
		{"unix root", "unix:///", Addr{}, "names a directory"},
		{"unix too long", long, Addr{}, "longer than the " + strconv.Itoa(MaxSocketPath)},
		{"unixgram relative", "unixgram://x", Addr{}, "not absolute"},
		{"tcp no port", "tcp://127.0.0.1", Addr{}, "not host:port"},
		{"tcp empty port", "tcp://127.0.0.1:", Addr{}, "missing port"},
		{"tcp nothing", "tcp://", Addr{}, "missing host:port"},
		{"tcp port word", "tcp://h:http", Addr{}, "not a decimal number"},
		{"tcp port big", "tcp://h:65536", Addr{}, "larger than 65535"},
		{"tcp v6 no brackets", "tcp://::1:80", Addr{}, "not host:port"},
		{"udp no port", "udp://h", Addr{}, "not host:port"},
		{"vsock nothing", "vsock://", Addr{}, "missing port"},
		{"vsock no colon", "vsock://1024", Addr{}, "missing port"},
		{"vsock bad port", "vsock://:x", Addr{}, "not a decimal number"},
		{"vsock bad cid", "vsock://host:1", Addr{}, "context ID"},
		{"stdio target", "stdio://x", Addr{}, "no target"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseAddr(tt.in)
			if tt.errHas == "" {
				if err != nil {
					t.Fatalf("ParseAddr(%q): %v", tt.in, err)
				}
				if got != tt.want {
					t.Fatalf("ParseAddr(%q) = %+v, want %+v", tt.in, got, tt.want)
				}
				// String round-trips.
				again, err := ParseAddr(got.String())
				if err != nil || again != got {
					t.Fatalf("ParseAddr(%q.String()=%q) = %+v, %v", tt.in, got.String(), again, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("ParseAddr(%q) = %+v, want error containing %q", tt.in, got, tt.errHas)
			}
			if !errors.Is(err, ErrBadAddr) {
				t.Errorf("error %v does not wrap ErrBadAddr", err)
			}
			if !strings.Contains(err.Error(), tt.errHas) {
				t.Errorf("error %q, want it to contain %q", err, tt.errHas)
			}
		})
	}
}

func FuzzParseAddr(f *testing.F) {
	for _, s := range []string{"unix:///a", "tcp://:1", "vsock://3:4", "stdio", "udp://[::1]:9", "x://y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseAddr(s)
		if err != nil {
			return
		}
		b, err := ParseAddr(a.String())
		if err != nil || a != b {
			t.Fatalf("%q -> %+v -> %q -> %+v, %v", s, a, a.String(), b, err)
		}
	})
}
