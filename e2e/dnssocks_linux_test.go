package e2e

// Gateway DNS names and the SOCKS5 endpoint (issue 11 items 5 and 8) with
// a real Linux guest and real clients:
//
//	ns dns (tap0, udhcpc -x hostname:vm1, glibc resolver, curl)
//	   └─ corral plug ─ unix a.sock ─ corral fence lab (gateway 10.0.2.0/24,
//	                                    socks 127.0.0.1:P, dns.records db)
//	host: HTTP server on 127.0.0.1 only; curl --socks5-hostname 127.0.0.1:P
//
// The guest takes its resolver configuration from DHCP (option 6 and the
// search list of option 119) into its own resolv.conf (/etc/netns/NS/, as
// `ip netns exec` mounts it), then resolves short and full names with
// glibc (getent, curl): host, gateway, its own lease name and a static
// record; and fetches a page from the host's 127.0.0.1-only server by the
// short name "host". The host reaches the guest's web server through the
// fence's SOCKS5 endpoint by the fence's names, and is refused outside it.

import (
	"fmt"
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

// resolvScript is udhcpc's hook: it configures the interface and writes
// resolv.conf from the lease (search list of option 119, else the domain
// of option 15), recording its environment.
const resolvScript = `#!/bin/sh
env | sort > "$0.$1.env"
case "$1" in
bound|renew)
	ip -4 addr flush dev "$interface"
	ip addr add "$ip/$subnet" dev "$interface"
	set -- $router
	ip route replace default via "$1" dev "$interface"
	{
		if [ -n "$search" ]; then echo "search $search"; elif [ -n "$domain" ]; then echo "search $domain"; fi
		for d in $dns; do echo "nameserver $d"; done
	} > /etc/resolv.conf
	;;
esac
exit 0
`

func TestIntegrationGatewayDNSAndSocks(t *testing.T) {
	harness.NeedRoot(t)
	dir := harness.ShortTempDir(t)
	resolver := dnstest.Resolver(t, map[string]netip.Addr{"upstream.example.org.": netip.MustParseAddr("192.0.2.53")})
	// A service on the host's IPv4 loopback only: "host" must lead guests
	// to it, never to an IPv6 address where nothing listens.
	hostPort := harness.ServeHTTP(t, "127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "host page %s\n", r.URL.Path)
	}))
	socksPort := harness.FreeTCPPort(t)
	sock := filepath.Join(dir, "a.sock")
	adminSock := filepath.Join(dir, "admin.sock")
	corral := harness.StartCorral(t, nil, fmt.Sprintf(`state_dir: %s
fences:
  - name: lab
    id: 31
    listen: ["unix://%s"]
    gateway:
      enabled: true
      resolvers: ["%s"]
      socks: "127.0.0.1:%d"
      dns:
        records:
          - {name: db, type: A, data: ["10.0.2.15"]}
admin: {listen: "unix://%s"}
`, filepath.Join(dir, "state"), sock, resolver, socksPort, adminSock))

	ns := harness.NewNS(t, "dns")
	// ip netns exec mounts /etc/netns/NS/resolv.conf over /etc/resolv.conf.
	etc := filepath.Join("/etc/netns", ns.Name)
	if err := os.MkdirAll(etc, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(etc) })
	if err := os.WriteFile(filepath.Join(etc, "resolv.conf"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	p := harness.Start(t, nil, harness.CorralBinary(t), "plug", "unix://"+sock, "--tap", "tap0", "--netns", ns.Name)
	harness.WaitFor(t, 30*time.Second, "tap0 in "+ns.Name, func() bool {
		if p.Exited() {
			t.Fatalf("corral plug exited: %v\n%s", p.Wait(), p.Log())
		}
		_, err := nsRun(t, ns, 10*time.Second, "ip", "link", "show", "dev", "tap0")
		return err == nil
	})
	ns.MustExec(t, "ip", "link", "set", "dev", "tap0", "up")
	script := filepath.Join(dir, "udhcpc.sh")
	if err := os.WriteFile(script, []byte(resolvScript), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := nsRun(t, ns, 60*time.Second, "busybox", "udhcpc", "-i", "tap0", "-f", "-q", "-n",
		"-t", "10", "-T", "2", "-x", "hostname:vm1", "-s", script); err != nil {
		t.Fatalf("udhcpc: %v\n%s\ncorral:\n%s", err, out, corral.Log())
	}
	env, err := os.ReadFile(script + ".bound.env")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(env), "search=corral.internal") {
		t.Fatalf("udhcpc got no search list (DHCP option 119):\n%s", env)
	}
	conf, _ := os.ReadFile(filepath.Join(etc, "resolv.conf"))
	if !strings.Contains(string(conf), "search corral.internal") || !strings.Contains(string(conf), "nameserver 10.0.2.3") {
		t.Fatalf("guest resolv.conf:\n%s", conf)
	}

	t.Run("names", func(t *testing.T) {
		for name, want := range map[string]string{
			"host":                    "10.0.2.2",
			"host.corral.internal":    "10.0.2.2",
			"gateway":                 "10.0.2.2",
			"gateway.corral.internal": "10.0.2.2",
			"vm1":                     "10.0.2.15",
			"vm1.corral.internal":     "10.0.2.15",
			"db":                      "10.0.2.15",
			"host.lima.internal":      "10.0.2.2",
			"upstream.example.org":    "192.0.2.53",
		} {
			out, err := nsRun(t, ns, 30*time.Second, "getent", "ahostsv4", name)
			if err != nil || !strings.HasPrefix(out, want+" ") {
				t.Errorf("getent ahostsv4 %s: %v\n%s", name, err, out)
			}
		}
		// No AAAA for a lease: an empty answer, so getent finds none.
		if out, err := nsRun(t, ns, 30*time.Second, "busybox", "nslookup", "-type=AAAA", "vm1.corral.internal", "10.0.2.3"); err != nil ||
			strings.Contains(out, "NXDOMAIN") || strings.Contains(out, "fd63") {
			t.Errorf("nslookup -type=AAAA vm1: %v\n%s", err, out)
		}
	})

	t.Run("host service by short name", func(t *testing.T) {
		url := fmt.Sprintf("http://host:%d/short", hostPort)
		out, err := nsRun(t, ns, 30*time.Second, "curl", "-sS", "--max-time", "20", url)
		if err != nil || out != "host page /short\n" {
			t.Fatalf("curl %s in the guest: %v\n%s", url, err, out)
		}
	})

	t.Run("socks5 from the host", func(t *testing.T) {
		www := filepath.Join(dir, "www")
		if err := os.MkdirAll(www, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(www, "index.html"), []byte("guest vm1\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		harness.Start(t, ns, "busybox", "httpd", "-f", "-p", "10.0.2.15:8080", "-h", www)
		proxy := fmt.Sprintf("127.0.0.1:%d", socksPort)
		for _, url := range []string{"http://10.0.2.15:8080/index.html", "http://vm1:8080/index.html", "http://db.corral.internal:8080/index.html"} {
			var out string
			harness.WaitFor(t, 30*time.Second, "curl --socks5-hostname "+url, func() bool {
				out, err = nsRun(t, nil, 20*time.Second, "curl", "-sS", "--max-time", "10", "--socks5-hostname", proxy, url)
				return err == nil
			})
			if out != "guest vm1\n" {
				t.Fatalf("curl --socks5-hostname %s %s: %q", proxy, url, out)
			}
		}
		// The host's own services are outside the fence.
		url := fmt.Sprintf("http://host:%d/", hostPort)
		if out, err := nsRun(t, nil, 20*time.Second, "curl", "-sS", "--max-time", "10", "--socks5-hostname", proxy, url); err == nil {
			t.Fatalf("curl through SOCKS to %s (the host) succeeded:\n%s", url, out)
		}
		want := "SOCKS5 " + proxy + ": 0 open, 3 connects, 0 udp associations, 1 refused (outside the fence)"
		var out string
		harness.WaitFor(t, 30*time.Second, "corral gateways showing "+want, func() bool {
			out, _ = nsRun(t, nil, 20*time.Second, harness.CorralBinary(t), "gateways", "--admin", adminSock)
			return strings.Contains(out, want)
		})
	})
}
