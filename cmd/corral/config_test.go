package main

import (
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/corralnet/corral/attach"
)

// parse runs parseArgs on a fresh flag set with the YAML (if any) written
// to a temporary file and passed with --config.
func parse(t *testing.T, yaml string, argv ...string) (*Config, error) {
	t.Helper()
	fs := pflag.NewFlagSet("corral", pflag.ContinueOnError)
	addConfigFlags(fs)
	if yaml != "" {
		p := filepath.Join(t.TempDir(), "corral.yaml")
		if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		argv = append([]string{"--config", p}, argv...)
	}
	return parseArgs(fs, argv)
}

func TestDefaultConfig(t *testing.T) {
	t.Setenv("XDG_RUNTIME_DIR", "/run/test-xdg")
	cfg, err := parse(t, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Fences) != 1 {
		t.Fatalf("got %d fences, want 1", len(cfg.Fences))
	}
	f := cfg.Fences[0]
	if f.Name != "default" || f.ID != 1 {
		t.Errorf("fence: got %q id %d, want default id 1", f.Name, f.ID)
	}
	want := attach.Addr{Scheme: attach.Unix, Target: "/run/test-xdg/corral/default.sock"}
	if len(f.Listen) != 1 || f.Listen[0] != want {
		t.Errorf("listen: got %v, want [%v]", f.Listen, want)
	}
	if f.Gateway == nil {
		t.Errorf("gateway: got disabled, want enabled")
	} else if f.Gateway.Subnet != netip.MustParsePrefix("10.0.2.0/24") {
		t.Errorf("gateway subnet: got %v, want 10.0.2.0/24", f.Gateway.Subnet)
	}
	if wantAdmin := (attach.Addr{Scheme: attach.Unix, Target: "/run/test-xdg/corral/admin.sock"}); cfg.Admin != wantAdmin {
		t.Errorf("admin: got %v, want %v", cfg.Admin, wantAdmin)
	}
	if cfg.Log.Level != slog.LevelInfo || cfg.Log.Format != "text" {
		t.Errorf("log: got %+v, want info text", cfg.Log)
	}
	if cfg.HasUplink {
		t.Errorf("default has an uplink")
	}
	if cfg.Uplink.HostID == 0 || cfg.Uplink.HostID == 0xFFFF {
		t.Errorf("derived host ID %#x is reserved", cfg.Uplink.HostID)
	}
}

// TestRuntimeDirFallback: without $XDG_RUNTIME_DIR, corral's sockets are
// where the README's ${XDG_RUNTIME_DIR:-/tmp/corral-$(id -u)} points,
// whatever $TMPDIR and /run/user hold.
func TestRuntimeDirFallback(t *testing.T) {
	t.Setenv("XDG_RUNTIME_DIR", "")
	t.Setenv("TMPDIR", t.TempDir())
	out, err := exec.Command("sh", "-c", `printf %s "${XDG_RUNTIME_DIR:-/tmp/corral-$(id -u)}"`).Output()
	if err != nil {
		t.Fatalf("sh: %v", err)
	}
	want := string(out)
	if want != "/tmp/corral-"+strconv.Itoa(os.Getuid()) {
		t.Fatalf("the shell expanded the README's form to %q", want)
	}
	if got := runtimeDir(); got != want {
		t.Errorf("runtimeDir: got %q, want %q", got, want)
	}
	if got := tempRuntimeDir(); got != want {
		t.Errorf("tempRuntimeDir: got %q, want %q (it must be made private)", got, want)
	}
	cfg, err := parse(t, "")
	if err != nil {
		t.Fatal(err)
	}
	if got, w := cfg.Fences[0].Listen[0].Target, filepath.Join(want, "corral", "default.sock"); got != w {
		t.Errorf("listen: got %q, want %q", got, w)
	}
	if got, w := cfg.Admin.Target, filepath.Join(want, "corral", "admin.sock"); got != w {
		t.Errorf("admin: got %q, want %q", got, w)
	}
	t.Setenv("XDG_RUNTIME_DIR", "/run/xdg-test")
	if got := runtimeDir(); got != "/run/xdg-test" || tempRuntimeDir() != "" {
		t.Errorf("with XDG_RUNTIME_DIR set: runtimeDir %q, tempRuntimeDir %q", got, tempRuntimeDir())
	}
}

const twoFences = `
host: {name: lab1, installation: 3, id: 0x02c2, oui: "02:fe:0c", ethertype: 0x88b6}
uplink:
  mtu: 1400
  hello_interval: 300ms
  udp: {listen: "127.0.0.1:7407", peers: ["192.0.2.10:7407", "192.0.2.11"], group: "239.7.4.7:7407"}
fences:
  - name: a
    id: 10
    listen: ["unix:///tmp/corral-test/a.sock", "tcp://127.0.0.1:7001", "unixgram:///tmp/corral-test/a.dgram",
             "unixpacket:///tmp/corral-test/a.pkt", "udp://127.0.0.1:7001", "vsock://:7001"]
    dial: ["unix:///tmp/corral-test/qemu.sock"]
  - name: b
    id: 0xFFFFFE
    listen: ["unix:///tmp/corral-test/b.sock", "tcp://127.0.0.1:0", "tcp://127.0.0.1:0"]
    gateway:
      enabled: true
      subnet: 10.0.2.0/24
      forwards: [{proto: tcp, listen: "127.0.0.1:2222", target: "10.0.2.15:22"}]
admin: {listen: "unix:///tmp/corral-test/admin.sock"}
log: {level: debug, format: json}
`

func TestGoodConfig(t *testing.T) {
	cfg, err := parse(t, twoFences)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Fences) != 2 || cfg.Fences[0].ID != 10 || cfg.Fences[1].ID != 0xFFFFFE {
		t.Fatalf("fences: got %+v", cfg.Fences)
	}
	a := cfg.Fences[0]
	if len(a.Listen) != 6 || a.Listen[5] != (attach.Addr{Scheme: attach.Vsock, Target: ":7001"}) {
		t.Errorf("fence a listen: got %v", a.Listen)
	}
	if len(a.Dial) != 1 || a.Dial[0].Target != "/tmp/corral-test/qemu.sock" {
		t.Errorf("fence a dial: got %v", a.Dial)
	}
	if a.Gateway != nil {
		t.Errorf("fence a: gateway enabled, want disabled (a file's fences replace the default's)")
	}
	b := cfg.Fences[1]
	if b.Gateway == nil || len(b.Forwards) != 1 || b.Forwards[0].Target != netip.MustParseAddrPort("10.0.2.15:22") || b.Forwards[0].Fence != b.ID {
		t.Errorf("fence b gateway: got %+v, forwards %+v", b.Gateway, b.Forwards)
	}
	if b.Gateway != nil && (b.Gateway.Fence != 0xFFFFFE || b.Gateway.FenceName != "b") {
		t.Errorf("fence b gateway: got fence %#x %q", b.Gateway.Fence, b.Gateway.FenceName)
	}
	u := cfg.Uplink
	if !cfg.HasUplink || u.HostID != 0x2c2 || u.Installation != 3 || u.EtherType != 0x88b6 || u.MTU != 1400 ||
		u.HostName != "lab1" || u.OUI[0] != 0x02 || u.OUI[1] != 0xfe || u.OUI[2] != 0x0c {
		t.Errorf("uplink: got %+v", u)
	}
	if u.HelloInterval.Milliseconds() != 300 {
		t.Errorf("hello interval: got %v, want 300ms", u.HelloInterval)
	}
	wantPeers := []netip.AddrPort{netip.MustParseAddrPort("192.0.2.10:7407"), netip.MustParseAddrPort("192.0.2.11:7407")}
	if len(u.Peers) != 2 || u.Peers[0] != wantPeers[0] || u.Peers[1] != wantPeers[1] {
		t.Errorf("peers: got %v, want %v", u.Peers, wantPeers)
	}
	if u.UDPListen != netip.MustParseAddrPort("127.0.0.1:7407") || u.Group != netip.MustParseAddrPort("239.7.4.7:7407") {
		t.Errorf("udp: got listen %v group %v", u.UDPListen, u.Group)
	}
	if cfg.Log.Level != slog.LevelDebug || cfg.Log.Format != "json" {
		t.Errorf("log: got %+v, want debug json", cfg.Log)
	}
	if cfg.Admin.Target != "/tmp/corral-test/admin.sock" {
		t.Errorf("admin: got %v", cfg.Admin)
	}
}

// TestLayers checks the precedence: embedded default < file < CORRAL_*
// environment < flags.
func TestLayers(t *testing.T) {
	for _, tc := range []struct {
		name       string
		yaml       string
		env        map[string]string
		argv       []string
		wantLevel  slog.Level
		wantFormat string
	}{
		{"default", "", nil, nil, slog.LevelInfo, "text"},
		{"file", "log: {level: warn}", nil, nil, slog.LevelWarn, "text"},
		{"env over file", "log: {level: warn}", map[string]string{"CORRAL_LOG_LEVEL": "debug", "CORRAL_LOG_FORMAT": "json"}, nil, slog.LevelDebug, "json"},
		{"flag over env", "log: {level: warn}", map[string]string{"CORRAL_LOG_LEVEL": "debug"}, []string{"--log-level", "error"}, slog.LevelError, "text"},
		{"flag format", "", nil, []string{"--log-format=json"}, slog.LevelInfo, "json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			cfg, err := parse(t, tc.yaml, tc.argv...)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Log.Level != tc.wantLevel || cfg.Log.Format != tc.wantFormat {
				t.Errorf("got %v %s, want %v %s", cfg.Log.Level, cfg.Log.Format, tc.wantLevel, tc.wantFormat)
			}
		})
	}
}

func TestEnvHostKeys(t *testing.T) {
	t.Setenv("CORRAL_HOST_ID", "0x1234")
	t.Setenv("CORRAL_UPLINK_MTU", "9000")
	cfg, err := parse(t, "")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Uplink.HostID != 0x1234 || cfg.Uplink.MTU != 9000 {
		t.Errorf("got host id %#x mtu %d, want 0x1234 9000", cfg.Uplink.HostID, cfg.Uplink.MTU)
	}
}

func TestBadConfig(t *testing.T) {
	const fence = "fences: [{name: a, id: 1, listen: [\"unix:///tmp/x.sock\"]}]\n"
	for _, tc := range []struct {
		name string
		yaml string
		env  map[string]string
		argv []string
		want string // substring of the error
	}{
		{"unknown top key", fence + "bogus: 1\n", nil, nil, "config: bogus: unknown key"},
		{"unknown fence key", "fences: [{name: a, id: 1, colour: red}]\n", nil, nil, "config: fences[0].colour: unknown key"},
		{"unknown nested key", fence + "uplink: {udp: {lisen: x}}\n", nil, nil, "config: uplink.udp.lisen: unknown key"},
		{"fence id too big", "fences: [{name: a, id: 1}, {name: b, id: 0x1000000}]\n", nil, nil,
			"config: fences[1].id: 0x1000000 out of range 1..0xFFFFFE"},
		{"fence id 0", "fences: [{name: a, id: 0}]\n", nil, nil, "config: fences[0].id: 0x0 out of range"},
		{"fence id reserved", "fences: [{name: a, id: 0xFFFFFF}]\n", nil, nil, "config: fences[0].id: 0xffffff out of range"},
		{"fence id missing", "fences: [{name: a}]\n", nil, nil, "config: fences[0].id: missing"},
		{"fence id not a number", "fences: [{name: a, id: abc}]\n", nil, nil, "config: fences[0].id:"},
		{"no fences", "fences: []\n", nil, nil, "config: fences: no fence configured"},
		{"bum_rate negative", "fences: [{name: a, id: 1, bum_rate: -1}]\n", nil, nil, "config: fences[0].bum_rate: -1: want 0 (off)"},
		{"bum_rate too big", "fences: [{name: a, id: 1, bum_rate: 2000000000}]\n", nil, nil, "config: fences[0].bum_rate: 2000000000: want 0 (off)"},
		{"max_queued_bytes small", fence + "limits: {max_queued_bytes: 1000}\n", nil, nil, "config: limits.max_queued_bytes: 1000: want 1048576 (1 MiB)"},
		{"duplicate id", "fences: [{name: a, id: 5}, {name: b, id: 5}]\n", nil, nil, "config: fences[1].id: 5 already used by fences[0]"},
		{"duplicate name", "fences: [{name: a, id: 5}, {name: a, id: 6}]\n", nil, nil, `config: fences[1].name: "a" already used by fences[0]`},
		{"name missing", "fences: [{id: 5}]\n", nil, nil, "config: fences[0].name: missing"},
		{"listen twice", `fences:
  - {name: a, id: 1, listen: ["unix:///x"]}
  - {name: b, id: 2, listen: ["tcp://127.0.0.1:1"]}
  - {name: c, id: 3, listen: ["unix:///x"]}
`, nil, nil, `config: fences[2].listen[0]: "unix:///x" already used by fences[0]`},
		{"same path other scheme", `fences: [{name: a, id: 1, listen: ["unix:///x", "unixgram:///x"]}]`, nil, nil,
			`config: fences[0].listen[1]: "unixgram:///x" already used by fences[0].listen[0]`},
		{"tcp twice", `fences: [{name: a, id: 1, listen: ["tcp://127.0.0.1:7000"]}, {name: b, id: 2, listen: ["tcp://127.0.0.1:7000"]}]`, nil, nil,
			`config: fences[1].listen[0]: "tcp://127.0.0.1:7000" already used by fences[0].listen[0]`},
		{"admin on a fence socket", fence + "admin: {listen: \"unix:///tmp/x.sock\"}\n", nil, nil, "config: admin.listen:"},
		{"admin not unix", fence + "admin: {listen: \"tcp://127.0.0.1:1\"}\n", nil, nil, "config: admin.listen:"},
		{"bad scheme", "fences: [{name: a, id: 1, listen: [\"foo:///x\"]}]\n", nil, nil, `config: fences[0].listen[0]: "foo:///x"`},
		{"no scheme", "fences: [{name: a, id: 1, dial: [\"/x\"]}]\n", nil, nil, `config: fences[0].dial[0]: "/x"`},
		{"stdio twice", "fences: [{name: a, id: 1, listen: [stdio]}, {name: b, id: 2, dial: [stdio]}]\n", nil, nil,
			`config: fences[1].dial[0]: "stdio" already used by fences[0].listen[0]`},
		{"unset variable", "fences: [{name: a, id: 1, listen: [\"unix://$CORRAL_TEST_UNSET/x\"]}]\n", nil, nil,
			"config: fences[0].listen[0]: \"unix://$CORRAL_TEST_UNSET/x\": environment variable $CORRAL_TEST_UNSET is not set"},
		{"oui multicast", fence + "host: {oui: \"03:fe:0c\"}\n", nil, nil, "config: host.oui: \"03:fe:0c\": not a locally administered unicast"},
		{"oui global", fence + "host: {oui: \"00:1b:21\"}\n", nil, nil, "config: host.oui: \"00:1b:21\": not a locally administered unicast"},
		{"oui garbage", fence + "host: {oui: \"zz\"}\n", nil, nil, "config: host.oui:"},
		{"host id 0", fence + "host: {id: 0}\n", nil, nil, "config: host.id: 0x0 out of range"},
		{"host id ffff", fence + "host: {id: 0xFFFF}\n", nil, nil, "config: host.id: 0xffff out of range"},
		{"host id env", fence, map[string]string{"CORRAL_HOST_ID": "0"}, nil, "config: host.id:"},
		{"installation", fence + "host: {installation: 256}\n", nil, nil, "config: host.installation: 256 out of range"},
		{"ethertype", fence + "host: {ethertype: 0x0800}\n", nil, nil, ""},
		{"ethertype small", fence + "host: {ethertype: 0x05ff}\n", nil, nil, "config: host.ethertype:"},
		{"peer does not parse", fence + "uplink: {udp: {listen: \"0.0.0.0:7407\", peers: [\"not-an-address:x\"]}}\n", nil, nil,
			"config: uplink.udp.peers[0]: \"not-an-address:x\""},
		{"peer without listen", fence + "uplink: {udp: {peers: [\"192.0.2.1:7407\"]}}\n", nil, nil, "config: uplink.udp.peers[0]:"},
		{"group not multicast", fence + "uplink: {udp: {listen: \"0.0.0.0:7407\", group: \"192.0.2.1:7407\"}}\n", nil, nil, "config: uplink.udp.group:"},
		{"mtu small", fence + "uplink: {mtu: 575}\n", nil, nil, "config: uplink.mtu: 575 out of range 576..65535"},
		{"udp listen bad", fence + "uplink: {udp: {listen: \"nowhere\"}}\n", nil, nil, "config: uplink.udp.listen:"},
		{"hello bad", fence + "uplink: {hello_interval: soon}\n", nil, nil, "config: uplink.hello_interval:"},
		{"log level", fence + "log: {level: loud}\n", nil, nil, "config: log.level: \"loud\""},
		{"log format", fence + "log: {format: xml}\n", nil, nil, "config: log.format: \"xml\""},
		{"log level env", fence, map[string]string{"CORRAL_LOG_LEVEL": "loud"}, nil, "config: log.level:"},
		{"log level flag", fence, nil, []string{"--log-level=loud"}, "config: log.level:"},
		{"unknown flag", fence, nil, []string{"--bogus"}, "unknown flag: --bogus"},
		{"gateway subnet", "fences: [{name: a, id: 1, gateway: {enabled: true, subnet: 10.0.2.0/33}}]\n", nil, nil, "config: fences[0].gateway.subnet:"},
		{"gateway ipv6 subnet", "fences: [{name: a, id: 1, gateway: {enabled: true, subnet: \"fd00::/64\"}}]\n", nil, nil, "config: fences[0].gateway:"},
		{"forward proto", "fences: [{name: a, id: 1, gateway: {enabled: true, forwards: [{proto: sctp, listen: \"127.0.0.1:1\", target: \"10.0.2.15:1\"}]}}]\n", nil, nil,
			"config: fences[0].gateway.forwards[0].proto: \"sctp\""},
		{"forward target", "fences: [{name: a, id: 1, gateway: {enabled: true, forwards: [{listen: \"127.0.0.1:1\", target: \"x\"}]}}]\n", nil, nil,
			"config: fences[0].gateway.forwards[0].target:"},
		{"forward twice", `fences:
  - {name: a, id: 1, gateway: {enabled: true, forwards: [{listen: "127.0.0.1:2222", target: "10.0.2.15:22"}]}}
  - {name: b, id: 2, gateway: {enabled: true, forwards: [{listen: "127.0.0.1:2222", target: "10.0.2.15:22"}]}}
`, nil, nil, "config: fences[1].gateway.forwards[0].listen: tcp 127.0.0.1:2222 already used by fences[0].gateway.forwards[0]"},
		{"lease time", "fences: [{name: a, id: 1, gateway: {enabled: true, lease_time: forever}}]\n", nil, nil, "config: fences[0].gateway.lease_time:"},
		{"ipv6 not bool", "fences: [{name: a, id: 1, gateway: {enabled: true, ipv6: maybe}}]\n", nil, nil, "config: fences[0].gateway.ipv6:"},
		{"ipv6 prefix garbage", "fences: [{name: a, id: 1, gateway: {enabled: true, ipv6_prefix: nope}}]\n", nil, nil,
			`config: fences[0].gateway.ipv6_prefix: "nope"`},
		{"ipv6 prefix /48", "fences: [{name: a, id: 1, gateway: {enabled: true, ipv6_prefix: \"fd00:1::/48\"}}]\n", nil, nil,
			`config: fences[0].gateway.ipv6_prefix: "fd00:1::/48": want an IPv6 /64`},
		{"ipv6 prefix v4", "fences: [{name: a, id: 1, gateway: {enabled: true, ipv6_prefix: 10.0.0.0/8}}]\n", nil, nil,
			"config: fences[0].gateway.ipv6_prefix:"},
		{"ipv6 prefix with ipv6 off", "fences: [{name: a, id: 1, gateway: {enabled: true, ipv6: false, ipv6_prefix: \"fd00:1::/64\"}}]\n", nil, nil,
			"config: fences[0].gateway.ipv6_prefix: \"fd00:1::/64\": set while fences[0].gateway.ipv6 is false"},
		{"allow garbage", "fences: [{name: a, id: 1}, {name: b, id: 2, gateway: {enabled: true, allow: [10.0.0.0/8, lan]}}]\n", nil, nil,
			`config: fences[1].gateway.allow[1]: "lan": want a prefix`},
		{"allow host bits", "fences: [{name: a, id: 1, gateway: {enabled: true, allow: [192.0.2.1/24]}}]\n", nil, nil,
			`config: fences[0].gateway.allow[0]: "192.0.2.1/24": host bits set (did you mean 192.0.2.0/24?)`},
		{"deny bad length", "fences: [{name: a, id: 1, gateway: {enabled: true, deny: [\"2001:db8::/129\"]}}]\n", nil, nil,
			`config: fences[0].gateway.deny[0]: "2001:db8::/129"`},
		{"ipv6 forward target with ipv6 off", "fences: [{name: a, id: 1, gateway: {enabled: true, ipv6: false, forwards: [{listen: \"127.0.0.1:2222\", target: \"[fd63:6f72:7261::15]:22\"}]}}]\n", nil, nil,
			`config: fences[0].gateway.forwards[0].target: "[fd63:6f72:7261::15]:22": IPv6 target while fences[0].gateway.ipv6 is false`},
		{"deny not a list", "fences: [{name: a, id: 1, gateway: {enabled: true, deny: {a: 1}}}]\n", nil, nil, "config: fences[0].gateway.deny"},
		{"forward target outside the subnet", "fences: [{name: a, id: 1, gateway: {enabled: true, subnet: 10.0.3.0/24, forwards: [{listen: \"127.0.0.1:2222\", target: \"10.0.2.15:22\"}]}}]\n", nil, nil,
			`config: fences[0].gateway.forwards[0].target: "10.0.2.15:22": outside the fence's subnets [10.0.3.0/24 fd63:6f72:7261::/64]`},
		{"forwards without a gateway", "fences: [{name: a, id: 1, gateway: {forwards: [{listen: \"127.0.0.1:2222\", target: \"10.0.2.15:22\"}]}}]\n", nil, nil,
			"config: fences[0].gateway.forwards: set while fences[0].gateway.enabled is false"},
		{"forward sni and host", "fences: [{name: a, id: 1, gateway: {enabled: true, forwards: [{listen: \"127.0.0.1:8443\", target: \"10.0.2.15:443\", sni: a.test, host: a.test}]}}]\n", nil, nil,
			`config: fences[0].gateway.forwards[0]: sni "a.test" and host "a.test": give one of them`},
		{"forward udp sni", "fences: [{name: a, id: 1, gateway: {enabled: true, forwards: [{proto: udp, listen: \"127.0.0.1:8443\", target: \"10.0.2.15:443\", sni: a.test}]}}]\n", nil, nil,
			"config: fences[0].gateway.forwards[0]: sni and host need proto tcp"},
		{"forward wildcard sni", "fences: [{name: a, id: 1, gateway: {enabled: true, forwards: [{listen: \"127.0.0.1:8443\", target: \"10.0.2.15:443\", sni: \"*.a.test\"}]}}]\n", nil, nil,
			`config: fences[0].gateway.forwards[0]: sni "*.a.test"`},
		{"forward same sni in two fences", `fences:
  - {name: a, id: 1, gateway: {enabled: true, forwards: [{listen: "127.0.0.1:8443", target: "10.0.2.15:443", sni: lab.test}]}}
  - {name: b, id: 2, gateway: {enabled: true, forwards: [{listen: "127.0.0.1:8443", target: "10.0.2.15:443", sni: LAB.test.}]}}
`, nil, nil, "config: fences[1].gateway.forwards[0].listen: tcp 127.0.0.1:8443 sni lab.test already used by fences[0].gateway.forwards[0]"},
		{"forward same host twice in a fence", `fences:
  - {name: a, id: 1, gateway: {enabled: true, forwards: [{listen: "127.0.0.1:80", target: "10.0.2.15:80", host: lab.test}, {listen: "127.0.0.1:80", target: "10.0.2.16:80", host: lab.test}]}}
`, nil, nil, "config: fences[0].gateway.forwards[1].listen: tcp 127.0.0.1:80 host lab.test already used by fences[0].gateway.forwards[0]"},
		{"host_loopback not bool", "fences: [{name: a, id: 1, gateway: {enabled: true, host_loopback: sometimes}}]\n", nil, nil,
			"config: fences[0].gateway.host_loopback"},
		{"tcp per guest 0", "fences: [{name: a, id: 1, gateway: {enabled: true, max_tcp_conns_per_guest: 0}}]\n", nil, nil,
			"config: fences[0].gateway.max_tcp_conns_per_guest: 0: want 1..1024 (fences[0].gateway.max_tcp_conns)"},
		{"tcp per guest above fence", "fences: [{name: a, id: 1, gateway: {enabled: true, max_tcp_conns: 10, max_tcp_conns_per_guest: 11}}]\n", nil, nil,
			"config: fences[0].gateway.max_tcp_conns_per_guest: 11: want 1..10"},
		{"udp per guest negative", "fences: [{name: a, id: 1, gateway: {enabled: true, max_udp_flows_per_guest: -1}}]\n", nil, nil,
			"config: fences[0].gateway.max_udp_flows_per_guest: -1: want 1..1024"},
		{"udp per guest not a number", "fences: [{name: a, id: 1, gateway: {enabled: true, max_udp_flows_per_guest: many}}]\n", nil, nil,
			"config: fences[0].gateway.max_udp_flows_per_guest"},
		{"tcp idle garbage", "fences: [{name: a, id: 1, gateway: {enabled: true, tcp_idle_timeout: long}}]\n", nil, nil,
			`config: fences[0].gateway.tcp_idle_timeout: "long": want a duration of at least 1s`},
		{"tcp idle zero", "fences: [{name: a, id: 1, gateway: {enabled: true, tcp_idle_timeout: 0s}}]\n", nil, nil,
			`config: fences[0].gateway.tcp_idle_timeout: "0s"`},
		{"yaml syntax", "fences: [\n", nil, nil, "config: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			_, err := parse(t, tc.yaml, tc.argv...)
			if tc.want == "" { // a near miss that must be accepted
				if err != nil {
					t.Fatalf("got %v, want no error", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("got no error, want %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %q, want it to contain %q", err, tc.want)
			}
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Errorf("got %T, want *ConfigError (exit status 2)", err)
			}
		})
	}
}

func TestMissingConfigFile(t *testing.T) {
	fs := pflag.NewFlagSet("corral", pflag.ContinueOnError)
	addConfigFlags(fs)
	_, err := parseArgs(fs, []string{"--config", filepath.Join(t.TempDir(), "nope.yaml")})
	if !isConfigError(err) || !strings.Contains(err.Error(), "nope.yaml") {
		t.Fatalf("got %v, want a ConfigError naming the file", err)
	}
}

// TestGoodConfigs: near misses of the bad cases, all accepted.
func TestGoodConfigs(t *testing.T) {
	const fence = "fences: [{name: a, id: 1, listen: [\"unix:///tmp/x.sock\"]}]\n"
	for _, tc := range []struct {
		name, yaml string
		check      func(t *testing.T, c *Config)
	}{
		{"one port, two fences, by sni and host", `fences:
  - {name: a, id: 1, gateway: {enabled: true, forwards: [{listen: "127.0.0.1:8443", target: "10.0.2.15:443", sni: Lab-A.test}, {listen: "127.0.0.1:8443", target: "10.0.2.15:443"}]}}
  - {name: b, id: 2, gateway: {enabled: true, forwards: [{listen: "127.0.0.1:8443", target: "10.0.2.15:443", sni: lab-b.test}, {listen: "127.0.0.1:8443", target: "10.0.2.15:80", host: lab-b.test}]}}
`, func(t *testing.T, c *Config) {
			a, b := c.Fences[0].Forwards, c.Fences[1].Forwards
			if len(a) != 2 || a[0].SNI != "lab-a.test" || a[0].Fence != 1 || a[1].SNI != "" || len(b) != 2 || b[1].Host != "lab-b.test" || b[1].Fence != 2 {
				t.Errorf("forwards: a %+v, b %+v", a, b)
			}
		}},
		{"storm control and queue bound", `fences:
  - {name: a, id: 1, bum_rate: 5000}
  - {name: b, id: 2, bum_rate: 0}
  - {name: c, id: 3}
limits: {max_queued_bytes: 67108864}
`, func(t *testing.T, c *Config) {
			if r := []int{c.Fences[0].BUMRate, c.Fences[1].BUMRate, c.Fences[2].BUMRate}; r[0] != 5000 || r[1] != -1 || r[2] != 0 {
				t.Errorf("bum_rate 5000, 0, unset: got %v, want 5000, -1 (off), 0 (default)", r)
			}
			if c.Switch.MaxQueuedBytes != 64<<20 {
				t.Errorf("max_queued_bytes: got %d", c.Switch.MaxQueuedBytes)
			}
		}},
		{"largest fence id", "fences: [{name: a, id: 0xFFFFFE}]\n", func(t *testing.T, c *Config) {
			if c.Fences[0].ID != 0xFFFFFE {
				t.Errorf("got %#x", c.Fences[0].ID)
			}
		}},
		{"host id 1", fence + "host: {id: 1}\n", func(t *testing.T, c *Config) {
			if c.Uplink.HostID != 1 {
				t.Errorf("got %#x", c.Uplink.HostID)
			}
		}},
		{"host id 0xFFFE", fence + "host: {id: 0xFFFE}\n", func(t *testing.T, c *Config) {
			if c.Uplink.HostID != 0xFFFE {
				t.Errorf("got %#x", c.Uplink.HostID)
			}
		}},
		{"mtu 576", fence + "uplink: {mtu: 576}\n", func(t *testing.T, c *Config) {
			if c.Uplink.MTU != 576 {
				t.Errorf("got %d", c.Uplink.MTU)
			}
		}},
		{"raw uplink", fence + "uplink: {raw: {interface: eth1}}\n", func(t *testing.T, c *Config) {
			if !c.HasUplink || c.Uplink.RawInterface != "eth1" {
				t.Errorf("got %v %q", c.HasUplink, c.Uplink.RawInterface)
			}
		}},
		{"udp listen :port", fence + "uplink: {udp: {listen: \":7407\"}}\n", func(t *testing.T, c *Config) {
			if c.Uplink.UDPListen != netip.MustParseAddrPort("0.0.0.0:7407") {
				t.Errorf("got %v", c.Uplink.UDPListen)
			}
		}},
		{"ipv6 peer", fence + "uplink: {udp: {listen: \"[::]:7407\", peers: [\"[2001:db8::1]:7407\", \"2001:db8::2\"]}}\n", func(t *testing.T, c *Config) {
			if len(c.Uplink.Peers) != 2 || c.Uplink.Peers[1] != netip.MustParseAddrPort("[2001:db8::2]:7407") {
				t.Errorf("got %v", c.Uplink.Peers)
			}
		}},
		{"any tcp port twice", "fences: [{name: a, id: 1, listen: [\"tcp://127.0.0.1:0\", \"tcp://127.0.0.1:0\"]}]\n", func(t *testing.T, c *Config) {
			if len(c.Fences[0].Listen) != 2 {
				t.Errorf("got %v", c.Fences[0].Listen)
			}
		}},
		{"tcp and udp on one port", "fences: [{name: a, id: 1, listen: [\"tcp://127.0.0.1:7000\", \"udp://127.0.0.1:7000\"]}]\n", nil},
		{"stdio once", "fences: [{name: a, id: 1, listen: [stdio]}]\n", nil},
		{"no admin", fence + "admin: {listen: \"\"}\n", func(t *testing.T, c *Config) {
			if c.Admin.Scheme != "" {
				t.Errorf("got %v", c.Admin)
			}
		}},
		{"variables", "fences: [{name: a, id: 1, listen: [\"unix://${CORRAL_TEST_DIR}/a.sock\"]}]\n", func(t *testing.T, c *Config) {
			if c.Fences[0].Listen[0].Target != "/srv/corral/a.sock" {
				t.Errorf("got %v", c.Fences[0].Listen[0])
			}
		}},
		{"gateway options", `fences: [{name: a, id: 1, gateway: {enabled: true, subnet: 192.168.7.0/24, mtu: 9000, domain: lab.test,
  lease_time: 2h, resolvers: ["127.0.0.1:5353", "192.0.2.53"], udp_idle_timeout: 30s, max_tcp_conns: 10, max_udp_flows: 20}}]`,
			func(t *testing.T, c *Config) {
				g := c.Fences[0].Gateway
				if g == nil || g.MTU != 9000 || g.Domain != "lab.test" || g.LeaseTime != 2*time.Hour || len(g.Resolvers) != 2 ||
					g.Resolvers[1] != netip.MustParseAddrPort("192.0.2.53:53") || g.MaxTCPConns != 10 || g.MaxUDPFlows != 20 ||
					g.UDPIdleTimeout != 30*time.Second || g.Subnet != netip.MustParsePrefix("192.168.7.0/24") {
					t.Errorf("got %+v", g)
				}
			}},
		{"gateway NAT fairness keys", `fences: [{name: a, id: 1, gateway: {enabled: true, host_loopback: false, max_tcp_conns: 100,
  max_tcp_conns_per_guest: 10, max_udp_flows_per_guest: 1024, tcp_idle_timeout: 10m}}]`, func(t *testing.T, c *Config) {
			g := c.Fences[0].Gateway
			if g == nil || !g.NoHostLoopback || g.MaxTCPConnsPerGuest != 10 || g.MaxUDPFlowsPerGuest != 1024 || g.TCPIdleTimeout != 10*time.Minute {
				t.Errorf("got %+v", g)
			}
		}},
		{"gateway NAT fairness defaults", "fences: [{name: a, id: 1, gateway: {enabled: true, host_loopback: true}}]\n", func(t *testing.T, c *Config) {
			g := c.Fences[0].Gateway
			if g == nil || g.NoHostLoopback || g.MaxTCPConnsPerGuest != 0 || g.MaxUDPFlowsPerGuest != 0 || g.TCPIdleTimeout != 0 {
				t.Errorf("got %+v, want the stack's defaults (zero values)", g)
			}
		}},
		{"gateway ipv6 default on", "fences: [{name: a, id: 1, gateway: {enabled: true}}]\n", func(t *testing.T, c *Config) {
			g := c.Fences[0].Gateway
			if g == nil || g.NoIPv6 || g.IPv6Prefix.IsValid() || g.Allow != nil || g.Deny != nil {
				t.Errorf("got %+v, want IPv6 on with the default prefix, no allow/deny", g)
			}
		}},
		{"gateway ipv6 off", "fences: [{name: a, id: 1, gateway: {enabled: true, ipv6: false}}]\n", func(t *testing.T, c *Config) {
			if g := c.Fences[0].Gateway; g == nil || !g.NoIPv6 {
				t.Errorf("got %+v, want NoIPv6", g)
			}
		}},
		{"gateway ipv6 prefix, allow, deny", `fences: [{name: a, id: 1, gateway: {enabled: true, ipv6: true, ipv6_prefix: "fd00:1:2:3::/64",
  allow: [127.0.0.1, 192.0.2.0/24, "2001:db8::/32"], deny: [192.0.2.7/32, "::1"]}}]`, func(t *testing.T, c *Config) {
			g := c.Fences[0].Gateway
			want := func(ps ...string) []netip.Prefix {
				var out []netip.Prefix
				for _, p := range ps {
					out = append(out, netip.MustParsePrefix(p))
				}
				return out
			}
			if g == nil || g.NoIPv6 || g.IPv6Prefix != netip.MustParsePrefix("fd00:1:2:3::/64") {
				t.Fatalf("got %+v", g)
			}
			if !slices.Equal(g.Allow, want("127.0.0.1/32", "192.0.2.0/24", "2001:db8::/32")) {
				t.Errorf("allow: got %v", g.Allow)
			}
			if !slices.Equal(g.Deny, want("192.0.2.7/32", "::1/128")) {
				t.Errorf("deny: got %v", g.Deny)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("CORRAL_TEST_DIR", "/srv/corral")
			c, err := parse(t, tc.yaml)
			if err != nil {
				t.Fatalf("got %v, want no error", err)
			}
			if tc.check != nil {
				tc.check(t, c)
			}
		})
	}
}

func TestConfigFromEnv(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte("fences: [{name: envfence, id: 9}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CORRAL_CONFIG", p)
	cfg, err := parse(t, "")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Fences[0].Name != "envfence" {
		t.Errorf("got fence %q, want envfence from CORRAL_CONFIG", cfg.Fences[0].Name)
	}
	// --config wins over CORRAL_CONFIG.
	cfg, err = parse(t, "fences: [{name: flagfence, id: 9}]\n")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Fences[0].Name != "flagfence" {
		t.Errorf("got fence %q, want flagfence from --config", cfg.Fences[0].Name)
	}
}

func TestEnsurePrivateDir(t *testing.T) {
	base := t.TempDir()
	d := filepath.Join(base, "corral-x")
	if err := ensurePrivateDir(d); err != nil {
		t.Fatalf("new dir: %v", err)
	}
	if st, err := os.Stat(d); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("got %v %v, want a 0700 directory", st, err)
	}
	if err := ensurePrivateDir(d); err != nil {
		t.Fatalf("existing private dir: %v", err)
	}
	if err := os.Chmod(d, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := ensurePrivateDir(d); err == nil {
		t.Errorf("world-writable dir accepted")
	}
	f := filepath.Join(base, "file")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := ensurePrivateDir(f); err == nil {
		t.Errorf("a file accepted as directory")
	}
}

// TestGatewayMTUOverUplink: a gateway on a host with an uplink advertises
// the VM MTU that avoids fragmentation (DESIGN.md 3.4; issue 4 item 2)
// unless gateway.mtu is set; without an uplink it keeps 1500 (0 = stack
// default, option 26 not sent).
func TestGatewayMTUOverUplink(t *testing.T) {
	const gw = "fences: [{name: a, id: 1, gateway: {enabled: true}}, {name: b, id: 2, gateway: {enabled: true, mtu: 1400}}, {name: c, id: 3}]\n"
	for _, tc := range []struct {
		name, uplink string
		want         int // fence a's gateway MTU
	}{
		{"no uplink", "", 0},
		{"udp ipv4", "uplink: {udp: {listen: \":7407\"}}\n", 1440},
		{"udp ipv4 address", "uplink: {udp: {listen: \"192.0.2.1:7407\", peers: [\"192.0.2.2\"]}}\n", 1440},
		{"udp ipv4 mtu 9000", "uplink: {mtu: 9000, udp: {listen: \"0.0.0.0:7407\"}}\n", 8940},
		{"udp ipv4 multicast group", "uplink: {udp: {listen: \"0.0.0.0:7407\", group: \"239.1.2.3\"}}\n", 1440},
		{"udp ipv6 wildcard", "uplink: {udp: {listen: \"[::]:7407\"}}\n", 1420},
		{"udp ipv6 address", "uplink: {udp: {listen: \"[2001:db8::1]:7407\"}}\n", 1420},
		{"udp ipv6 peers", "uplink: {udp: {listen: \"[::]:7407\", peers: [\"[2001:db8::2]:7407\"]}}\n", 1420},
		{"udp ipv6 mtu 9000", "uplink: {mtu: 9000, udp: {listen: \"[::]:7407\"}}\n", 8920},
		{"udp ipv6 smallest mtu clamps to 576", "uplink: {mtu: 576, udp: {listen: \"[::]:7407\"}}\n", 576},
		{"raw", "uplink: {raw: {interface: eth1}}\n", 1482},
		{"raw mtu 9000", "uplink: {mtu: 9000, raw: {interface: eth1}}\n", 8982},
		{"raw mtu 65535", "uplink: {mtu: 65535, raw: {interface: eth1}}\n", 65517},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parse(t, gw+tc.uplink)
			if err != nil {
				t.Fatal(err)
			}
			if c.HasUplink != (tc.uplink != "") {
				t.Fatalf("HasUplink = %v", c.HasUplink)
			}
			if g := c.Fences[0].Gateway; g == nil || g.MTU != tc.want {
				t.Errorf("fence a: gateway %+v, want MTU %d", g, tc.want)
			}
			if g := c.Fences[1].Gateway; g == nil || g.MTU != 1400 {
				t.Errorf("fence b: explicit gateway.mtu 1400 overridden: %+v", g)
			}
			if c.Fences[2].Gateway != nil {
				t.Errorf("fence c has a gateway")
			}
			if g := c.Fences[0].Gateway; g != nil {
				if err := g.Validate(); err != nil {
					t.Errorf("stack rejects the gateway config: %v", err)
				}
			}
		})
	}
}
