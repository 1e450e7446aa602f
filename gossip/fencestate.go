package gossip

import (
	"encoding/binary"
	"slices"
)

// ownerState is one host's MACs in one fence, at one version.
type ownerState struct {
	instance uint64 // the owner's metadata instance
	seq      uint64
	macs     map[[6]byte]struct{}
}

// fenceTable is a local fence's state: every member's MACs (this host's
// included) and the digest hash anti-entropy compares.
type fenceTable struct {
	owners map[[6]byte]*ownerState
	// hash is the XOR of digestHash(owner, seq) over the owners: equal
	// tables have equal hashes, and it is updated in O(1) per change.
	hash uint64
}

func newFenceTable() *fenceTable { return &fenceTable{owners: map[[6]byte]*ownerState{}} }

// digestHash mixes one (owner, version) pair (splitmix64 finaliser).
func digestHash(owner [6]byte, seq uint64) uint64 {
	var b [8]byte
	copy(b[2:], owner[:])
	x := binary.BigEndian.Uint64(b[:])*0x9e3779b97f4a7c15 ^ seq
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// set replaces owner's state (nil deletes it) and keeps the hash.
func (t *fenceTable) set(owner [6]byte, os *ownerState) {
	if old := t.owners[owner]; old != nil {
		t.hash ^= digestHash(owner, old.seq)
	}
	if os == nil {
		delete(t.owners, owner)
		return
	}
	t.owners[owner] = os
	t.hash ^= digestHash(owner, os.seq)
}

// dropTable forgets local fence id's table.
//
// +checklocks:n.mu
func (n *Node) dropTable(id uint32) {
	t := n.tables[id]
	if t == nil {
		return
	}
	for owner, os := range t.owners {
		if owner != n.cfg.OuterMAC {
			n.remoteMACs -= len(os.macs)
		}
	}
	delete(n.tables, id)
}

// dropOwner withdraws owner's MACs from local fence id.
//
// +checklocks:n.mu
func (n *Node) dropOwner(id uint32, owner [6]byte) {
	t := n.tables[id]
	if t == nil || owner == n.cfg.OuterMAC {
		return
	}
	if os := t.owners[owner]; os != nil {
		n.remoteMACs -= len(os.macs)
		t.set(owner, nil)
	}
}

// member returns the up peer with outer MAC o that has fence id, or nil.
//
// +checklocks:n.mu
func (n *Node) member(o [6]byte, id uint32) *peer {
	p := n.byOuter[o]
	if p == nil || !p.has(id) {
		return nil
	}
	return p
}

// handle decodes and applies one inbound fence-state message. Only hosts
// of the message's fence are heard, and only about hosts of that fence.
func (n *Node) handle(m *Message, b []byte) {
	if err := m.Decode(b); err != nil {
		n.ctr.badMsgs.Add(1)
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	t := n.tables[m.Fence]
	from := n.member(m.Sender, m.Fence)
	if t == nil || from == nil {
		// Not our fence, or the sender is not (yet) one of its hosts as
		// this host sees it: refuse; anti-entropy catches up once the
		// metadata has spread.
		n.ctr.notMember.Add(1)
		if m.Type == MsgUpdate {
			n.ctr.macsRefused.Add(uint64(len(m.Add) + len(m.Del)))
		}
		return
	}
	switch m.Type {
	case MsgUpdate:
		n.ctr.updatesReceived.Add(1)
		n.applyUpdate(t, from, m)
	case MsgSyncHash:
		n.ctr.syncsReceived.Add(1)
		if int(m.Count) != len(t.owners) || m.Hash != t.hash {
			n.queue(from, n.digest(m.Fence, t).AppendTo(nil))
		}
	case MsgSyncDigest:
		// Send what the other side lacks or has older; pull what it has
		// newer.
		theirs := make(map[[6]byte]uint64, len(m.Digest))
		var pull [][6]byte
		for _, e := range m.Digest {
			theirs[e.Owner] = e.Seq
			os := t.owners[e.Owner]
			if e.Owner != n.cfg.OuterMAC && (os == nil || os.seq < e.Seq) && n.member(e.Owner, m.Fence) != nil {
				pull = append(pull, e.Owner)
			}
		}
		for owner, os := range t.owners {
			if s, ok := theirs[owner]; !ok || s < os.seq {
				n.queueFull(from, m.Fence, owner)
			}
		}
		if len(pull) > 0 {
			pm := Message{Type: MsgPull, Sender: n.cfg.OuterMAC, Fence: m.Fence, Owners: pull[:min(len(pull), MaxMsgOwners)]}
			n.queue(from, pm.AppendTo(nil))
		}
	case MsgPull:
		for _, o := range m.Owners {
			n.queueFull(from, m.Fence, o)
		}
	}
}

// digest returns the digest message of table t.
//
// +checklocks:n.mu
func (n *Node) digest(id uint32, t *fenceTable) *Message {
	m := &Message{Type: MsgSyncDigest, Sender: n.cfg.OuterMAC, Fence: id, Digest: make([]DigestEntry, 0, len(t.owners))}
	for owner, os := range t.owners {
		if len(m.Digest) == MaxMsgOwners {
			break
		}
		m.Digest = append(m.Digest, DigestEntry{Owner: owner, Seq: os.seq})
	}
	return m
}

// applyUpdate applies an update from host from (a host of the fence).
//
// +checklocks:n.mu
func (n *Node) applyUpdate(t *fenceTable, from *peer, m *Message) {
	owner := n.member(m.Owner, m.Fence)
	if m.Owner == n.cfg.OuterMAC || owner == nil || owner.meta.Instance != m.Instance {
		// About this host, about a host not (or no longer) in the fence,
		// or about an owner's previous run: stale.
		n.ctr.stale.Add(1)
		return
	}
	n.ctr.macsReceived.Add(uint64(len(m.Add) + len(m.Del)))
	cur := t.owners[m.Owner]
	switch {
	case cur != nil && m.Seq <= cur.seq:
		n.ctr.stale.Add(1)
		return
	case m.Base == 0:
		os := &ownerState{instance: m.Instance, seq: m.Seq, macs: make(map[[6]byte]struct{}, len(m.Add))}
		if cur != nil {
			n.remoteMACs -= len(cur.macs)
		}
		n.addMACs(os, m.Add)
		t.set(m.Owner, os)
	case cur != nil && cur.seq == m.Base:
		// A delta on the version we hold. The state is replaced, not
		// modified: the current snapshot's readers never see it change.
		os := &ownerState{instance: m.Instance, seq: m.Seq, macs: make(map[[6]byte]struct{}, len(cur.macs)+len(m.Add))}
		for mac := range cur.macs {
			os.macs[mac] = struct{}{}
		}
		for _, mac := range m.Del {
			if _, ok := os.macs[mac]; ok {
				delete(os.macs, mac)
			}
		}
		n.remoteMACs -= len(cur.macs)
		n.remoteMACs += len(os.macs)
		n.addMACs(os, m.Add)
		t.set(m.Owner, os)
	default:
		// A delta on a version we do not hold (a lost packet): ask the
		// sender for the full set.
		n.ctr.pulls.Add(1)
		pm := Message{Type: MsgPull, Sender: n.cfg.OuterMAC, Fence: m.Fence, Owners: [][6]byte{m.Owner}}
		n.queue(from, pm.AppendTo(nil))
		return
	}
	n.markDirty()
}

// addMACs adds macs to os within the bounds: MaxMACsPerHost per owner and
// fence, MaxMACs in all; the rest, and invalid MACs, are refused and
// counted.
//
// +checklocks:n.mu
func (n *Node) addMACs(os *ownerState, macs [][6]byte) {
	refused := 0
	for _, mac := range macs {
		if _, ok := os.macs[mac]; ok {
			continue
		}
		if !validMAC(mac) || len(os.macs) >= n.cfg.MaxMACsPerHost || n.remoteMACs >= n.cfg.MaxMACs {
			refused++
			continue
		}
		os.macs[mac] = struct{}{}
		n.remoteMACs++
	}
	if refused > 0 {
		n.ctr.macsRefused.Add(uint64(refused))
	}
}

// localMACs returns this host's MACs in local fence id, sorted.
//
// +checklocks:n.mu
func (n *Node) localMACs(id uint32) [][6]byte {
	t := n.tables[id]
	if t == nil {
		return nil
	}
	l := slices.Collect(mapsKeys(t.owners[n.cfg.OuterMAC].macs))
	slices.SortFunc(l, cmpMAC)
	return l
}

func cmpMAC(a, b [6]byte) int {
	for i := range a {
		if a[i] != b[i] {
			return int(a[i]) - int(b[i])
		}
	}
	return 0
}
