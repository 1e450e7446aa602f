package forward

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The tests play fences with fakeFence: a Dialer that maps each target
// address to a server on the host's loopback, one set of servers per fence,
// each saying which fence it is.

var (
	targetIP  = netip.MustParseAddr("10.0.2.15") // the same in every fence, as two copies of one lab
	subnet    = netip.MustParsePrefix("10.0.2.0/24")
	tlsPort   = netip.AddrPortFrom(targetIP, 443)
	httpPort  = netip.AddrPortFrom(targetIP, 80)
	echoPort  = netip.AddrPortFrom(targetIP, 7)
	sshPort   = netip.AddrPortFrom(targetIP, 22) // a server that speaks first
	closedTgt = netip.AddrPortFrom(targetIP, 9)  // nothing listens
)

// fakeFence is a fence behind a Dialer: its targets are loopback servers.
type fakeFence struct {
	t       *testing.T
	name    string
	targets map[netip.AddrPort]string // target → loopback address; set before use
	open    atomic.Int64              // connections and flows dialed and not closed
	dials   atomic.Int64
	fail    atomic.Bool // every dial fails
}

// newFakeFence starts fence name's servers: TLS on :443 (cert for
// names), HTTP on :80, echo on :7 (TCP and UDP), a banner server on :22.
func newFakeFence(t *testing.T, name string, cert tls.Certificate) *fakeFence {
	t.Helper()
	f := &fakeFence{t: t, name: name, targets: map[netip.AddrPort]string{}}
	f.targets[tlsPort] = serveTCP(t, func(c net.Conn) {
		tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}})
		defer tc.Close()
		tc.SetDeadline(time.Now().Add(10 * time.Second))
		if tc.Handshake() != nil {
			return
		}
		fmt.Fprintf(tc, "fence %s, sni %s\n", name, tc.ConnectionState().ServerName)
	})
	f.targets[httpPort] = serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "fence %s, host %s", name, r.Host)
	}))
	f.targets[echoPort] = serveTCP(t, func(c net.Conn) {
		defer c.Close()
		io.Copy(c, c)
		c.(*net.TCPConn).CloseWrite()
	})
	f.targets[sshPort] = serveTCP(t, func(c net.Conn) {
		defer c.Close()
		fmt.Fprintf(c, "SSH-2.0-fence-%s\r\n", name)
		io.Copy(c, c)
	})
	udp := serveUDPEcho(t, name+":")
	f.targets[netip.AddrPortFrom(targetIP, 53)] = udp
	return f
}

// fence returns f as a Fence of the Forwarder.
func (f *fakeFence) fence() Fence {
	return Fence{Name: f.name, Dialer: f, Prefixes: []netip.Prefix{subnet}, UDPIdleTimeout: 500 * time.Millisecond}
}

var errRefused = errors.New("fake fence refuses")

// DialTCP implements Dialer.
func (f *fakeFence) DialTCP(ctx context.Context, addr netip.AddrPort) (net.Conn, error) {
	f.dials.Add(1)
	if f.fail.Load() {
		return nil, errRefused
	}
	to, ok := f.targets[addr]
	if !ok {
		to = "127.0.0.1:1" // nothing listens: refused
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", to)
	if err != nil {
		return nil, err
	}
	f.open.Add(1)
	return &countedConn{Conn: c, n: &f.open}, nil
}

// DialUDP implements Dialer.
func (f *fakeFence) DialUDP(addr netip.AddrPort) (net.Conn, error) {
	f.dials.Add(1)
	if f.fail.Load() {
		return nil, errRefused
	}
	c, err := net.Dial("udp", f.targets[addr])
	if err != nil {
		return nil, err
	}
	f.open.Add(1)
	return &countedConn{Conn: c, n: &f.open}, nil
}

// countedConn counts itself open until its first Close.
type countedConn struct {
	net.Conn
	n    *atomic.Int64
	once sync.Once
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.n.Add(-1) })
	return err
}

func (c *countedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Close()
}

// serveTCP serves each connection of a new loopback listener with h until
// cleanup, which closes the listener and the open connections and waits.
func serveTCP(t *testing.T, h func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = map[net.Conn]bool{}
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				h(c)
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

func serveHTTP(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() { srv.Serve(ln); close(done) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return ln.Addr().String()
}

func serveUDPEcho(t *testing.T, prefix string) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			pc.WriteTo(append([]byte(prefix), buf[:n]...), from)
		}
	}()
	t.Cleanup(func() { pc.Close(); <-done })
	return pc.LocalAddr().String()
}

// testCert returns a self-signed certificate for names and a pool that
// trusts it.
func testCert(t *testing.T, names ...string) (tls.Certificate, *x509.CertPool) {
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
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// newTestForwarder returns a Forwarder with fences attached under IDs 1,
// 2, …; closed on cleanup, and no goroutine of it left behind.
func newTestForwarder(t *testing.T, cfg Config, fences ...*fakeFence) *Forwarder {
	t.Helper()
	before := runtime.NumGoroutine()
	f := New(cfg)
	for i, fe := range fences {
		if err := f.AttachFence(uint32(i+1), fe.fence()); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		f.Close()
		if st := f.Stats(); st.Listeners != 0 || st.Routes != 0 || st.TCPConns != 0 || st.UDPFlows != 0 {
			t.Errorf("after Close: %+v", st)
		}
		for _, fe := range fences {
			if n := fe.open.Load(); n != 0 {
				t.Errorf("fence %s: %d connections left open after Close", fe.name, n)
			}
		}
		// The Forwarder's goroutines have ended (the test's servers
		// end in later cleanups, so allow for them).
		deadline := time.Now().Add(10 * time.Second)
		for runtime.NumGoroutine() > before+8*len(fences)+8 {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				t.Errorf("goroutines: %d before, %d after Close:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
	return f
}

// mustAdd adds fw and returns it as running.
func mustAdd(t *testing.T, f *Forwarder, fw Forward) Forward {
	t.Helper()
	got, err := f.Add(fw)
	if err != nil {
		t.Fatalf("Add %v: %v", fw, err)
	}
	return got
}

// tlsHello connects to addr with TLS for server name sni (verified
// against pool) and returns the server's first line.
func tlsHello(addr, sni string, pool *x509.CertPool) (string, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: sni, RootCAs: pool})
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

// httpGet requests http://host/ from addr and returns the body.
func httpGet(addr, host string) (string, error) {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	resp, err := hc.Get("http://" + host + "/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// expectClosed fails unless c's peer closes it (EOF or reset) within 10 s.
func expectClosed(t *testing.T, c net.Conn, what string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("%s: connection still open", what)
	}
}

// waitFor polls cond until it holds or fails after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
