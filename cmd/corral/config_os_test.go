package main

import (
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/corralnet/corral/attach"
)

// TestConfigPerOS: what the OS lacks (vsock and the raw uplink outside
// Linux, unixpacket on macOS) and socket paths longer than its
// sockaddr_un holds fail at validation, naming the key, the scheme and
// the OS. On Linux the first three are accepted.
func TestConfigPerOS(t *testing.T) {
	linux, darwin := runtime.GOOS == "linux", runtime.GOOS == "darwin"
	long := "/tmp/" + strings.Repeat("x", attach.MaxSocketPath-len("/tmp/"))
	cases := []struct {
		name, yaml string
		ok         bool
		want       string
	}{
		{"vsock listen", "fences: [{name: a, id: 1, listen: [\"vsock://:1024\"]}]\n", linux,
			`fences[0].listen[0]: "vsock://:1024": vsock:// needs AF_VSOCK, which corral has on Linux only, and this is ` + runtime.GOOS},
		{"vsock dial", "fences: [{name: a, id: 1, dial: [\"vsock://3:1024\"]}]\n", linux,
			`fences[0].dial[0]: "vsock://3:1024": vsock:// needs AF_VSOCK`},
		{"raw uplink", "fences: [{name: a, id: 1}]\nuplink: {raw: {interface: eth0}}\n", linux,
			`uplink.raw.interface: "eth0": the raw uplink (AF_PACKET) needs Linux, and this is ` + runtime.GOOS},
		{"unixpacket", "fences: [{name: a, id: 1, listen: [\"unixpacket:///tmp/p.sock\"]}]\n", !darwin,
			`unixpacket:// needs AF_UNIX SOCK_SEQPACKET, which darwin does not have`},
		{"longest path", fmt.Sprintf("fences: [{name: a, id: 1, listen: [\"unixgram://%s\"]}]\n", long), true, ""},
		{"path too long", fmt.Sprintf("fences: [{name: a, id: 1, listen: [\"unixgram://%sy\"]}]\n", long), false,
			fmt.Sprintf("socket path is %d bytes, longer than the %d a unix socket address holds on %s", attach.MaxSocketPath+1, attach.MaxSocketPath, runtime.GOOS)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parse(t, tc.yaml)
			switch {
			case tc.ok && err != nil:
				t.Fatalf("refused on %s: %v", runtime.GOOS, err)
			case !tc.ok && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}
