//go:build tools

// Package tools pins the modules corral uses before every package imports them; delete when all are imported.
package tools
import (
 _ "gvisor.dev/gvisor/pkg/tcpip/stack"
 _ "gvisor.dev/gvisor/pkg/tcpip/link/channel"
 _ "github.com/inetaf/tcpproxy"
 _ "github.com/spf13/cobra"
 _ "github.com/spf13/viper"
 _ "github.com/mdlayher/vsock"
 _ "github.com/miekg/dns"
 _ "golang.org/x/sys/unix"
 _ "golang.org/x/net/ipv4"
 _ "golang.org/x/sync/errgroup"
 _ "golang.org/x/crypto/chacha20poly1305"
 _ "github.com/prometheus/client_golang/prometheus"
 _ "github.com/google/gopacket/pcapgo"
)

