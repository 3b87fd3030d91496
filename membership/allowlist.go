package membership

import (
	"fmt"
	"net/netip"

	"github.com/bitvmx/go-bitvmx-p2p/allowlist"
)

// Entries returns the allowlist entries the document admits, sorted by peer
// ID: each member's ID, name, IP binding and relay permission. Roles have no allowlist
// counterpart and are left out. A node applies a new version by handing
// these to [allowlist.List.Replace], the call a live reload of the YAML
// file makes, so that removed members are disconnected the same way.
func (d *Document) Entries() []allowlist.Entry {
	out := make([]allowlist.Entry, 0, len(d.body.Members))
	for _, m := range d.body.Members {
		m = m.clone()
		out = append(out, allowlist.Entry{ID: m.ID, Name: m.Name, Addrs: m.Addrs, Relay: m.Relay})
	}
	return out
}

// Allowlist returns a new list holding [Document.Entries].
func (d *Document) Allowlist() (*allowlist.List, error) {
	l, err := allowlist.New(d.Entries()...)
	if err != nil {
		// Members were validated as the allowlist validates entries; this
		// would be a disagreement between the two packages.
		return nil, fmt.Errorf("membership: allowlist of version %d: %w", d.body.Version, err)
	}
	return l, nil
}

// MembersFromAllowlist turns allowlist entries (a YAML allowlist, read with
// [allowlist.Load]) into members without roles, the usual start of a
// genesis document.
func MembersFromAllowlist(entries []allowlist.Entry) []Member {
	out := make([]Member, 0, len(entries))
	for _, e := range entries {
		out = append(out, Member{ID: e.ID, Name: e.Name, Addrs: append([]netip.Prefix(nil), e.Addrs...), Relay: e.Relay})
	}
	return out
}
