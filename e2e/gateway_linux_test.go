package e2e

// The fence gateway (issue 4, DESIGN.md section 6) with real kernels as
// guests: network namespaces whose TAP is attached by `corral plug`.
//
//	ns gw1 (tap0, udhcpc) ─ plug ─ unix a.sock ─ corral fence A (id 21, gateway 10.0.2.0/24)
//	ns gw2 (tap0, udhcpc) ─ plug ─ unix b.sock ─ corral fence B (id 22, gateway 10.0.2.0/24)
//
// Both fences use the same subnet; each guest (busybox udhcpc) gets
// 10.0.2.15 and a default route from its own gateway, reaches an HTTP
// server on the host's loopback through 10.0.2.2, pings 10.0.2.2 (ICMP NAT)
// and 10.0.2.3, resolves its lease name and a forwarded name at 10.0.2.3,
// does UDP through 10.0.2.2, and is reached from the host through its own
// port forward. Over IPv6 each guest autoconfigures from the gateway's
// router advertisements, reaches the host's ::1 through fd63:6f72:7261::2
// (TCP and ping) and resolves its lease name at fd63:6f72:7261::3.

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corralnet/corral/e2e/harness"
	"github.com/corralnet/corral/stack/dns/dnstest"
)

// udhcpcScript configures the interface from udhcpc's environment and
// records it.
const udhcpcScript = `#!/bin/sh
env | sort > "$0.$1.env"
case "$1" in
bound|renew)
	ip -4 addr flush dev "$interface"
	ip addr add "$ip/$subnet" dev "$interface"
	if [ -n "$mtu" ]; then ip link set dev "$interface" mtu "$mtu"; fi
	set -- $router
	ip route replace default via "$1" dev "$interface"
	;;
deconfig)
	ip -4 addr flush dev "$interface"
	;;
esac
exit 0
`

func nsRun(t *testing.T, ns *harness.NS, timeout time.Duration, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return ns.Exec(ctx, args...)
}

func TestIntegrationGateway(t *testing.T) {
	harness.NeedRoot(t)
	dir := harness.ShortTempDir(t)
	resolver := dnstest.Resolver(t, map[string]netip.Addr{"upstream.example.org.": netip.MustParseAddr("192.0.2.53")})

	// HTTP server on the host's loopback, reached by guests via 10.0.2.2.
	hostPage := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from the host, %s\n", r.URL.Path)
	})
	hostPort := harness.ServeHTTP(t, "127.0.0.1:0", hostPage)

	fwdA, fwdB := harness.FreeTCPPort(t), harness.FreeTCPPort(t)
	for fwdB == fwdA {
		fwdB = harness.FreeTCPPort(t)
	}
	sa, sb := filepath.Join(dir, "a.sock"), filepath.Join(dir, "b.sock")
	state := filepath.Join(dir, "state")
	gw := func(port int) string {
		return fmt.Sprintf(`{enabled: true, subnet: 10.0.2.0/24, domain: e2e.test, resolvers: ["%s"], forwards: [{proto: tcp, listen: "127.0.0.1:%d", target: "10.0.2.15:8080"}]}`, resolver, port)
	}
	cfg := fmt.Sprintf(`state_dir: %s
fences:
  - {name: A, id: 21, listen: ["unix://%s"], gateway: %s}
  - {name: B, id: 22, listen: ["unix://%s"], gateway: %s}
admin: {listen: "unix://%s"}
log: {level: debug}
`, state, sa, gw(fwdA), sb, gw(fwdB), filepath.Join(dir, "admin.sock"))
	corral := harness.StartCorral(t, nil, cfg)

	type guest struct {
		name, sock, host string
		fwd              int
		ns               *harness.NS
	}
	guests := []*guest{{name: "A", sock: sa, host: "vma", fwd: fwdA}, {name: "B", sock: sb, host: "vmb", fwd: fwdB}}
	for _, g := range guests {
		g.ns = harness.NewNS(t, "gw"+strings.ToLower(g.name))
		p := harness.Start(t, nil, harness.CorralBinary(t), "plug", "unix://"+g.sock, "--tap", "tap0", "--netns", g.ns.Name)
		harness.WaitFor(t, 30*time.Second, "tap0 in "+g.ns.Name, func() bool {
			if p.Exited() {
				t.Fatalf("corral plug exited: %v\n%s", p.Wait(), p.Log())
			}
			_, err := nsRun(t, g.ns, 10*time.Second, "ip", "link", "show", "dev", "tap0")
			return err == nil
		})
		g.ns.MustExec(t, "ip", "link", "set", "dev", "tap0", "up")
	}

	for _, g := range guests {
		t.Run("dhcp "+g.name, func(t *testing.T) {
			script := filepath.Join(dir, "udhcpc-"+g.name+".sh")
			if err := os.WriteFile(script, []byte(udhcpcScript), 0o755); err != nil {
				t.Fatal(err)
			}
			out, err := nsRun(t, g.ns, 60*time.Second, "busybox", "udhcpc", "-i", "tap0", "-f", "-q", "-n",
				"-t", "10", "-T", "2", "-x", "hostname:"+g.host, "-s", script)
			if err != nil {
				t.Fatalf("udhcpc: %v\n%s\ncorral:\n%s", err, out, corral.Log())
			}
			addrs := g.ns.MustExec(t, "ip", "-4", "addr", "show", "dev", "tap0")
			if !strings.Contains(addrs, "10.0.2.15/24") {
				t.Fatalf("tap0 has no 10.0.2.15/24:\n%s", addrs)
			}
			routes := g.ns.MustExec(t, "ip", "-4", "route", "show", "default")
			if !strings.Contains(routes, "via 10.0.2.2") {
				t.Fatalf("no default route via 10.0.2.2:\n%s", routes)
			}
			env, err := os.ReadFile(script + ".bound.env")
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{"dns=10.0.2.3", "domain=e2e.test", "router=10.0.2.2", "subnet=255.255.255.0"} {
				if !strings.Contains(string(env), want) {
					t.Errorf("udhcpc environment lacks %q:\n%s", want, env)
				}
			}
		})
	}
	if t.Failed() {
		t.FailNow()
	}

	for _, g := range guests {
		t.Run("tcp to host loopback "+g.name, func(t *testing.T) {
			// busybox nc speaks HTTP/1.0 to the host's server via 10.0.2.2.
			cmd := fmt.Sprintf("printf 'GET /%s HTTP/1.0\\r\\n\\r\\n' | busybox nc -w 10 10.0.2.2 %d", g.name, hostPort)
			out, err := nsRun(t, g.ns, 30*time.Second, "sh", "-c", cmd)
			if err != nil || !strings.Contains(out, "hello from the host, /"+g.name) {
				t.Fatalf("%s: %v\n%s", cmd, err, out)
			}
		})
		t.Run("ping "+g.name, func(t *testing.T) {
			// 10.0.2.2 is relayed to the host's 127.0.0.1 (raw ICMP socket);
			// 10.0.2.3 is answered by the gateway's stack.
			for _, dst := range []string{"10.0.2.2", "10.0.2.3"} {
				out, err := nsRun(t, g.ns, 30*time.Second, "ping", "-c", "2", "-i", "0.2", "-W", "5", dst)
				if err != nil {
					t.Fatalf("ping %s: %v\n%s", dst, err, out)
				}
			}
		})
		t.Run("dns "+g.name, func(t *testing.T) {
			// The lease's own name, answered by the gateway.
			out, err := nsRun(t, g.ns, 30*time.Second, "busybox", "nslookup", g.host+".e2e.test", "10.0.2.3")
			if err != nil || !strings.Contains(out, "10.0.2.15") {
				t.Fatalf("nslookup %s.e2e.test: %v\n%s", g.host, err, out)
			}
			// Forwarded to the resolver on the host's loopback.
			out, err = nsRun(t, g.ns, 30*time.Second, "busybox", "nslookup", "upstream.example.org", "10.0.2.3")
			if err != nil || !strings.Contains(out, "192.0.2.53") {
				t.Fatalf("nslookup upstream.example.org: %v\n%s", err, out)
			}
		})
		t.Run("udp to host loopback "+g.name, func(t *testing.T) {
			// DNS over UDP straight to the host's resolver port via 10.0.2.2.
			srv := fmt.Sprintf("10.0.2.2:%d", resolver.Port())
			out, err := nsRun(t, g.ns, 30*time.Second, "busybox", "nslookup", "upstream.example.org", srv)
			if err != nil || !strings.Contains(out, "192.0.2.53") {
				t.Fatalf("nslookup via %s: %v\n%s", srv, err, out)
			}
		})
	}

	t.Run("port forwards into identical subnets", func(t *testing.T) {
		for _, g := range guests {
			www := filepath.Join(dir, "www-"+g.name)
			if err := os.MkdirAll(www, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(www, "index.html"), []byte("guest "+g.name+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			harness.Start(t, g.ns, "busybox", "httpd", "-f", "-p", "10.0.2.15:8080", "-h", www)
		}
		for _, g := range guests {
			url := fmt.Sprintf("http://127.0.0.1:%d/index.html", g.fwd)
			var body string
			harness.WaitFor(t, 30*time.Second, "port forward "+url, func() bool {
				c := &http.Client{Timeout: 5 * time.Second}
				resp, err := c.Get(url)
				if err != nil {
					return false
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				body = string(b)
				return resp.StatusCode == 200
			})
			if body != "guest "+g.name+"\n" {
				t.Fatalf("%s answered %q, want guest %s", url, body, g.name)
			}
		}
	})

	t.Run("ipv6 slaac and nat to host ::1", func(t *testing.T) {
		port6 := harness.ServeHTTP(t, "[::1]:0", hostPage) // fails if the host has no ::1
		for _, g := range guests {
			// The kernel solicits a router when tap0 comes up; the gateway
			// advertises fd63:6f72:7261::/64 and the guest autoconfigures.
			var addrs string
			harness.WaitFor(t, 30*time.Second, "SLAAC address in "+g.ns.Name, func() bool {
				addrs, _ = nsRun(t, g.ns, 10*time.Second, "ip", "-6", "addr", "show", "dev", "tap0", "scope", "global")
				return strings.Contains(addrs, "fd63:6f72:7261:0:") && !strings.Contains(addrs, "tentative")
			})
			routes := g.ns.MustExec(t, "ip", "-6", "route", "show", "default")
			if !strings.Contains(routes, "via fe80::") {
				t.Fatalf("no IPv6 default route from the RA:\n%s", routes)
			}
			cmd := fmt.Sprintf("printf 'GET /v6%s HTTP/1.0\\r\\n\\r\\n' | busybox nc -w 10 fd63:6f72:7261::2 %d", g.name, port6)
			out, err := nsRun(t, g.ns, 30*time.Second, "sh", "-c", cmd)
			if err != nil || !strings.Contains(out, "hello from the host, /v6"+g.name) {
				t.Fatalf("%s: %v\n%s\naddresses:\n%s", cmd, err, out, addrs)
			}
			if out, err := nsRun(t, g.ns, 30*time.Second, "ping", "-6", "-c", "2", "-i", "0.2", "-W", "5", "fd63:6f72:7261::2"); err != nil {
				t.Fatalf("ping -6 fd63:6f72:7261::2: %v\n%s", err, out)
			}
			out, err = nsRun(t, g.ns, 30*time.Second, "busybox", "nslookup", g.host+".e2e.test", "[fd63:6f72:7261::3]:53")
			if err != nil || !strings.Contains(out, "10.0.2.15") {
				t.Fatalf("nslookup over IPv6: %v\n%s", err, out)
			}
		}
	})

	t.Run("leases persisted", func(t *testing.T) {
		// In the instance's own directory under state_dir, named after
		// the admin socket (issue 11 item 3), which corral logs.
		inst, err := filepath.Glob(filepath.Join(state, "*-admin.sock-*"))
		if err != nil || len(inst) != 1 || !strings.Contains(corral.Log(), "instance state\" dir="+inst[0]+" ") {
			t.Fatalf("instance directories under %s: %v (%v); corral logged:\n%s", state, inst, err, corral.Log())
		}
		for _, id := range []string{"21", "22"} {
			b, err := os.ReadFile(filepath.Join(inst[0], "leases-"+id+".json"))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(b), "10.0.2.15") {
				t.Fatalf("lease file of fence %s:\n%s", id, b)
			}
		}
	})
}
