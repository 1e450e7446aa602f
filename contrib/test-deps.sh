#!/bin/sh
# Install what corral's tests need, when it is missing, and build the QEMU
# test guest image. Idempotent and quick when everything is present. Runs on
# Debian 12 as root (make test calls it); needs only the package registries.
#
# Engineers: append the apt packages your tests need to PACKAGES.
set -eu

PACKAGES="qemu-system-x86 iproute2 busybox-static cpio xz-utils kmod iperf3 tcpdump iputils-ping tshark curl openssl socat openssh-client openssh-server user-mode-linux passt prometheus systemd"
# Kernel modules the tests use when the kernel has them (not fatal if not).
MODULES="tun veth vsock_loopback"

here=$(cd "$(dirname "$0")" && pwd)
t0=$(date +%s%N)

why() {
	case "$1" in
	qemu-system-x86) echo "QEMU guests of the end-to-end tests" ;;
	iproute2) echo "network namespaces, veth and TAP devices" ;;
	busybox-static) echo "the test guest's initramfs" ;;
	cpio) echo "packing the test guest's initramfs" ;;
	xz-utils) echo "unpacking the guest kernel" ;;
	kmod) echo "modinfo and modprobe" ;;
	iperf3) echo "TCP throughput tests and benchmarks" ;;
	tcpdump) echo "checking what goes on the wire" ;;
	iputils-ping) echo "ping inside network namespaces" ;;
	tshark) echo "decoding captures with the Wireshark dissector of contrib/wireshark" ;;
	curl) echo "a real SOCKS5 client (--socks5-hostname) and name resolution inside namespaces" ;;
	openssl) echo "TLS servers in namespaces behind SNI port forwards" ;;
	socat) echo "the ssh cable example (contrib/examples/ssh-cable.sh)" ;;
	openssh-client | openssh-server) echo "the ssh cable example, through a throwaway sshd on loopback" ;;
	user-mode-linux) echo "the User Mode Linux example (contrib/examples/uml-guest.sh)" ;;
	passt) echo "passt as a fence's outside gateway (contrib/examples/passt-gateway.sh)" ;;
	prometheus) echo "promtool check metrics on corral's /metrics" ;;
	systemd) echo "systemd-analyze verify of contrib/systemd's units" ;;
	*) echo "needed by the tests" ;;
	esac
}

installed() {
	dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null | grep -q '^ii'
}

missing=
for p in $PACKAGES; do
	installed "$p" || missing="$missing $p"
done
if [ -n "$missing" ]; then
	for p in $missing; do
		echo "installing for the tests: $p ($(why "$p"))"
	done
	if [ "$(id -u)" != 0 ]; then
		echo "test-deps.sh: not root; install these as root:$missing" >&2
		exit 1
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q >/dev/null
	# shellcheck disable=SC2086 # one word per package
	apt-get install -y -q --no-install-recommends $missing >/dev/null
	for p in $missing; do
		installed "$p" || { echo "test-deps.sh: $p did not install" >&2; exit 1; }
	done
fi

if [ ! -e /proc/modules ]; then
	echo "note: kernel $(uname -r) cannot load modules; the tests use what is built in"
elif [ "$(id -u)" = 0 ]; then
	for m in $MODULES; do
		[ -d "/sys/module/$m" ] && continue
		grep -q "/$m.ko" "/lib/modules/$(uname -r)/modules.builtin" 2>/dev/null && continue
		modprobe -q "$m" 2>/dev/null || echo "note: kernel module $m not available (tests that need it say so)"
	done
fi

"$here/guest/build.sh"

t1=$(date +%s%N)
echo "test dependencies ready in $(((t1 - t0) / 1000000)) ms"
