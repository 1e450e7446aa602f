#!/bin/sh
# passt-gateway.sh SOCKET [PASST OPTIONS...]
#
# Runs passt (Debian: apt install passt) as a fence's way out: passt
# listens on the unix socket SOCKET with QEMU's 4-byte length framing, and
# corral dials it like a QEMU server-mode socket. Everything on the fence
# then gets passt's DHCP (the host's address and default gateway), DNS
# forwarding, and user-mode NAT to the host's network — no root needed
# for either. In the corral configuration, on a fence without corral's own
# gateway (two DHCP servers would race):
#
#   fences:
#     - name: out
#       id: 3
#       listen: ["unix:///run/user/1000/corral/out.sock"]
#       dial: ["unix:///run/user/1000/passt.sock"]
#
# corral re-dials when passt restarts. passt serves one client at a time.
# passt started as root switches to nobody *before* it binds SOCKET, and
# Debian 12's passt then still says "bound" when the bind failed; so as
# root this script creates SOCKET's directory for nobody (every directory
# above it must be searchable by nobody). gvproxy offers the same kind of
# socket (gvproxy -listen-qemu unix://SOCKET); not tested here: Debian 12
# does not package it.
# Tested by e2e TestE2EExamplePasst (DHCP and ping through it).
set -eu
if [ $# -lt 1 ]; then
	echo "usage: $0 SOCKET [PASST OPTIONS...]" >&2
	exit 2
fi
sock=$1
shift
dir=$(dirname "$sock")
if [ "$(id -u)" = 0 ] && [ ! -d "$dir" ]; then
	install -d -o nobody -m 0700 "$dir"
fi
rm -f "$sock"
exec passt --foreground --socket "$sock" "$@"
