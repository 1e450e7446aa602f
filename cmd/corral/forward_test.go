package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corralnet/corral/admin"
	"github.com/corralnet/corral/forward"
)

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// listening reports whether something accepts TCP connections on addr.
func listening(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// TestForwardCommands runs corral with a real gateway and drives the
// forward routes over the admin socket with the CLI: add, ls, errors
// (unknown fence, fence without gateway, listen address in use, bad
// arguments), rm, and the host port opening and closing with them.
func TestForwardCommands(t *testing.T) {
	dir := shortDir(t)
	cfgPort := freePort(t)
	startRun(t, `state_dir: "`+dir+`/state"
fences:
  - {name: a, id: 1, gateway: {enabled: true, forwards: [{proto: tcp, listen: "127.0.0.1:`+strconv.Itoa(cfgPort)+`", target: "10.0.2.15:22"}]}}
  - {name: b, id: 2, gateway: {enabled: true, subnet: 10.0.3.0/24, ipv6: false}}
  - {name: plain, id: 3}
admin: {listen: "unix://`+dir+`/admin.sock"}
`)
	sock := filepath.Join(dir, "admin.sock")
	port := freePort(t)
	listen := "127.0.0.1:" + strconv.Itoa(port)
	cfgListen := "127.0.0.1:" + strconv.Itoa(cfgPort)
	shared := "127.0.0.1:" + strconv.Itoa(freePort(t))

	// Something else holds a port: adding a forward on it is refused.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()

	steps := []struct {
		name     string
		argv     []string
		wantCode int
		want     []string // substrings of stdout, or of stderr when wantCode != 0
	}{
		{"ls config forward", []string{"forward", "ls"}, 0, []string{"FENCE", "a", cfgListen, "10.0.2.15:22"}},
		{"add", []string{"forward", "add", "a", "tcp", listen, "10.0.2.15:80"}, 0, []string{"fence a: forwarding tcp " + listen + " -> 10.0.2.15:80"}},
		{"add by id", []string{"forward", "add", "2", "udp", listen, "10.0.3.15:53"}, 0, []string{"fence b: forwarding udp " + listen + " -> 10.0.3.15:53"}},
		{"ls fence", []string{"forward", "ls", "a"}, 0, []string{listen, "10.0.2.15:80", cfgListen}},
		{"add again", []string{"forward", "add", "a", "tcp", listen, "10.0.2.16:80"}, 1, []string{"in use", listen}},
		{"add in use by other fence", []string{"forward", "add", "b", "tcp", listen, "10.0.3.15:80"}, 1, []string{"in use", listen}},
		{"add in use by process", []string{"forward", "add", "a", "tcp", busy.Addr().String(), "10.0.2.15:80"}, 1, []string{"listen address tcp " + busy.Addr().String() + " in use"}},
		{"add unknown fence", []string{"forward", "add", "nope", "tcp", "127.0.0.1:0", "10.0.2.15:80"}, 1, []string{`no fence "nope"`}},
		{"add no gateway", []string{"forward", "add", "plain", "tcp", "127.0.0.1:0", "10.0.2.15:80"}, 1, []string{`fence "plain" has no gateway`}},
		{"add ipv6 target with ipv6 off", []string{"forward", "add", "b", "tcp", "127.0.0.1:0", "[fd00::15]:80"}, 1, []string{"target [fd00::15]:80 is outside fence b's subnets [10.0.3.0/24]"}},
		{"add target outside the subnet", []string{"forward", "add", "a", "tcp", "127.0.0.1:0", "10.0.3.15:80"}, 1, []string{"target 10.0.3.15:80 is outside fence a's subnets [10.0.2.0/24 fd63:6f72:7261::/64]"}},
		{"add sni", []string{"forward", "add", "a", "tcp", shared, "10.0.2.15:443", "--sni", "Lab-A.test"}, 0, []string{"fence a: forwarding tcp " + shared + " sni lab-a.test -> 10.0.2.15:443"}},
		{"add sni other fence", []string{"forward", "add", "b", "tcp", shared, "10.0.3.15:443", "--sni", "lab-b.test"}, 0, []string{"fence b: forwarding tcp " + shared + " sni lab-b.test -> 10.0.3.15:443"}},
		{"add host other fence", []string{"forward", "add", "b", "tcp", shared, "10.0.3.15:80", "--host", "lab-b.test"}, 0, []string{"fence b: forwarding tcp " + shared + " host lab-b.test -> 10.0.3.15:80"}},
		{"add same sni other fence", []string{"forward", "add", "b", "tcp", shared, "10.0.3.15:443", "--sni", "lab-a.test."}, 1, []string{"listen address tcp " + shared + " sni lab-a.test in use: fence a forwards it"}},
		{"add same sni same fence", []string{"forward", "add", "a", "tcp", shared, "10.0.2.16:443", "--sni", "lab-a.test"}, 1, []string{"listen address tcp " + shared + " sni lab-a.test in use: this fence already forwards it"}},
		{"add default route", []string{"forward", "add", "a", "tcp", shared, "10.0.2.15:443"}, 0, []string{"fence a: forwarding tcp " + shared + " -> 10.0.2.15:443"}},
		{"add second default route", []string{"forward", "add", "b", "tcp", shared, "10.0.3.15:443"}, 1, []string{"listen address tcp " + shared + " in use: fence a forwards it"}},
		{"add sni and host", []string{"forward", "add", "a", "tcp", shared, "10.0.2.15:443", "--sni", "x.test", "--host", "x.test"}, 2, []string{"give one of them"}},
		{"add udp sni", []string{"forward", "add", "a", "udp", shared, "10.0.2.15:443", "--sni", "x.test"}, 2, []string{"need proto tcp"}},
		{"add wildcard sni", []string{"forward", "add", "a", "tcp", shared, "10.0.2.15:443", "--sni", "*.lab.test"}, 2, []string{`sni "*.lab.test": want a DNS name`}},
		{"ls names", []string{"forward", "ls"}, 0, []string{"NAME", "sni lab-a.test", "sni lab-b.test", "host lab-b.test"}},
		{"gateways names", []string{"gateways", "b"}, 0, []string{"forward tcp " + shared + " sni lab-b.test -> 10.0.3.15:443", "forward tcp " + shared + " host lab-b.test -> 10.0.3.15:80"}},
		{"rm sni", []string{"forward", "rm", "b", "tcp", shared, "--sni", "LAB-B.test"}, 0, []string{"fence b: removed tcp " + shared + " sni lab-b.test"}},
		{"rm sni again", []string{"forward", "rm", "b", "tcp", shared, "--sni", "lab-b.test"}, 1, []string{`fence "b" has no forward on tcp ` + shared + " sni lab-b.test"}},
		{"rm other fence's sni", []string{"forward", "rm", "b", "tcp", shared, "--sni", "lab-a.test"}, 1, []string{`fence "b" has no forward on tcp ` + shared + " sni lab-a.test"}},
		{"add not this host", []string{"forward", "add", "a", "tcp", "192.0.2.1:2222", "10.0.2.15:80"}, 1, []string{"not an address of this host"}},
		{"add bad proto", []string{"forward", "add", "a", "sctp", listen, "10.0.2.15:80"}, 2, []string{`proto "sctp"`}},
		{"add bad listen", []string{"forward", "add", "a", "tcp", "2222", "10.0.2.15:80"}, 2, []string{`listen "2222": want IP:port`}},
		{"add bad target", []string{"forward", "add", "a", "tcp", listen, "10.0.2.15"}, 2, []string{`target "10.0.2.15"`}},
		{"unknown subcommand", []string{"forward", "bogus"}, 2, []string{`unknown command or argument "bogus"`}},
		{"add too few", []string{"forward", "add", "a", "tcp", listen}, 2, []string{"takes 4 arguments"}},
		{"ls unknown", []string{"forward", "ls", "nope"}, 1, []string{`no fence "nope"`}},
		{"ls no gateway", []string{"forward", "ls", "plain"}, 1, []string{"has no gateway"}},
		{"rm", []string{"forward", "rm", "a", "tcp", listen}, 0, []string{"fence a: removed tcp " + listen}},
		{"rm again", []string{"forward", "rm", "a", "tcp", listen}, 1, []string{`fence "a" has no forward on tcp ` + listen}},
		{"rm udp", []string{"forward", "rm", "b", "udp", listen}, 0, []string{"removed udp"}},
		{"gateways", []string{"gateways"}, 0, []string{"fence a (1): gateway 10.0.2.2 in 10.0.2.0/24, DNS 10.0.2.3", "IPv6 fd63:6f72:7261::/64", "fence b (2): gateway 10.0.3.2 in 10.0.3.0/24", "IPv6 off", "forward tcp " + cfgListen}},
		{"gateways one", []string{"gateways", "b"}, 0, []string{"fence b (2)"}},
		{"gateways no gateway", []string{"gateways", "plain"}, 1, []string{"has no gateway"}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			code, out, errOut := runCLI(t, append(st.argv, "--admin", sock)...)
			if code != st.wantCode {
				t.Fatalf("exit status: got %d, want %d\nstdout: %s\nstderr: %s", code, st.wantCode, out, errOut)
			}
			text := out
			if st.wantCode != 0 {
				text = errOut
			}
			for _, w := range st.want {
				if !strings.Contains(text, w) {
					t.Errorf("output lacks %q:\n%s", w, text)
				}
			}
			// The host port follows the forward's life.
			switch st.name {
			case "add":
				if !listening(listen) {
					t.Errorf("nothing listens on %s after forward add", listen)
				}
			case "rm":
				if listening(listen) {
					t.Errorf("%s still accepts after forward rm", listen)
				}
			}
		})
	}
	if !listening(cfgListen) {
		t.Errorf("the configured forward %s does not listen", cfgListen)
	}
}

// TestForwardAPI drives the routes with raw HTTP: JSON bodies, the DELETE
// query form, a port 0 listen address reported as bound, and bad bodies.
func TestForwardAPI(t *testing.T) {
	dir := shortDir(t)
	startRun(t, `state_dir: "`+dir+`/state"
fences: [{name: a, id: 1, gateway: {enabled: true}}]
admin: {listen: "unix://`+dir+`/admin.sock"}
`)
	sock := filepath.Join(dir, "admin.sock")
	hc := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}}}
	do := func(method, path, body string) (int, []byte) {
		t.Helper()
		req, err := http.NewRequest(method, "http://corral"+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return resp.StatusCode, b.Bytes()
	}

	code, body := do("POST", "/v1/forwards", `{"fence":"a","proto":"tcp","listen":"127.0.0.1:0","target":"10.0.2.15:22"}`)
	if code != http.StatusCreated {
		t.Fatalf("POST: got %d %s, want 201", code, body)
	}
	var added admin.Forward
	if err := json.Unmarshal(body, &added); err != nil {
		t.Fatal(err)
	}
	if added.Fence != "a" || added.Proto != "tcp" || strings.HasSuffix(added.Listen, ":0") || added.Target != "10.0.2.15:22" {
		t.Fatalf("POST: got %+v, want the bound port", added)
	}
	if !listening(added.Listen) {
		t.Fatalf("nothing listens on %s", added.Listen)
	}
	code, body = do("GET", "/v1/forwards?fence=1", "")
	var ffs []admin.FenceForwards
	if code != 200 || json.Unmarshal(body, &ffs) != nil || len(ffs) != 1 || len(ffs[0].Forwards) != 1 || ffs[0].Forwards[0].Listen != added.Listen {
		t.Fatalf("GET: got %d %s", code, body)
	}
	for _, tc := range []struct {
		name, method, path, body string
		want                     int
	}{
		{"unknown field", "POST", "/v1/forwards", `{"fence":"a","proto":"tcp","listen":"127.0.0.1:0","target":"10.0.2.15:22","x":1}`, 400},
		{"not json", "POST", "/v1/forwards", `{`, 400},
		{"no fence", "POST", "/v1/forwards", `{"proto":"tcp","listen":"127.0.0.1:0","target":"10.0.2.15:22"}`, 400},
		{"unknown fence", "DELETE", "/v1/forwards?fence=9&proto=tcp&listen=" + added.Listen, "", 404},
		{"delete by query", "DELETE", "/v1/forwards?fence=a&proto=tcp&listen=" + added.Listen, "", 200},
		{"delete again by body", "DELETE", "/v1/forwards", `{"fence":"a","proto":"tcp","listen":"` + added.Listen + `"}`, 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := do(tc.method, tc.path, tc.body)
			if code != tc.want {
				t.Fatalf("got %d %s, want %d", code, body, tc.want)
			}
			var e struct{ Error string }
			if code != 200 && (json.Unmarshal(body, &e) != nil || e.Error == "") {
				t.Errorf("error body %s lacks an error message", body)
			}
		})
	}
	c, err := net.DialTimeout("tcp", added.Listen, 2*time.Second)
	if err == nil {
		c.Close()
		t.Fatalf("%s still accepts after DELETE", added.Listen)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Logf("dial after DELETE: %v", err)
	}

	code, body = do("GET", "/v1/gateways", "")
	var gs []admin.GatewayStatus
	if code != 200 || json.Unmarshal(body, &gs) != nil || len(gs) != 1 {
		t.Fatalf("GET /v1/gateways: got %d %s", code, body)
	}
	if g := gs[0]; g.Name != "a" || g.Addr != "10.0.2.2" || g.DNS != "10.0.2.3" || g.Subnet != "10.0.2.0/24" ||
		g.Addr6 != "fd63:6f72:7261::2" || g.MAC != "52:55:0a:00:00:01" || g.Leases == nil || g.Forwards == nil {
		t.Errorf("gateway: got %+v", g)
	}
}

// FuzzParseForward: what admin.ParseForward accepts, package forward
// accepts too, and it round-trips through the API's JSON form and this
// package's conversions to and from package forward.
func FuzzParseForward(f *testing.F) {
	f.Add("tcp", "127.0.0.1:2222", "10.0.2.15:22", "", "")
	f.Add("UDP", "[::1]:53", "[fd63:6f72:7261::15]:53", "", "")
	f.Add("tcp", "127.0.0.1:0", "10.0.2.15:0", "", "")
	f.Add("sctp", "x", "", "", "")
	f.Add("tcp", "[fe80::1%eth0]:22", "[fe80::2%eth0]:22", "", "")
	f.Add("tcp", "127.0.0.1:8443", "10.0.2.15:443", "Lab-A.Test.", "")
	f.Add("tcp", "127.0.0.1:8080", "10.0.2.15:80", "", "[::1]")
	f.Add("udp", "127.0.0.1:8080", "10.0.2.15:80", "", "lab-a.test")
	f.Add("tcp", "127.0.0.1:8443", "10.0.2.15:443", "*.lab.test", "")
	f.Fuzz(func(t *testing.T, proto, listen, target, sni, host string) {
		s, err := admin.ParseForward(admin.Forward{Proto: proto, Listen: listen, Target: target, SNI: sni, Host: host}, true)
		if err != nil {
			return
		}
		var fw forward.Forward = forwardSpec(1, s)
		if err := fw.Validate(); err != nil {
			t.Fatalf("accepted %q %q %q %q %q but package forward rejects it: %v", proto, listen, target, sni, host, err)
		}
		if fw.Normalize() != fw {
			t.Fatalf("accepted %+v, not normalized: %+v", s, fw.Normalize())
		}
		again, err := admin.ParseForward(forwardOf(fw), true)
		if err != nil || again != s {
			t.Fatalf("round trip of %+v: got %+v, %v", s, again, err)
		}
	})
}
