// Command natscan is the guest side of corral's NAT end-to-end tests
// (e2e/natself_linux_test.go): run inside a guest's network namespace, it
// opens many TCP connections to one address at once and holds them, or
// sends one UDP datagram to each of many ports, or probes single
// addresses, and prints what happened on one line.
//
//	natscan tcp ADDR N TIMEOUT   connect N times to ADDR (host:port) at
//	                             once; print "TCP established=E
//	                             refused=R timeout=T other=O"; hold the
//	                             connections until SIGTERM, then close
//	                             them and exit 0
//	natscan udp HOST FIRST N     send one datagram from one socket to each
//	                             of ports FIRST..FIRST+N-1 of HOST; print
//	                             "UDP sent=S"
//	natscan probe tcp|udp ADDR   connect (tcp: and read a line; udp: send
//	                             "probe" and wait 2 s for an answer);
//	                             print "PROBE open" or "PROBE closed ERR"
package main

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fail("usage: natscan tcp|udp|probe ...")
	}
	switch os.Args[1] {
	case "tcp":
		scanTCP()
	case "udp":
		scanUDP()
	case "probe":
		probe()
	default:
		fail("unknown mode " + os.Args[1])
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "natscan:", msg)
	os.Exit(2)
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		fail(err.Error())
	}
	return n
}

func scanTCP() {
	if len(os.Args) != 5 {
		fail("usage: natscan tcp ADDR N TIMEOUT")
	}
	addr, n := os.Args[2], atoi(os.Args[3])
	timeout, err := time.ParseDuration(os.Args[4])
	if err != nil {
		fail(err.Error())
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	var (
		mu                                  sync.Mutex
		conns                               []net.Conn
		established, refused, timedOut, oth int
		wg                                  sync.WaitGroup
	)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.DialTimeout("tcp", addr, timeout)
			mu.Lock()
			defer mu.Unlock()
			var ne net.Error
			switch {
			case err == nil:
				established++
				conns = append(conns, c)
			case errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET):
				refused++
			case errors.As(err, &ne) && ne.Timeout():
				timedOut++
			default:
				oth++
			}
		}()
	}
	wg.Wait()
	fmt.Printf("TCP established=%d refused=%d timeout=%d other=%d\n", established, refused, timedOut, oth)
	<-sig
	for _, c := range conns {
		c.Close()
	}
	fmt.Println("TCP closed")
}

func scanUDP() {
	if len(os.Args) != 5 {
		fail("usage: natscan udp HOST FIRST N")
	}
	host, first, n := os.Args[2], atoi(os.Args[3]), atoi(os.Args[4])
	c, err := net.ListenUDP("udp", nil)
	if err != nil {
		fail(err.Error())
	}
	defer c.Close()
	sent := 0
	for p := first; p < first+n; p++ {
		a, err := net.ResolveUDPAddr("udp", net.JoinHostPort(host, strconv.Itoa(p)))
		if err != nil {
			fail(err.Error())
		}
		if _, err := c.WriteToUDP([]byte("scan"), a); err == nil {
			sent++
		}
		if p%64 == 0 {
			time.Sleep(time.Millisecond) // keep the TAP queue from overflowing
		}
	}
	fmt.Printf("UDP sent=%d\n", sent)
}

func probe() {
	if len(os.Args) != 4 {
		fail("usage: natscan probe tcp|udp ADDR")
	}
	proto, addr := os.Args[2], os.Args[3]
	c, err := net.DialTimeout(proto, addr, 5*time.Second)
	if err != nil {
		fmt.Printf("PROBE closed %v\n", err)
		return
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if proto == "udp" {
		c.Write([]byte("probe"))
		buf := make([]byte, 2048)
		if _, err := c.Read(buf); err != nil {
			fmt.Printf("PROBE closed %v\n", err)
			return
		}
		fmt.Println("PROBE open")
		return
	}
	// A TCP connection that was made: it is open (the NAT would have
	// reset it otherwise); read whatever comes first to be sure.
	line, _ := bufio.NewReader(c).ReadString('\n')
	fmt.Printf("PROBE open %q\n", line)
}
