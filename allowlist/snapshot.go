package allowlist

import (
	"net/netip"
	"slices"
	"strings"

	"github.com/libp2p/go-libp2p/core/peer"
)

// snapshot is one immutable version of a List. Readers load it without
// locking; writers build a new one and swap the pointer, so a reader sees
// either the whole old list or the whole new one.
type snapshot struct {
	byID map[peer.ID]Entry
	// anyIP is set when some entry has no binding: then every IP may at
	// least attempt a handshake, and IPAllowed needs no lookup.
	anyIP bool
	// ips indexes the prefixes of the bound entries for IPAllowed.
	ips ipIndex
	// version numbers the snapshots of one List: 1 for the first.
	version uint64
}

// newSnapshot takes ownership of byID, whose entries must be normalized.
func newSnapshot(byID map[peer.ID]Entry) *snapshot {
	s := &snapshot{byID: byID, version: 1}
	var prefixes []netip.Prefix
	for _, e := range byID {
		if len(e.Addrs) == 0 {
			s.anyIP = true
			continue
		}
		prefixes = append(prefixes, e.Addrs...)
	}
	if !s.anyIP {
		s.ips = newIPIndex(prefixes)
	}
	return s
}

// sorted returns the entries ordered by peer ID, sharing their Addrs with
// the snapshot; callers that hand them out must clone them.
func (s *snapshot) sorted() []Entry {
	if s == nil {
		return nil
	}
	out := make([]Entry, 0, len(s.byID))
	for _, e := range s.byID {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b Entry) int { return strings.Compare(string(a.ID), string(b.ID)) })
	return out
}

// buildEntries validates entries and indexes them by ID.
func buildEntries(entries []Entry) (map[peer.ID]Entry, error) {
	m := make(map[peer.ID]Entry, len(entries))
	for _, e := range entries {
		n, err := e.normalize()
		if err != nil {
			return nil, err
		}
		if _, dup := m[n.ID]; dup {
			return nil, newDetail(ErrDuplicateID, "peer "+n.ID.String()+" is listed twice", nil)
		}
		m[n.ID] = n
	}
	return m, nil
}
