#!/bin/sh
# uml-guest.sh SOCKET MAC INIT [KERNEL PARAMETERS...]
#
# Boots a User Mode Linux guest (Debian: apt install user-mode-linux) whose
# vec0 is a port of the corral fence listening on unixpacket://SOCKET: the
# vector driver's BESS transport, one frame per SOCK_SEQPACKET message.
# The guest's root is the host's / read-only (hostfs) and INIT its first
# process; contrib/examples/uml-init.sh is one that brings vec0 up.
# Further arguments go on the kernel command line; unknown NAME=VALUE ones
# reach INIT's environment (uml-init.sh reads corral_addr, corral_ping).
#
# In the corral configuration:  listen: ["unixpacket:///run/user/1000/corral/lab.seq"]
# The vec0 line it gives the kernel:
#   vec0:transport=bess,src=/tmp/uml-1234.seq,dst=/run/user/1000/corral/lab.seq,mac=52:54:00:12:34:60
# (src is the guest's own socket; mac= must be unique in the fence: without
# it UML picks a random one per boot and the gateway hands out a new lease.)
#
# UML maps its memory from a file in TMPDIR, which must allow exec
# (/tmp, not a noexec /dev/shm). Tested by e2e TestE2EExampleUML.
set -eu
if [ $# -lt 3 ]; then
	echo "usage: $0 SOCKET MAC INIT [KERNEL PARAMETERS...]" >&2
	exit 2
fi
sock=$1 mac=$2 init=$3
shift 3
own=${UML_SOCKET:-${TMPDIR:-/tmp}/uml-$$.seq}
rm -f "$own"
export TMPDIR="${TMPDIR:-/tmp}"
exec "${UML:-linux.uml}" mem="${UML_MEM:-96M}" root=/dev/root rootfstype=hostfs rootflags=/ ro \
	init="$init" con=null con0=fd:0,fd:1 \
	"vec0:transport=bess,src=$own,dst=$sock,mac=$mac" "$@"
