package e2e

// One host port serving two fences' copies of one lab (issue 8 item 8):
//
//	host 127.0.0.1:T (TLS) ─┬─ sni lab-a.test ─ fence labA (id 41) ─ unix a.sock ─ corral plug ─ ns lba: 10.0.2.15
//	host 127.0.0.1:H (HTTP) ┤  host lab-a.test                                                  openssl s_server :443
//	                        ├─ sni lab-b.test ─ fence labB (id 42) ─ unix b.sock ─ corral plug ─ ns lbb: 10.0.2.15
//	                        └─ host lab-b.test                                                   busybox httpd :80
//
// Both namespaces get 10.0.2.15 from their own gateway; each serves the
// same TLS and HTTP service saying which copy it is. A crypto/tls client
// (certificate verified) names lab-a.test or lab-b.test on the one TLS
// port, an HTTP client sends Host lab-a.test or lab-b.test to the one HTTP
// port: each is answered by its own fence's guest. Fence labA's routes
// come from the configuration, fence labB's TLS one too and its HTTP one
// from `corral forward add --host` at run time.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corralnet/corral/e2e/harness"
)

// labCert writes a self-signed certificate for names to dir (cert.pem,
// key.pem) and returns a pool that trusts it.
func labCert(t *testing.T, dir string, names ...string) *x509.CertPool {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string]*pem.Block{"cert.pem": {Type: "CERTIFICATE", Bytes: der}, "key.pem": {Type: "PRIVATE KEY", Bytes: kder}} {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(b), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return pool
}

// tlsGet fetches /id.txt over TLS from addr as server name sni, the
// certificate verified against pool, and returns the answer.
func tlsGet(addr, sni string, pool *x509.CertPool) (string, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: sni, RootCAs: pool})
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET /id.txt HTTP/1.0\r\n\r\n")
	b, err := io.ReadAll(c)
	return string(b), err
}

// hostGet fetches http://host/id.txt from addr.
func hostGet(addr, host string) (string, error) {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("http://" + host + "/id.txt")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func TestIntegrationForwardSNIAndHost(t *testing.T) {
	harness.NeedRoot(t)
	if _, err := os.Stat("/usr/bin/openssl"); err != nil {
		t.Fatalf("openssl is not installed (contrib/test-deps.sh installs it): %v", err)
	}
	dir := harness.ShortTempDir(t)
	pool := labCert(t, dir, "lab-a.test", "lab-b.test")
	tlsPort, httpPort := harness.FreeTCPPort(t), harness.FreeTCPPort(t)
	for httpPort == tlsPort {
		httpPort = harness.FreeTCPPort(t)
	}
	tlsAddr, httpAddr := fmt.Sprintf("127.0.0.1:%d", tlsPort), fmt.Sprintf("127.0.0.1:%d", httpPort)
	sa, sb, adminSock := filepath.Join(dir, "a.sock"), filepath.Join(dir, "b.sock"), filepath.Join(dir, "admin.sock")
	cfg := fmt.Sprintf(`state_dir: %s
fences:
  - name: labA
    id: 41
    listen: ["unix://%s"]
    gateway:
      enabled: true
      ipv6: false
      forwards:
        - {proto: tcp, listen: "%s", target: "10.0.2.15:443", sni: "lab-a.test"}
        - {proto: tcp, listen: "%s", target: "10.0.2.15:80", host: "lab-a.test"}
  - name: labB
    id: 42
    listen: ["unix://%s"]
    gateway:
      enabled: true
      ipv6: false
      forwards: [{proto: tcp, listen: "%s", target: "10.0.2.15:443", sni: "Lab-B.test"}]
admin: {listen: "unix://%s"}
log: {level: debug}
`, filepath.Join(dir, "state"), sa, tlsAddr, httpAddr, sb, tlsAddr, adminSock)

	// The same listen address without names in two fences is refused
	// before corral starts.
	bad := strings.Replace(strings.Replace(cfg, `, sni: "Lab-B.test"`, "", 1), `, sni: "lab-a.test"`, "", 1)
	badFile := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(badFile, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := corralCLI(t, "run", "--config", badFile); code != 2 || !strings.Contains(errOut, "fences[1].gateway.forwards[0].listen: tcp "+tlsAddr+" already used by fences[0].gateway.forwards[0]") {
		t.Errorf("corral run with one listen address in two fences without names: exit %d, stderr %q; want 2 and the conflict", code, errOut)
	}

	corral := harness.StartCorral(t, nil, cfg)
	admin := "--admin=" + adminSock

	for _, lab := range []struct{ name, sock string }{{"labA", sa}, {"labB", sb}} {
		ns := harness.NewNS(t, "sni"+strings.ToLower(lab.name[len(lab.name)-1:]))
		p := harness.Start(t, nil, harness.CorralBinary(t), "plug", "unix://"+lab.sock, "--tap", "tap0", "--netns", ns.Name)
		harness.WaitFor(t, 30*time.Second, "tap0 in "+ns.Name, func() bool {
			if p.Exited() {
				t.Fatalf("corral plug exited: %v\n%s", p.Wait(), p.Log())
			}
			_, err := nsRun(t, ns, 10*time.Second, "ip", "link", "show", "dev", "tap0")
			return err == nil
		})
		ns.MustExec(t, "ip", "link", "set", "dev", "tap0", "up")
		script := filepath.Join(dir, "udhcpc-"+lab.name+".sh")
		if err := os.WriteFile(script, []byte(udhcpcScript), 0o755); err != nil {
			t.Fatal(err)
		}
		if out, err := nsRun(t, ns, 60*time.Second, "busybox", "udhcpc", "-i", "tap0", "-f", "-q", "-n",
			"-t", "10", "-T", "2", "-s", script); err != nil {
			t.Fatalf("udhcpc in %s: %v\n%s\ncorral:\n%s", lab.name, err, out, corral.Log())
		}
		if addrs := ns.MustExec(t, "ip", "-4", "addr", "show", "dev", "tap0"); !strings.Contains(addrs, "10.0.2.15/24") {
			t.Fatalf("%s: tap0 has no 10.0.2.15/24:\n%s", lab.name, addrs)
		}
		// The lab: the same services at the same address in both fences,
		// saying which copy they are.
		www := filepath.Join(dir, "www-"+lab.name)
		if err := os.MkdirAll(www, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(www, "id.txt"), []byte("lab copy "+lab.name+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		harness.Start(t, ns, "busybox", "httpd", "-f", "-p", "80", "-h", www)
		harness.Start(t, ns, "sh", "-c", fmt.Sprintf("cd %s && exec openssl s_server -quiet -accept 443 -cert %s -key %s -WWW",
			www, filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")))
	}

	// Fence labB's HTTP route, at run time.
	code, out, errOut := corralCLI(t, "forward", "add", "labB", "tcp", httpAddr, "10.0.2.15:80", "--host", "lab-b.test", admin)
	if code != 0 || !strings.Contains(out, "fence labB: forwarding tcp "+httpAddr+" host lab-b.test -> 10.0.2.15:80") {
		t.Fatalf("forward add --host: exit %d\n%s%s", code, out, errOut)
	}

	check := func(what string, get func() (string, error), want string) {
		t.Helper()
		var got string
		var err error
		harness.WaitFor(t, 30*time.Second, what, func() bool {
			got, err = get()
			return err == nil && strings.Contains(got, want)
		})
		// Once up, it answers every time, and never the other copy.
		for i := 0; i < 5; i++ {
			if got, err = get(); err != nil || !strings.Contains(got, want) {
				t.Fatalf("%s, try %d: got %q, %v; want %q", what, i, got, err, want)
			}
		}
	}
	check("TLS lab-a.test on "+tlsAddr, func() (string, error) { return tlsGet(tlsAddr, "lab-a.test", pool) }, "lab copy labA")
	check("TLS lab-b.test on "+tlsAddr, func() (string, error) { return tlsGet(tlsAddr, "lab-b.test", pool) }, "lab copy labB")
	check("HTTP Host lab-a.test on "+httpAddr, func() (string, error) { return hostGet(httpAddr, "lab-a.test") }, "lab copy labA")
	check("HTTP Host lab-b.test:port on "+httpAddr, func() (string, error) { return hostGet(httpAddr, fmt.Sprintf("lab-b.test:%d", httpPort)) }, "lab copy labB")
	if got, err := hostGet(httpAddr, "lab-c.test"); err == nil {
		t.Errorf("HTTP Host lab-c.test: answered %q, want the connection closed (no route, no default)", got)
	}

	// Run-time conflict: fence labB may not take fence labA's name.
	code, _, errOut = corralCLI(t, "forward", "add", "labB", "tcp", tlsAddr, "10.0.2.15:443", "--sni", "lab-a.test", admin)
	if code != 1 || !strings.Contains(errOut, "listen address tcp "+tlsAddr+" sni lab-a.test in use: fence labA forwards it") {
		t.Errorf("forward add of labA's sni to labB: exit %d, stderr %q", code, errOut)
	}
	// A target outside the fence's subnet is refused.
	code, _, errOut = corralCLI(t, "forward", "add", "labB", "tcp", "127.0.0.1:0", "192.0.2.15:443", admin)
	if code != 1 || !strings.Contains(errOut, "outside fence labB's subnets") {
		t.Errorf("forward add outside the subnet: exit %d, stderr %q", code, errOut)
	}

	code, out, errOut = corralCLI(t, "forward", "ls", "--json", admin)
	var ffs []struct {
		Name     string `json:"name"`
		Forwards []struct{ Proto, Listen, Target, SNI, Host string }
	}
	if code != 0 || json.Unmarshal([]byte(out), &ffs) != nil || len(ffs) != 2 || len(ffs[0].Forwards) != 2 || len(ffs[1].Forwards) != 2 {
		t.Fatalf("forward ls --json: exit %d\n%s%s", code, out, errOut)
	}
	code, out, _ = corralCLI(t, "gateways", "labB", admin)
	for _, want := range []string{"forward tcp " + tlsAddr + " sni lab-b.test -> 10.0.2.15:443", "forward tcp " + httpAddr + " host lab-b.test -> 10.0.2.15:80"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("corral gateways labB lacks %q:\n%s", want, out)
		}
	}

	// Removing fence labA's TLS route leaves fence labB's on the same port.
	code, out, errOut = corralCLI(t, "forward", "rm", "labA", "tcp", tlsAddr, "--sni", "lab-a.test", admin)
	if code != 0 || !strings.Contains(out, "fence labA: removed tcp "+tlsAddr+" sni lab-a.test") {
		t.Fatalf("forward rm --sni: exit %d\n%s%s", code, out, errOut)
	}
	if got, err := tlsGet(tlsAddr, "lab-a.test", pool); err == nil {
		t.Errorf("TLS lab-a.test after its route was removed: %q", got)
	}
	check("TLS lab-b.test after labA's route went", func() (string, error) { return tlsGet(tlsAddr, "lab-b.test", pool) }, "lab copy labB")

	if err := corral.Stop(); err != nil {
		t.Fatalf("corral stop: %v\n%s", err, corral.Log())
	}
	for _, a := range []string{tlsAddr, httpAddr} {
		if c, err := net.DialTimeout("tcp", a, 2*time.Second); err == nil {
			c.Close()
			t.Errorf("after corral stopped, %s still accepts", a)
		}
	}
}
