# table.awk — turns `go test -bench` output of several rounds into Markdown
# tables of medians. Input lines look like
#   BenchmarkSwitch/corral/tput-64B-2  1  1.23 Mpps  0.63 Gbit/s
# Every (benchmark, unit) pair is reduced to the median of its values.

function median(key,    n, i, j, t, a) {
	n = split(vals[key], a, " ")
	if (n == 0) return ""
	for (i = 2; i <= n; i++) {
		t = a[i] + 0
		for (j = i - 1; j >= 1 && a[j] + 0 > t; j--) a[j + 1] = a[j]
		a[j + 1] = t
	}
	if (n % 2) return a[(n + 1) / 2]
	return (a[n / 2] + a[n / 2 + 1]) / 2
}

function get(name, unit) {
	if (!((name SUBSEP unit) in vals)) return ""
	return median(name SUBSEP unit)
}

function fmtnum(v) {
	if (v == "") return "—"
	v += 0
	if (v == 0) return "0"
	if (v >= 100) return sprintf("%.0f", v)
	if (v >= 10) return sprintf("%.1f", v)
	if (v >= 1) return sprintf("%.2f", v)
	return sprintf("%.3f", v)
}

function rounds(name, unit,    n, a) {
	n = split(vals[name SUBSEP unit], a, " ")
	return n
}

# One throughput cell: "1.23 Mpps (0.63 Gbit/s)", plus the share of the
# frames sent that arrived when frames were lost.
function tput(name,    p, g, d, s) {
	p = get(name, "Mpps"); g = get(name, "Gbit/s"); d = get(name, "delivered-%")
	if (p == "") return (name in failed) ? "failed" : "—"
	s = fmtnum(p) " Mpps (" fmtnum(g) " Gbit/s)"
	if (d != "" && d + 0 < 99) s = s sprintf(", %.0f%% delivered", d)
	return s
}

function rtt(name,    a, b) {
	a = get(name, "p50-us"); b = get(name, "p99-us")
	if (a == "") return (name in failed) ? "failed" : "—"
	return fmtnum(a) " / " fmtnum(b) " µs"
}

function gbps(name,    g) {
	g = get(name, "Gbit/s")
	if (g == "") return (name in failed) ? "failed" : "—"
	return fmtnum(g)
}

function iperf(name,    g, r) {
	g = get(name, "Gbit/s"); r = get(name, "retr")
	if (g == "") return (name in failed) ? "failed" : "—"
	return fmtnum(g) " Gbit/s (" fmtnum(r) " retr)"
}

function outin(name,    o, n) {
	o = get(name, "out-Gbit/s"); n = get(name, "in-Gbit/s")
	if (o == "") return (name in failed) ? "failed" : "—"
	return fmtnum(o) " / " fmtnum(n)
}

function ratio(a, b) {
	if (a == "" || b == "" || b + 0 == 0) return "?"
	return fmtnum(a / b)
}

function anyfail(prefix,    k) {
	for (k in failed) if (index(k, prefix "/") == 1) return 1
	return 0
}

/^Benchmark/ {
	name = $1
	sub(/-[0-9]+$/, "", name)
	if (!(name in seen)) { seen[name] = 1; order[++norder] = name }
	for (i = 3; i < NF; i += 2) {
		k = name SUBSEP $(i + 1)
		vals[k] = (k in vals) ? vals[k] " " $i : $i
	}
}

/^ *--- FAIL: Benchmark/ {
	name = $3
	sub(/-[0-9]+$/, "", name)
	failed[name] = 1
	if (!(name in seen)) { seen[name] = 1; order[++norder] = name }
}

END {
	# Switch table: targets in the order they ran.
	nt = 0
	for (i = 1; i <= norder; i++) {
		split(order[i], parts, "/")
		if (parts[1] != "BenchmarkSwitch" || parts[2] == "") continue
		if (!(parts[2] in tseen)) { tseen[parts[2]] = 1; targets[++nt] = parts[2] }
	}
	if (nt) {
		print "### Two ports of one switch (unix stream sockets, length-prefixed frames, many frames per write)"
		print ""
		print "| path | 64-byte frames | 1500-byte frames | round trip p50 / p99 (64 B) |"
		print "|---|---|---|---|"
		for (i = 1; i <= nt; i++) {
			t = "BenchmarkSwitch/" targets[i]
			lbl = targets[i]
			if (lbl == "bare-unix") lbl = "bare unix socket, two processes (one hop: the limit)"
			else if (lbl == "vde-plug") lbl = "vde_switch via vde_plug (2-byte length stream)"
			else if (lbl == "vde-native") lbl = "vde_switch, native datagram protocol"
			else if (lbl == "gvproxy") lbl = "gvproxy's switch"
			printf "| %s | %s | %s | %s |\n", lbl, tput(t "/tput-64B"), tput(t "/tput-1500B"), rtt(t "/rtt-64B")
		}
		print ""
		c = "BenchmarkSwitch/corral/"; gv = "BenchmarkSwitch/gvproxy/"; bs = "BenchmarkSwitch/bare-unix/"
		if (get(c "tput-64B", "Mpps") != "" && get(gv "tput-64B", "Mpps") != "") {
			printf "Against the targets of issue 2: 64-byte frames %s× gvproxy (target 10×); 1500-byte frames %s× gvproxy (target 5×)", \
				ratio(get(c "tput-64B", "Mpps"), get(gv "tput-64B", "Mpps")), ratio(get(c "tput-1500B", "Mpps"), get(gv "tput-1500B", "Mpps"))
			if (get(bs "tput-1500B", "Gbit/s") != "")
				printf " and %s%% of the bare socket (on the way to 50%%)", fmtnum(100 * get(c "tput-1500B", "Gbit/s") / get(bs "tput-1500B", "Gbit/s"))
			if (get(c "rtt-64B", "p50-us") != "")
				printf "; round-trip p50 %s µs (target under 30 µs)", fmtnum(get(c "rtt-64B", "p50-us"))
			print "."
			print ""
		}
		i1 = "BenchmarkSwitch/corral/iperf3-tcp-mtu1500"; i2 = "BenchmarkSwitch/corral/iperf3-tcp-mtu65520"
		if (get(i1, "Gbit/s") != "" || get(i2, "Gbit/s") != "" || (i1 in failed) || (i2 in failed)) {
			printf "Two VMs on one host: iperf3 TCP between two namespaces whose TAPs `corral plug` attaches to one corral: %s at MTU 1500, %s at MTU 65520.\n", iperf(i1), iperf(i2)
			print ""
		}
		print "Throughput counts only frames that reached the receiving port, in a 3 s window after 0.5 s of warm-up; Gbit/s are of Ethernet frame bytes (no length prefix). Round trip: one 64-byte frame port A → port B → echoed back, one at a time."
		print ""
	}
	# Uplink: corral's frames and iperf3 beside the kernel's.
	if (("BenchmarkUplink/corral-frames/tput-64B" SUBSEP "Mpps") in vals || ("BenchmarkUplink/iperf3-tcp/kernel-vxlan" SUBSEP "Gbit/s") in vals || anyfail("BenchmarkUplink")) {
		u = "BenchmarkUplink/"
		print "### Two hosts (network namespaces, veth MTU 1500)"
		print ""
		print "| path | 64-byte frames | 1500-byte frames | round trip p50 / p99 (64 B) | iperf3 TCP between namespaces |"
		print "|---|---|---|---|---|"
		printf "| corral, UDP uplink (ports on two hosts; iperf3 between `corral plug` TAPs, MTU 1500: fragments) | %s | %s | %s | %s |\n", tput(u "corral-frames/tput-64B"), tput(u "corral-frames/tput-1500B"), rtt(u "corral-frames/rtt-64B"), iperf(u "iperf3-tcp/corral-mtu1500")
		printf "| corral, UDP uplink, guest MTU 1440 (no fragments) | | | | %s |\n", iperf(u "iperf3-tcp/corral-mtu1440")
		printf "| corral, sealed UDP uplink, AES-256-GCM (iperf3 at guest MTU 1500: fragments) | %s | %s | %s | %s |\n", tput(u "corral-sealed-frames/tput-64B"), tput(u "corral-sealed-frames/tput-1500B"), rtt(u "corral-sealed-frames/rtt-64B"), iperf(u "iperf3-tcp/corral-sealed-mtu1500")
		printf "| corral, sealed UDP uplink, guest MTU 1415 (no fragments) | | | | %s |\n", iperf(u "iperf3-tcp/corral-sealed-mtu1415")
		printf "| corral, raw uplink (AF_PACKET on the veth) | %s | %s | %s | |\n", tput(u "corral-raw-frames/tput-64B"), tput(u "corral-raw-frames/tput-1500B"), rtt(u "corral-raw-frames/rtt-64B")
		printf "| kernel VXLAN over the same veth (MTU 1450) | | | | %s |\n", iperf(u "iperf3-tcp/kernel-vxlan")
		printf "| bare veth, no tunnel | | | | %s |\n", iperf(u "iperf3-tcp/kernel-veth")
		print ""
		vx = get(u "iperf3-tcp/kernel-vxlan", "Gbit/s")
		c1 = get(u "iperf3-tcp/corral-mtu1500", "Gbit/s"); c2 = get(u "iperf3-tcp/corral-mtu1440", "Gbit/s")
		if (vx != "" && (c1 != "" || c2 != "")) {
			printf "Against the target of issue 3 (half the kernel VXLAN's iperf3 rate): corral carries %s%% of it at guest MTU 1500 and %s%% at 1440.\n", \
				(c1 == "" ? "?" : fmtnum(100 * c1 / vx)), (c2 == "" ? "?" : fmtnum(100 * c2 / vx))
			print ""
		}
		# Issue 9: what sealing costs, same run.
		line = ""
		pu = get(u "corral-frames/tput-1500B", "Gbit/s"); ps = get(u "corral-sealed-frames/tput-1500B", "Gbit/s")
		if (pu != "" && ps != "") line = line sprintf("1500-byte frames %s%% of unsealed", fmtnum(100 * ps / pu))
		pu = get(u "corral-frames/tput-64B", "Mpps"); ps = get(u "corral-sealed-frames/tput-64B", "Mpps")
		if (pu != "" && ps != "") line = line (line == "" ? "" : ", ") sprintf("64-byte frames %s%%", fmtnum(100 * ps / pu))
		s1 = get(u "iperf3-tcp/corral-sealed-mtu1500", "Gbit/s"); s2 = get(u "iperf3-tcp/corral-sealed-mtu1415", "Gbit/s")
		if (c1 != "" && s1 != "") line = line (line == "" ? "" : ", ") sprintf("iperf3 at guest MTU 1500 %s%%", fmtnum(100 * s1 / c1))
		if (c2 != "" && s2 != "") line = line (line == "" ? "" : ", ") sprintf("iperf3 without fragments (1415 vs 1440) %s%%", fmtnum(100 * s2 / c2))
		if (line != "") {
			print "Sealing (issue 9; target: at least 75% of unsealed throughput at 1500 bytes): " line "."
			print ""
		}
	}
	# Gateway: iperf3 guest <-> host loopback.
	ng = 0
	for (i = 1; i <= norder; i++) {
		split(order[i], parts, "/")
		if (parts[1] == "BenchmarkGateway" && parts[2] != "" && !(parts[2] in gseen)) { gseen[parts[2]] = 1; gws[++ng] = parts[2] }
	}
	if (ng) {
		print "### Gateway: iperf3 TCP between a namespace guest and the host's loopback (Gbit/s, out = guest→host)"
		print ""
		print "| gateway | MTU 1500 out / in | MTU 65520 out / in |"
		print "|---|---|---|"
		for (i = 1; i <= ng; i++) {
			g = "BenchmarkGateway/" gws[i]
			printf "| %s | %s | %s |\n", gws[i], outin(g "/mtu1500"), outin(g "/mtu65520")
		}
		print ""
		c = "BenchmarkGateway/corral/"; gv = "BenchmarkGateway/gvproxy/"; sl = "BenchmarkGateway/slirp4netns/"
		line = ""
		for (m = 1; m <= 2; m++) {
			mt = (m == 1) ? "mtu1500" : "mtu65520"
			for (d = 1; d <= 2; d++) {
				dir = (d == 1) ? "out" : "in"
				cv = get(c mt, dir "-Gbit/s"); gvv = get(gv mt, dir "-Gbit/s"); slv = get(sl mt, dir "-Gbit/s")
				if (cv == "") continue
				line = line (line == "" ? "" : "; ") sprintf("%s %s: %s× gvproxy, %s× slirp4netns", mt, dir, ratio(cv, gvv), ratio(cv, slv))
			}
		}
		if (line != "") {
			print "Against the targets of issue 4 (2× gvproxy, ahead of slirp4netns): " line "."
			print ""
		}
	}
	# Storm: fence B while fence A is quiet or under attack (issue 8).
	ns = 0
	for (i = 1; i <= norder; i++) {
		split(order[i], parts, "/")
		if (parts[1] == "BenchmarkStorm" && parts[2] != "" && !(parts[2] in sseen)) { sseen[parts[2]] = 1; smodes[++ns] = parts[2] }
	}
	if (ns) {
		print "### One fence under attack, another measured (unix stream sockets, 64-byte frames)"
		print ""
		print "| fence A | fence B round trip p50 / p99 | fence B 64-byte frames | attacker's frames sent |"
		print "|---|---|---|---|"
		for (i = 1; i <= ns; i++) {
			s = "BenchmarkStorm/" smodes[i]
			lbl = smodes[i]
			if (lbl == "storm") lbl = "broadcast storm, storm control on (bum_rate 20,000)"
			else if (lbl == "storm-unlimited") lbl = "broadcast storm, storm control off (bum_rate 0)"
			else if (lbl == "macflood") lbl = "MAC flood (random source and destination MACs)"
			a = get(s "/rtt-64B", "attack-Mpps")
			printf "| %s | %s | %s | %s |\n", lbl, rtt(s "/rtt-64B"), tput(s "/tput-64B"), (a == "" ? "—" : fmtnum(a) " Mpps")
		}
		print ""
		q = get("BenchmarkStorm/quiet/rtt-64B", "p99-us"); st = get("BenchmarkStorm/storm/rtt-64B", "p99-us")
		if (q != "" && st != "") {
			printf "Against the target of issue 8 (a storm keeps another fence's p99 within 3× of quiet): %s×", ratio(st, q)
			su = get("BenchmarkStorm/storm-unlimited/rtt-64B", "p99-us")
			if (su != "") printf " (%s× with storm control off)", ratio(su, q)
			print "."
			print ""
		}
	}
	nf = 0
	for (i = 1; i <= norder; i++)
		if ((order[i] in failed) && split(order[i], parts, "/") >= 3) fl = fl (nf++ ? ", " : "") order[i]
	if (nf) {
		print "Failed runs (their output is in the raw log): " fl "."
		print ""
	}
}
