#!/bin/sh
# ssh-cable.sh LOCAL_SOCKET [USER@]HOST REMOTE_SOCKET [SSH OPTIONS...]
#
# Cables a fence of the local corral (its unix:// listen socket
# LOCAL_SOCKET) to a fence of a corral on HOST (REMOTE_SOCKET there): both
# ends are `corral plug --stdio` (4-byte length framing), joined by socat,
# the far one over ssh. Either switch may restart: each plug re-dials its
# switch. Frames cross unchanged; the two fences become one segment.
#
# The line it runs, to paste (socat splits EXEC: arguments at ':' and ',',
# so those are escaped with a backslash — unescaped, socat says "wrong
# number of parameters (2 instead of 1)"):
#
#   socat EXEC:"corral plug unix\:///run/user/1000/corral/lab.sock --stdio" \
#         EXEC:"ssh host1 corral plug unix\:///run/user/1000/corral/lab.sock --stdio"
#
# CORRAL and REMOTE_CORRAL name the corral binaries (default: corral).
# Tested by e2e TestE2EExampleSSHCable (sshd on loopback, two corrals).
set -eu
if [ $# -lt 3 ]; then
	echo "usage: $0 LOCAL_SOCKET [USER@]HOST REMOTE_SOCKET [SSH OPTIONS...]" >&2
	exit 2
fi
# esc escapes what socat's address parser treats specially.
esc() { printf '%s' "$1" | sed 's/[\\:,!"'"'"'(){}[]/\\&/g'; }
local_sock=$(esc "$1")
host=$(esc "$2")
remote_sock=$(esc "$3")
shift 3
opts=
for o in "$@"; do
	opts="$opts $(esc "$o")"
done
exec socat \
	EXEC:"$(esc "${CORRAL:-corral}") plug unix\\://$local_sock --stdio" \
	EXEC:"ssh$opts $host $(esc "${REMOTE_CORRAL:-corral}") plug unix\\://$remote_sock --stdio"
