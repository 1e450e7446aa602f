//go:build tools

// Package tools pins the modules corral uses before every package imports them; delete when all are imported.
package tools

import (
	_ "github.com/google/gopacket/pcapgo"
	_ "github.com/inetaf/tcpproxy"
	_ "github.com/mdlayher/vsock"
	_ "github.com/miekg/dns"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/spf13/cobra"
	_ "github.com/spf13/viper"
	_ "golang.org/x/crypto/chacha20poly1305"
	_ "golang.org/x/net/ipv4"
	_ "golang.org/x/sync/errgroup"
	_ "golang.org/x/sys/unix"
	_ "gvisor.dev/gvisor/pkg/tcpip/link/channel"
	_ "gvisor.dev/gvisor/pkg/tcpip/stack"
)
