-- corral.lua: a Wireshark/tshark dissector for corral's uplink frames
-- (DESIGN.md section 3: MAC-in-MAC with a 4-byte fence header; section
-- 3.6: sealed version-2 frames; section 4.6: the hello on fence 0).
--
--   tshark -X lua_script:contrib/wireshark/corral.lua -r uplink.pcap
--   wireshark -X lua_script:contrib/wireshark/corral.lua uplink.pcap
--
-- or copy it to ~/.local/lib/wireshark/plugins/. It registers on the fence
-- EtherType 0x88b5 (raw uplink captures and `corral capture --uplink`) and
-- on UDP port 7407 (captures of the UDP uplink on the wire, where the UDP
-- payload is the whole encapsulated frame, outer Ethernet header
-- included). Both are preferences (Edit > Preferences > Protocols > CORRAL).
--
-- Fields (filter names): corral.version, corral.ft, corral.seq,
-- corral.fence, corral.opi, corral.src.installation, corral.src.host_id,
-- corral.key_id, corral.counter, corral.sealed, corral.tag,
-- corral.fragment, and corral.hello.* for hellos. Unsealed whole frames
-- hand the inner frame to Wireshark's Ethernet dissector; sealed ones
-- stay opaque (the key never leaves corral).

local corral = Proto("corral", "corral fence encapsulation")
local corral_udp = Proto("corral_udp", "corral UDP uplink")

local FT_NAMES = { [0] = "whole frame", [1] = "first fragment", [2] = "last fragment", [3] = "reserved" }
local VERSION_NAMES = { [1] = "basic", [2] = "sealed" }

local pf = {
	version = ProtoField.uint8("corral.version", "Version", base.DEC, VERSION_NAMES, 0xC0),
	ft = ProtoField.uint8("corral.ft", "Fragment type", base.DEC, FT_NAMES, 0x30),
	seq = ProtoField.uint8("corral.seq", "Seq", base.DEC, nil, 0x0F),
	fence = ProtoField.uint24("corral.fence", "Fence ID", base.DEC_HEX),
	opi = ProtoField.uint32("corral.opi", "OPI (installation · fence)", base.HEX),
	installation = ProtoField.uint8("corral.src.installation", "Sender installation", base.DEC),
	host_id = ProtoField.uint16("corral.src.host_id", "Sender host ID", base.HEX),
	key_id = ProtoField.uint8("corral.key_id", "Key ID", base.DEC),
	counter = ProtoField.uint64("corral.counter", "Counter", base.DEC),
	sealed = ProtoField.bytes("corral.sealed", "Sealed data"),
	tag = ProtoField.bytes("corral.tag", "Tag"),
	fragment = ProtoField.bytes("corral.fragment", "Fragment data"),
	hello_type = ProtoField.uint8("corral.hello.type", "Control message type", base.DEC, { [1] = "hello" }),
	hello_version = ProtoField.uint8("corral.hello.version", "Hello version", base.DEC),
	hello_host_id = ProtoField.uint16("corral.hello.host_id", "Host ID", base.HEX),
	hello_instance = ProtoField.uint64("corral.hello.instance", "Instance", base.HEX),
	hello_flags = ProtoField.uint8("corral.hello.flags", "Flags", base.HEX),
	hello_name = ProtoField.string("corral.hello.name", "Host name"),
	hello_fence = ProtoField.uint24("corral.hello.fence", "Fence with local ports", base.DEC_HEX),
	hello_gateway = ProtoField.uint24("corral.hello.gateway", "Gateway fence", base.DEC_HEX),
	hello_cookie = ProtoField.uint64("corral.hello.cookie", "Probe cookie", base.HEX),
	hello_echo = ProtoField.uint64("corral.hello.echo", "Probe echo", base.HEX),
}
corral.fields = pf

local ef = {
	bad = ProtoExpert.new("corral.bad", "Malformed corral frame", expert.group.MALFORMED, expert.severity.ERROR),
}
corral.experts = ef

corral.prefs.ethertype = Pref.uint("EtherType", 0x88b5, "Fence EtherType of the installation")
corral_udp.prefs.port = Pref.uint("UDP port", 7407, "UDP port of the uplink")

local FENCE_HDR = 4
local SEAL_PREFIX = 9 -- key ID (1) + counter (8)
local TAG_LEN = 16

local eth_src_f = Field.new("eth.src")
local eth_dissector = Dissector.get("eth_withoutfcs")

-- sender returns the installation ID and host ID of the outer source MAC
-- (OUI(3) · installation(1) · host ID(2)), or nil.
local function sender()
	local fis = { eth_src_f() }
	local fi = fis[#fis] -- the innermost Ethernet header before this one
	if fi == nil then return nil end
	local r = fi.range
	if r == nil or r:len() ~= 6 then return nil end
	return r, r:range(3, 1), r:range(4, 2)
end

local function dissect_hello(tvb, tree)
	local t = tree:add(corral, tvb(), "Hello")
	if tvb:len() < 18 then
		t:add_proto_expert_info(ef.bad, "hello shorter than 18 bytes")
		return
	end
	t:add(pf.hello_type, tvb(0, 1))
	t:add(pf.hello_version, tvb(1, 1))
	t:add(pf.hello_host_id, tvb(2, 2))
	t:add(pf.hello_instance, tvb(4, 8))
	local n = tvb(12, 1):uint()
	t:add(tvb(12, 1), "Name length: " .. n)
	t:add(pf.hello_flags, tvb(13, 1))
	local nf = tvb(14, 2):uint()
	local ng = tvb(16, 2):uint()
	t:add(tvb(14, 2), "Fence count: " .. nf)
	t:add(tvb(16, 2), "Gateway count: " .. ng)
	local off = 18
	if tvb:len() < off + n + 3 * (nf + ng) then
		t:add_proto_expert_info(ef.bad, "hello lists run past the frame")
		return
	end
	if n > 0 then t:add(pf.hello_name, tvb(off, n)) end
	off = off + n
	for _ = 1, nf do
		t:add(pf.hello_fence, tvb(off, 3))
		off = off + 3
	end
	for _ = 1, ng do
		t:add(pf.hello_gateway, tvb(off, 3))
		off = off + 3
	end
	-- Version 2 (a probe: return routability of a learned address)
	-- appends a cookie and an echo; a version-1 hello may be padded.
	if tvb(1, 1):uint() >= 2 and tvb:len() >= off + 16 then
		t:add(pf.hello_cookie, tvb(off, 8))
		t:add(pf.hello_echo, tvb(off + 8, 8))
	end
end

function corral.dissector(tvb, pinfo, tree)
	if tvb:len() < FENCE_HDR then return 0 end
	pinfo.cols.protocol = "corral"
	local b0 = tvb(0, 1):uint()
	local ver = bit.rshift(b0, 6)
	local ft = bit.band(bit.rshift(b0, 4), 3)
	local seq = bit.band(b0, 0x0f)
	local fence = tvb(1, 3):uint()

	local t = tree:add(corral, tvb(), "corral fence encapsulation")
	t:add(pf.version, tvb(0, 1))
	t:add(pf.ft, tvb(0, 1))
	t:add(pf.seq, tvb(0, 1))
	t:add(pf.fence, tvb(1, 3))
	local _, inst, host = sender()
	if inst ~= nil then
		t:add(pf.installation, inst):set_generated()
		t:add(pf.host_id, host):set_generated()
		t:add(pf.opi, inst:uint() * 0x1000000 + fence):set_generated()
	end
	if ver ~= 1 and ver ~= 2 then
		t:add_proto_expert_info(ef.bad, "unknown version " .. ver)
		return tvb:len()
	end
	if ft == 3 then
		t:add_proto_expert_info(ef.bad, "reserved fragment type")
		return tvb:len()
	end

	local what = (fence == 0) and "control" or ("fence " .. fence)
	pinfo.cols.info = string.format("%s %s, %s, Seq %d", VERSION_NAMES[ver], what, FT_NAMES[ft], seq)
	local payload = tvb(FENCE_HDR):tvb()

	if ver == 2 then
		-- Sealed: key ID and counter lead the first piece; the tag ends the last.
		local p = payload
		if ft ~= 2 then
			if p:len() < SEAL_PREFIX then
				t:add_proto_expert_info(ef.bad, "sealed frame shorter than its key ID and counter")
				return tvb:len()
			end
			t:add(pf.key_id, p(0, 1))
			t:add(pf.counter, p(1, 8))
			pinfo.cols.info:append(string.format(", key %d, counter %s", p(0, 1):uint(), tostring(p(1, 8):uint64())))
			p = p(SEAL_PREFIX):tvb()
		end
		if ft == 1 then
			if p:len() > 0 then t:add(pf.sealed, p()) end
		elseif p:len() >= TAG_LEN then
			if p:len() > TAG_LEN then t:add(pf.sealed, p(0, p:len() - TAG_LEN)) end
			t:add(pf.tag, p(p:len() - TAG_LEN, TAG_LEN))
		elseif p:len() > 0 then
			t:add(pf.sealed, p())
		end
		return tvb:len()
	end

	if ft ~= 0 then
		t:add(pf.fragment, payload())
		return tvb:len()
	end
	if fence == 0 then
		dissect_hello(payload, t)
		return tvb:len()
	end
	eth_dissector:call(payload, pinfo, tree)
	return tvb:len()
end

-- The UDP uplink carries the whole encapsulated frame, outer Ethernet
-- header included.
function corral_udp.dissector(tvb, pinfo, tree)
	if tvb:len() < 18 then return 0 end
	return eth_dissector:call(tvb, pinfo, tree)
end

local registered_type, registered_port
local function register()
	local et = DissectorTable.get("ethertype")
	if registered_type then et:remove(registered_type, corral) end
	registered_type = corral.prefs.ethertype
	et:add(registered_type, corral)
	local udp = DissectorTable.get("udp.port")
	if registered_port then udp:remove(registered_port, corral_udp) end
	registered_port = corral_udp.prefs.port
	udp:add(registered_port, corral_udp)
end
corral.prefs_changed = register
corral_udp.prefs_changed = register
register()
