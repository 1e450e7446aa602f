package main

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/spf13/cobra"

	"github.com/corralnet/corral/admin"
	"github.com/corralnet/corral/attach"
)

// Ready-to-paste attach lines (issue 11 item 2): for every address of
// every fence, the command line of each client that speaks its framing —
// QEMU's -netdev (and -device), vfkit, krunkit, Lima, User Mode Linux,
// corral plug — with the real path or port the running switch bound.
// `corral run` logs them once everything is bound, just before "corral
// ready" (and prints them for people when its stderr is a terminal); GET /v1/attach serves them and `corral
// attach-lines [FENCE]` prints them.

// exampleMAC is the MAC in the lines: QEMU's default. Every VM of a fence
// needs its own.
const exampleMAC = "52:54:00:12:34:56"

// The clients of the lines (admin.AttachLine.Client).
const (
	clientQEMU          = "qemu"           // QEMU ≥ 7.2, stream, dgram
	clientQEMUReconnect = "qemu-reconnect" // QEMU ≥ 9.2, stream with reconnect-ms
	clientQEMUSocket    = "qemu-socket"    // QEMU's older -netdev socket
	clientLima          = "lima"           // lima.yaml, vmType qemu and vz
	clientVfkit         = "vfkit"
	clientKrunkit       = "krunkit"
	clientUML           = "uml"   // User Mode Linux, vector driver
	clientPlug          = "plug"  // corral plug: a Linux TAP
	clientGuest         = "guest" // inside a guest (vsock)
)

// attachClients lists the clients in the order lines are given.
var attachClients = []string{clientQEMU, clientQEMUReconnect, clientQEMUSocket, clientLima, clientVfkit, clientKrunkit, clientUML, clientPlug, clientGuest}

// The notes of the lines.
const (
	noteQEMUStream = "Start corral first: a QEMU with server=off that starts before corral listens boots with a dead NIC and no error, and QEMU 7.2 never reconnects (QEMU ≥ 9.2: use qemu-reconnect; or let corral dial a QEMU started with server=on)."
	noteReconnect  = "QEMU ≥ 9.2 (8.0 to 9.1: reconnect=1 instead of reconnect-ms=1000): the NIC connects whenever corral listens, and again after corral restarts."
	noteQEMUSocket = "QEMU's older socket backend; start corral first, it never reconnects."
	noteQEMUDgram  = "local.path is this VM's own socket, one per VM; QEMU leaves it behind: remove it before starting the VM again."
	noteQEMUUDP    = "The local port (local.port, localaddr) is this VM's own, one per VM."
	noteQEMUDial   = "corral dials this QEMU (server=on) and re-dials it with backoff: start either first; the guest keeps its NIC across corral restarts."
	noteLima       = "In lima.yaml (vmType: qemu or vz); the guest's interface is lima0. Start corral before limactl start."
	noteVfkit      = "vfkit (and krunkit's unixSocketPath=, which also turns on offloading): a connected datagram socket that starts with vfkit's VFKT greeting."
	noteKrunkitDg  = "krunkit with type= (added in 2025): a plain datagram socket; offloading stays off."
	noteKrunkitSt  = "krunkit with type= (added in 2025): 4-byte length framing like QEMU's; offloading stays off."
	noteUML        = "On User Mode Linux's command line; SRC is the VM's own socket, one per VM. In the guest: ip link set vec0 up."
	notePlug       = "A Linux TAP device here or in a network namespace (--netns NS); needs CAP_NET_ADMIN. --stdio instead cables stdin/stdout (ssh)."
	noteGuest      = "Inside a Linux guest with a vsock device (QEMU: -device vhost-vsock-pci,guest-cid=3); 2 is the host's context ID."
)

// qemuDevice is the -device half of every QEMU line.
const qemuDevice = "-device virtio-net-pci,netdev=n0,mac=" + exampleMAC

// attachLines returns the lines for address a of a fence: one corral
// listens on, or, when dial, one corral dials (the client listens).
func attachLines(a attach.Addr, dial bool) []admin.AttachLine {
	if dial {
		return dialLines(a)
	}
	var out []admin.AttachLine
	add := func(client, line, note string) {
		out = append(out, admin.AttachLine{Client: client, Line: line, Note: note})
	}
	plug := func() {
		dst := a
		if a.Scheme == attach.TCP || a.Scheme == attach.UDP {
			host, port := connectHostPort(a.Target)
			dst.Target = net.JoinHostPort(host, port)
		}
		add(clientPlug, "corral plug "+shellQuote(dst.String())+" --tap tap0", notePlug)
	}
	switch a.Scheme {
	case attach.Unix:
		p := qemuValue(a.Target)
		add(clientQEMU, qemuNetdev("stream,id=n0,server=off,addr.type=unix,addr.path="+p), noteQEMUStream)
		add(clientQEMUReconnect, qemuNetdev("stream,id=n0,server=off,reconnect-ms=1000,addr.type=unix,addr.path="+p), noteReconnect)
		add(clientLima, "networks: [{socket: "+strconv.Quote(a.Target)+"}]", noteLima)
		add(clientKrunkit, "--device "+shellQuote("virtio-net,type=unixstream,path="+a.Target+",mac="+exampleMAC), noteKrunkitSt)
		plug()
	case attach.TCP:
		host, port := connectHostPort(a.Target)
		inet := "addr.type=inet,addr.host=" + qemuValue(host) + ",addr.port=" + port
		add(clientQEMU, qemuNetdev("stream,id=n0,server=off,"+inet), noteQEMUStream)
		add(clientQEMUReconnect, qemuNetdev("stream,id=n0,server=off,reconnect-ms=1000,"+inet), noteReconnect)
		add(clientQEMUSocket, qemuNetdev("socket,id=n0,connect="+qemuValue(net.JoinHostPort(host, port))), noteQEMUSocket)
		plug()
	case attach.Unixgram:
		local := localPath(a.Target)
		add(clientQEMU, qemuNetdev("dgram,id=n0,local.type=unix,local.path="+qemuValue(local)+",remote.type=unix,remote.path="+qemuValue(a.Target)), noteQEMUDgram)
		add(clientVfkit, "--device "+shellQuote("virtio-net,unixSocketPath="+a.Target+",mac="+exampleMAC), noteVfkit)
		add(clientKrunkit, "--device "+shellQuote("virtio-net,type=unixgram,path="+a.Target+",mac="+exampleMAC), noteKrunkitDg)
		plug()
	case attach.UDP:
		host, port := connectHostPort(a.Target)
		// QEMU's dgram and socket backends speak IPv4 only.
		if ip, err := netip.ParseAddr(host); err != nil || ip.Is4() {
			lport := localPort(port)
			add(clientQEMU, qemuNetdev("dgram,id=n0,local.type=inet,local.host="+qemuValue(host)+",local.port="+lport+
				",remote.type=inet,remote.host="+qemuValue(host)+",remote.port="+port), noteQEMUUDP)
			add(clientQEMUSocket, qemuNetdev("socket,id=n0,udp="+qemuValue(host)+":"+port+",localaddr="+qemuValue(host)+":"+lport), noteQEMUUDP)
		}
		plug()
	case attach.Unixpacket:
		add(clientUML, shellQuote("vec0:transport=bess,dst="+a.Target+",src="+localPath(a.Target)+",mac="+exampleMAC), noteUML)
		plug()
	case attach.Vsock:
		port := a.Target[strings.LastIndexByte(a.Target, ':')+1:]
		add(clientGuest, "corral plug vsock://2:"+port+" --tap eth1", noteGuest)
	}
	return out
}

// dialLines returns the lines of an address corral dials: the clients
// that listen there.
func dialLines(a attach.Addr) []admin.AttachLine {
	var line string
	switch a.Scheme {
	case attach.Unix:
		line = qemuNetdev("stream,id=n0,server=on,addr.type=unix,addr.path=" + qemuValue(a.Target))
	case attach.TCP:
		host, port, _ := net.SplitHostPort(a.Target)
		line = qemuNetdev("stream,id=n0,server=on,addr.type=inet,addr.host=" + qemuValue(host) + ",addr.port=" + port)
	default:
		return nil
	}
	return []admin.AttachLine{{Client: clientQEMU, Line: line, Note: noteQEMUDial}}
}

// qemuNetdev is a QEMU line: -netdev value (shell-quoted when needed) and
// the device.
func qemuNetdev(value string) string { return "-netdev " + shellQuote(value) + " " + qemuDevice }

// qemuValue escapes a value inside QEMU's comma-separated options.
func qemuValue(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// connectHostPort is where a client on this host connects to reach the
// tcp or udp listen address target: a wildcard host becomes loopback.
func connectHostPort(target string) (host, port string) {
	host, port, _ = net.SplitHostPort(target)
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return host, port
}

// localPort suggests the local UDP port of a datagram client of port:
// the next one.
func localPort(port string) string {
	n, _ := strconv.Atoi(port)
	if n >= 65535 {
		return strconv.Itoa(n - 1)
	}
	return strconv.Itoa(n + 1)
}

// maxSocketPath bounds a suggested socket path (sockaddr_un holds 104
// bytes on macOS and the BSDs, 108 on Linux, with the NUL).
const maxSocketPath = 103

// localPath suggests the socket path of one VM's end of a datagram or
// seqpacket socket at path: next to it, "lab.dgram" → "lab-vm1.dgram";
// in /tmp when that would be too long.
func localPath(path string) string {
	dir, base := filepath.Split(path)
	ext := filepath.Ext(base)
	name := strings.TrimSuffix(base, ext) + "-vm1" + ext
	if p := filepath.Join(dir, name); len(p) <= maxSocketPath {
		return p
	}
	return filepath.Join("/tmp", "corral-vm1"+ext)
}

// shellQuote quotes s for a POSIX shell when it holds anything but
// letters, digits and @%+=:,./_-.
func shellQuote(s string) string {
	safe := s != ""
	for i := 0; i < len(s) && safe; i++ {
		c := s[i]
		safe = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("@%+=:,./_-", c) >= 0
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// attachPoints are the running switch's addresses per fence: the
// listeners as bound and the dialed addresses. It implements
// admin.Attachments.
type attachPoints struct {
	mu     sync.Mutex
	fences []*attachFence // configuration order
}

type attachFence struct {
	id    uint32
	name  string
	addrs []attachPoint
}

type attachPoint struct {
	addr attach.Addr
	dial bool
}

func newAttachPoints(fences []Fence) *attachPoints {
	p := &attachPoints{}
	for _, f := range fences {
		p.fences = append(p.fences, &attachFence{id: f.ID, name: f.Name})
	}
	return p
}

// add records address a of fence id: a bound listener, or with dial one
// corral dials.
func (p *attachPoints) add(id uint32, a attach.Addr, dial bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, f := range p.fences {
		if f.id == id {
			f.addrs = append(f.addrs, attachPoint{addr: a, dial: dial})
		}
	}
}

// Attachments implements admin.Attachments: every fence with its
// addresses, listened ones first, and their lines.
func (p *attachPoints) Attachments() []admin.FenceAttach {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]admin.FenceAttach, 0, len(p.fences))
	for _, f := range p.fences {
		fa := admin.FenceAttach{Fence: f.id, Name: f.name, Addrs: []admin.AttachAddr{}}
		pts := slices.Clone(f.addrs)
		slices.SortStableFunc(pts, func(a, b attachPoint) int {
			switch {
			case a.dial == b.dial:
				return 0
			case b.dial:
				return -1
			}
			return 1
		})
		for _, pt := range pts {
			lines := attachLines(pt.addr, pt.dial)
			if lines == nil {
				lines = []admin.AttachLine{}
			}
			fa.Addrs = append(fa.Addrs, admin.AttachAddr{Addr: pt.addr.String(), Dial: pt.dial, Lines: lines})
		}
		out = append(out, fa)
	}
	return out
}

// announceAttach logs every address's lines (one record per address) and,
// when human is not nil, prints them there for people.
func (rt *instance) announceAttach(human io.Writer) {
	fas := rt.points.Attachments()
	for _, fa := range fas {
		for _, ad := range fa.Addrs {
			if len(ad.Lines) == 0 {
				continue
			}
			args := []any{"fence", fa.Name, "addr", ad.Addr}
			if ad.Dial {
				args = append(args, "dial", true)
			}
			for _, l := range ad.Lines {
				args = append(args, l.Client, l.Line)
			}
			rt.log.Info("attach", args...)
		}
	}
	if human != nil {
		fmt.Fprintln(human, "\nAttach VMs with these lines (corral attach-lines prints them again):")
		printAttach(human, fas)
		fmt.Fprintln(human)
	}
}

// printAttach prints fences' addresses and their lines; each line's
// note is printed once, at the end, and referred to by its number.
func printAttach(w io.Writer, fas []admin.FenceAttach) {
	var notes []string
	ref := map[string]int{}
	for i, fa := range fas {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "fence %s (%d)\n", fa.Name, fa.Fence)
		if len(fa.Addrs) == 0 {
			fmt.Fprintln(w, "  no addresses")
		}
		for _, ad := range fa.Addrs {
			if ad.Dial {
				fmt.Fprintf(w, "  %s (corral dials it)\n", ad.Addr)
			} else {
				fmt.Fprintf(w, "  %s\n", ad.Addr)
			}
			if len(ad.Lines) == 0 {
				fmt.Fprintln(w, "    no client line for this address")
			}
			for _, l := range ad.Lines {
				label := l.Client
				if l.Note != "" {
					n, ok := ref[l.Note]
					if !ok {
						notes = append(notes, l.Note)
						n = len(notes)
						ref[l.Note] = n
					}
					label += " [" + strconv.Itoa(n) + "]"
				}
				fmt.Fprintf(w, "    %-19s %s\n", label, l.Line)
			}
		}
	}
	if len(notes) == 0 {
		return
	}
	fmt.Fprintln(w, "\nEvery VM needs its own MAC within its fence: change "+exampleMAC+" (QEMU's default) for all but one.")
	for i, n := range notes {
		fmt.Fprintf(w, "[%d] %s\n", i+1, n)
	}
}

// printAttachClient prints only client's lines, one per line, for
// scripts: qemu-system-x86_64 … $(corral attach-lines lab --client qemu).
func printAttachClient(w io.Writer, fas []admin.FenceAttach, client string) error {
	n := 0
	for _, fa := range fas {
		for _, ad := range fa.Addrs {
			for _, l := range ad.Lines {
				if l.Client == client {
					fmt.Fprintln(w, l.Line)
					n++
				}
			}
		}
	}
	if n == 0 {
		return fmt.Errorf("no %s line: no address here speaks its framing that way", client)
	}
	return nil
}

func (c *cli) newAttachLinesCmd() *cobra.Command {
	var client string
	cmd := &cobra.Command{
		Use:   "attach-lines [FENCE]",
		Short: "Print ready-to-paste QEMU, vfkit, krunkit, Lima and UML lines for a running switch's addresses",
		Long: `Print, for every address of a running switch's fences (or of FENCE),
the command lines that attach a VM to it: QEMU's -netdev and -device,
vfkit's and krunkit's --device, Lima's networks entry, User Mode Linux's
vec0, corral plug. Paths and ports are those the switch bound.

With --client NAME only that client's lines are printed, one per line:
` + strings.Join(attachClients, ", ") + `.`,
		Example: `  corral attach-lines
  qemu-system-x86_64 -m 1G disk.img $(corral attach-lines default --client qemu)`,
		Args: optionalFence,
		RunE: func(cmd *cobra.Command, args []string) error {
			if client != "" && !slices.Contains(attachClients, client) {
				return usageError{fmt.Errorf("--client %q: want one of %s", client, strings.Join(attachClients, ", "))}
			}
			ac, err := c.adminClient(cmd)
			if err != nil {
				return err
			}
			fence := ""
			if len(args) == 1 {
				fence = args[0]
			}
			fas, err := ac.Attach(cmd.Context(), fence)
			if err != nil {
				return err
			}
			if asJSON, _ := cmd.Flags().GetBool("json"); asJSON {
				return admin.EncodeJSON(c.stdout, fas)
			}
			if client != "" {
				return printAttachClient(c.stdout, fas, client)
			}
			printAttach(c.stdout, fas)
			return nil
		},
	}
	cmd.Flags().StringVar(&client, "client", "", "print only this client's lines ("+strings.Join(attachClients, ", ")+")")
	return cmd
}

// terminalWriter returns w when it is a terminal, else nil: corral run
// prints the lines for people only there, so logs and tests stay as
// they are.
func terminalWriter(w io.Writer) io.Writer {
	f, ok := w.(*os.File)
	if !ok || !isTerminal(f) {
		return nil
	}
	return w
}
