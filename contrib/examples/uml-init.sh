#!/bin/sh
# uml-init.sh: first process of a User Mode Linux guest booted by
# uml-guest.sh. It brings vec0 up (UML leaves it down), gives it
# $corral_addr (default 10.0.2.16/24; "dhcp" asks the fence's gateway with
# busybox udhcpc), pings $corral_ping (default 10.0.2.2, the gateway) and
# powers the guest off. Kernel parameters set both:
#   uml-guest.sh SOCKET MAC uml-init.sh corral_addr=10.0.2.17/24 corral_ping=10.0.2.2
PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
ip link set lo up
ip link set vec0 up
ip -br link show vec0
addr=${corral_addr:-10.0.2.16/24}
if [ "$addr" = dhcp ]; then
	busybox udhcpc -i vec0 -q -n -f -t 5 -s /bin/true >/dev/null 2>&1 &&
		echo "corral-example: dhcp ok" || echo "corral-example: dhcp failed"
	ip addr flush dev vec0
	addr=10.0.2.16/24
fi
ip addr add "$addr" dev vec0
if ping -c 3 -W 3 "${corral_ping:-10.0.2.2}"; then
	echo "corral-example: ping ok"
else
	echo "corral-example: ping failed"
fi
echo o >/proc/sysrq-trigger # power off
sleep 30
