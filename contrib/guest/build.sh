#!/bin/sh
# Build corral's QEMU test guest: Debian's kernel (as an uncompressed ELF
# vmlinux, which QEMU boots through its PVH entry, ~3 s faster under TCG
# than vmlinuz) and a busybox initramfs whose /init loads the virtio-net
# modules, brings eth0 up, runs a test script passed base64(gzip) on the
# kernel command line (corral_script=...; or corral_script=@ and the file
# /corral/script in a cpio archive appended to the initrd), prints
# "CORRAL-RESULT: <status>" on the console and powers off.
#
# Usage: contrib/guest/build.sh [OUTDIR]    (default: <repo>/.cache/guest)
# Outputs OUTDIR/vmlinux and OUTDIR/initrd.img. Cached: nothing is rebuilt
# while the kernel package version and this script are unchanged.
# Needs (Debian 12): apt-get, dpkg-deb, busybox-static, cpio, xz-utils,
# gzip, kmod (modinfo); contrib/test-deps.sh installs them.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:-$root/.cache/guest}
mkdir -p "$out"
out=$(cd "$out" && pwd)
t0=$(date +%s%N)

# The virtio-net stack of Debian's kernel is modules (=m); this is a load
# order that works. Dependencies missing from it are added from modinfo's
# depends= (the .deb ships no modules.dep).
MODULES="virtio_ring virtio failover net_failover virtio_net virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci"

die() { echo "guest/build.sh: $*" >&2; exit 1; }
for c in apt-get apt-cache dpkg-deb cpio xz gzip modinfo sha256sum; do
	command -v "$c" >/dev/null 2>&1 || die "missing $c; run contrib/test-deps.sh"
done
dpkg -s busybox-static >/dev/null 2>&1 || die "busybox-static is not installed; run contrib/test-deps.sh"
busybox=$(command -v busybox) || die "no busybox"

# One build at a time per OUTDIR (test binaries of several packages may
# ask for the image at once).
if command -v flock >/dev/null 2>&1; then
	exec 9>"$out/.lock"
	flock 9
fi

kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '$1 == "Depends:" && $2 ~ /^linux-image-/ { print $2; exit }')
if [ -z "$kpkg" ]; then
	echo "guest/build.sh: apt does not know linux-image-amd64; running apt-get update"
	apt-get update -q >/dev/null
	kpkg=$(apt-cache depends linux-image-amd64 | awk '$1 == "Depends:" && $2 ~ /^linux-image-/ { print $2; exit }')
fi
[ -n "$kpkg" ] || die "cannot find the kernel package linux-image-amd64 depends on"
kver=$(apt-cache show --no-all-versions "$kpkg" | awk '$1 == "Version:" { print $2; exit }')
key="$kpkg $kver $(sha256sum "$0" | cut -c1-16) $(sha256sum "$busybox" | cut -c1-16)"

if [ -f "$out/stamp" ] && [ "$(cat "$out/stamp")" = "$key" ] && [ -s "$out/vmlinux" ] && [ -s "$out/initrd.img" ]; then
	echo "guest image cached in $out ($kpkg $kver)"
	exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
chmod 755 "$work" # apt-get download runs as _apt where it can

# The kernel package, downloaded once per version (kept for rebuilds).
mkdir -p "$out/deb"
deb=$(ls "$out/deb/${kpkg}_"*.deb 2>/dev/null | head -n1 || true)
if [ -z "$deb" ] || ! dpkg-deb -f "$deb" Version | grep -qx "$kver"; then
	rm -f "$out/deb/"*.deb
	echo "downloading $kpkg $kver (about 70 MB)"
	sandbox=
	[ "$(id -u)" = 0 ] && sandbox="-o APT::Sandbox::User=root"
	(cd "$work" && apt-get download -q $sandbox "$kpkg=$kver" >/dev/null)
	mv "$work/"*.deb "$out/deb/"
	deb=$(ls "$out/deb/${kpkg}_"*.deb | head -n1)
fi

# Unpack only what is needed: the kernel and the modules the net stack
# can come from.
mkdir "$work/k"
dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$work/k" --wildcards --no-wildcards-match-slash \
	'./boot/vmlinuz-*' \
	'./lib/modules/*/modules.builtin' \
	'./lib/modules/*/kernel/drivers/virtio/*' \
	'./lib/modules/*/kernel/drivers/net/*' \
	'./lib/modules/*/kernel/net/core/*'
vmlinuz=$(ls "$work/k/boot/"vmlinuz-* | head -n1)
kdir=$(ls -d "$work/k/lib/modules/"* | head -n1)

# vmlinux: the xz stream inside vmlinuz (first match of the xz magic
# FD 37 7A 58 5A 00 that decompresses to an ELF file).
found=
for off in $(LC_ALL=C grep -obUaP '\xFD7zXZ\x00' "$vmlinuz" | cut -d: -f1); do
	tail -c +"$((off + 1))" "$vmlinuz" | xz -dc --single-stream >"$work/vmlinux" 2>/dev/null || true
	if [ "$(head -c4 "$work/vmlinux" | od -An -tx1 | tr -d ' \n')" = "7f454c46" ]; then
		found=1
		break
	fi
done
[ -n "$found" ] || die "no xz-compressed ELF kernel found in $vmlinuz"

# Modules, dependencies first.
ird="$work/initrd"
mkdir -p "$ird/bin" "$ird/lib/modules" "$ird/etc/udhcpc" "$ird/usr/share/udhcpc" \
	"$ird/proc" "$ird/sys" "$ird/dev" "$ird/tmp" "$ird/run" "$ird/root"
: >"$work/order"
modfile() { # NAME -> path of NAME.ko* (with - and _ interchangeable)
	local n1 n2
	n1=$(echo "$1" | tr - _)
	n2=$(echo "$1" | tr _ -)
	find "$kdir/kernel" \( -name "$n1.ko" -o -name "$n1.ko.*" -o -name "$n2.ko" -o -name "$n2.ko.*" \) | head -n1
}
addmod() { # NAME: add NAME after its dependencies
	local n f d
	n=$(echo "$1" | tr - _)
	grep -qx "$n" "$work/order" && return 0
	f=$(modfile "$n")
	if [ -z "$f" ]; then
		grep -q "/$n.ko" "$kdir/modules.builtin" 2>/dev/null && return 0
		die "module $n: neither in the package nor built in"
	fi
	for d in $(modinfo -F depends "$f" | tr , ' '); do
		addmod "$d"
	done
	case "$f" in
	*.ko) cp "$f" "$ird/lib/modules/$n.ko" ;;
	*.ko.xz) xz -dc "$f" >"$ird/lib/modules/$n.ko" ;;
	*.ko.gz) gzip -dc "$f" >"$ird/lib/modules/$n.ko" ;;
	*) die "module $f: unsupported compression" ;;
	esac
	echo "$n" >>"$work/order"
}
for m in $MODULES; do addmod "$m"; done
cp "$work/order" "$ird/lib/modules/order"

# busybox and its applets.
cp "$busybox" "$ird/bin/busybox"
for a in $("$busybox" --list-full); do
	case "$a" in bin/busybox) continue ;; esac
	mkdir -p "$ird/$(dirname "$a")"
	ln -sf /bin/busybox "$ird/$a"
done
ln -sf /bin/busybox "$ird/bin/sh"

cat >"$ird/etc/udhcpc/default.script" <<'SCRIPT'
#!/bin/sh
# udhcpc hook: configure the lease (address, routes, resolv.conf).
[ -n "$1" ] || { echo "default.script: called without an event" >&2; exit 1; }
case "$1" in
deconfig)
	ip -4 addr flush dev "$interface"
	ip link set "$interface" up
	;;
bound|renew)
	ip -4 addr flush dev "$interface"
	if [ -n "$mask" ]; then
		ip addr add "$ip/$mask" ${broadcast:+broadcast "$broadcast"} dev "$interface"
	else
		ifconfig "$interface" "$ip" ${subnet:+netmask "$subnet"} ${broadcast:+broadcast "$broadcast"}
	fi
	if [ -n "$router" ]; then
		while ip route del default dev "$interface" 2>/dev/null; do :; done
		for r in $router; do
			ip route add default via "$r" dev "$interface" && break
		done
	fi
	: >/etc/resolv.conf
	[ -n "$domain" ] && echo "search $domain" >>/etc/resolv.conf
	for d in $dns; do
		echo "nameserver $d" >>/etc/resolv.conf
	done
	echo "udhcpc: $interface $ip/${mask:-$subnet} router ${router:-none} dns ${dns:-none}"
	;;
esac
exit 0
SCRIPT
chmod 755 "$ird/etc/udhcpc/default.script"
ln -sf /etc/udhcpc/default.script "$ird/usr/share/udhcpc/default.script"
echo "127.0.0.1 localhost" >"$ird/etc/hosts"
echo "root:x:0:0:root:/root:/bin/sh" >"$ird/etc/passwd"
echo "root:x:0:" >"$ird/etc/group"

cat >"$ird/init" <<'INIT'
#!/bin/sh
# corral test guest: run the script from corral_script= and report.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
exec </dev/console >/dev/console 2>&1
for m in $(cat /lib/modules/order); do
	insmod "/lib/modules/$m.ko" || echo "init: insmod $m failed"
done
arg() { tr ' ' '\n' </proc/cmdline | sed -n "s/^$1=//p" | head -n1; }
name=$(arg corral_name)
[ -n "$name" ] && hostname "$name"
ip link set lo up
i=0
while ! ip link show eth0 >/dev/null 2>&1 && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
ip link set eth0 up 2>/dev/null || echo "init: no eth0"
# The script: base64(gzip) in corral_script=, or, for long ones, the file
# /corral/script of a cpio archive appended to the initrd (corral_script=@).
s=$(arg corral_script)
if [ "$s" = @ ]; then
	cp /corral/script /tmp/script.sh
else
	echo "$s" | base64 -d | gunzip >/tmp/script.sh
fi
echo "CORRAL-START: ${name:-guest}"
sh /tmp/script.sh
rc=$?
echo "CORRAL-RESULT: $rc"
# printk is synchronous: the marker is on the serial line before poweroff.
echo "<2>CORRAL-RESULT: $rc" >/dev/kmsg
poweroff -f
INIT
chmod 755 "$ird/init"

(cd "$ird" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0 | gzip -9) >"$work/initrd.img"
mv "$work/vmlinux" "$out/vmlinux"
mv "$work/initrd.img" "$out/initrd.img"
echo "$key" >"$out/stamp"
t1=$(date +%s%N)
echo "guest image built in $out: $kpkg $kver, modules: $(tr '\n' ' ' <"$work/order")"
echo "vmlinux $(wc -c <"$out/vmlinux") bytes, initrd $(wc -c <"$out/initrd.img") bytes, took $(((t1 - t0) / 1000000)) ms"
