package allowlist

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Entry is one allowed peer.
type Entry struct {
	// ID is the peer's libp2p identity, proved by the Noise handshake.
	ID peer.ID
	// Name is an optional human-readable label, for logs and the CLI.
	Name string
	// Addrs optionally binds the peer to IP prefixes: it is admitted only
	// from an address inside one of them. Empty admits any IP. A single
	// address is a /32 (IPv4) or /128 (IPv6) prefix.
	Addrs []netip.Prefix
	// Relay admits the peer over a circuit relay although Addrs binds it
	// to IPs. A relayed connection shows the relay's IP, not the peer's,
	// so the binding cannot be checked there: an IP-bound entry is refused
	// over a relay unless it says so. An entry without Addrs is admitted
	// over a relay anyway.
	Relay bool
}

// AllowsRelayed reports whether the entry admits a connection that reached
// this node through a circuit relay, where the peer's own IP is unknown:
// when it has no IP binding, or when Relay waives it.
func (e Entry) AllowsRelayed() bool {
	return len(e.Addrs) == 0 || e.Relay
}

// AllowsIP reports whether the entry admits a connection from ip: always when
// Addrs is empty, otherwise when ip lies in one of the prefixes.
//
// An IPv4-mapped IPv6 address (::ffff:a.b.c.d), as dual-stack sockets report
// IPv4 peers, is treated as the IPv4 address it carries, and a zone is
// ignored. An invalid (zero) ip stands for an unknown one, as on a
// connection through a circuit relay: it is admitted only when the entry
// admits relayed connections (AllowsRelayed).
func (e Entry) AllowsIP(ip netip.Addr) bool {
	if len(e.Addrs) == 0 {
		return true
	}
	if !ip.IsValid() {
		return e.Relay
	}
	ip = canonicalAddr(ip)
	for _, p := range e.Addrs {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// canonicalAddr puts ip in the form prefixes are stored in, so one Contains
// call decides: the zone would make Contains fail, and an IPv4-mapped address
// must match IPv4 prefixes.
func canonicalAddr(ip netip.Addr) netip.Addr {
	return ip.WithZone("").Unmap()
}

// canonicalPrefix masks p and rewrites an IPv4-mapped prefix as the IPv4
// prefix it denotes, so that "::ffff:10.0.0.0/104" and "10.0.0.0/8" are the
// same rule and both admit 10.1.2.3. A shorter IPv6 prefix (say ::/0) stays
// IPv6-only: reading "all of IPv6" as "and all of IPv4 too" would widen a
// binding the operator did not write.
func canonicalPrefix(p netip.Prefix) netip.Prefix {
	p = p.Masked()
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p
}

// normalize validates e and returns a copy in canonical form that shares no
// memory with e, so a caller that later edits its Addrs slice cannot change
// a published snapshot.
func (e Entry) normalize() (Entry, error) {
	if err := validateID(e.ID); err != nil {
		return Entry{}, err
	}
	if err := checkName(e.ID, e.Name); err != nil {
		return Entry{}, err
	}
	out := Entry{ID: e.ID, Name: e.Name, Relay: e.Relay}
	if len(e.Addrs) == 0 {
		return out, nil
	}
	out.Addrs = make([]netip.Prefix, 0, len(e.Addrs))
	for _, p := range e.Addrs {
		if !p.IsValid() {
			return Entry{}, newDetail(ErrInvalidAddr,
				fmt.Sprintf("peer %s: %q is not a valid IP prefix", e.ID, p), nil)
		}
		p = canonicalPrefix(p)
		// Duplicates are harmless for matching but would make two equal
		// bindings compare as different and report a spurious update.
		if !slices.Contains(out.Addrs, p) {
			out.Addrs = append(out.Addrs, p)
		}
	}
	return out, nil
}

// equal reports whether a and b are the same normalized entry.
func (e Entry) equal(o Entry) bool {
	return e.ID == o.ID && e.Name == o.Name && e.Relay == o.Relay && slices.Equal(e.Addrs, o.Addrs)
}

// clone returns a copy of e whose Addrs a caller may modify freely.
func (e Entry) clone() Entry {
	e.Addrs = slices.Clone(e.Addrs)
	return e
}

// checkName refuses a name that is not valid UTF-8 or holds a control or
// format character (a newline, a bidi override, a zero-width one): the
// CLI and the logs print names beside peer IDs, and such a name could
// make a terminal show another name, or another line, than the file
// holds. Membership names refuse them too.
func checkName(id peer.ID, name string) error {
	if !utf8.ValidString(name) {
		return newDetail(ErrInvalidName, fmt.Sprintf("peer %s: the name is not valid UTF-8", id), nil)
	}
	if strings.ContainsFunc(name, func(r rune) bool { return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) }) {
		return newDetail(ErrInvalidName, fmt.Sprintf("peer %s: name %q holds a control or format character", id, name), nil)
	}
	return nil
}

// validateID checks that id is a well-formed peer ID: its bytes must be a
// multihash, as peer.IDFromBytes requires.
func validateID(id peer.ID) error {
	if id == "" {
		return newDetail(ErrInvalidID, "empty peer ID", nil)
	}
	if _, err := peer.IDFromBytes([]byte(id)); err != nil {
		// peer.ID("16Uiu2...") instead of peer.Decode("16Uiu2...") is an easy
		// mistake; say so rather than print base58 of the text.
		if _, derr := peer.Decode(string(id)); derr == nil {
			return newDetail(ErrInvalidID,
				fmt.Sprintf("peer ID holds the text %q; decode it with peer.Decode", string(id)), nil)
		}
		return newDetail(ErrInvalidID, fmt.Sprintf("%q is not a peer ID", id.String()), err)
	}
	return checkKey(id)
}

// checkKey checks that id holds a valid public key: an identity-multihash
// ID, as secp256k1 and ed25519 keys give, whose key decodes (for secp256k1,
// a point on the curve). A mistyped character in an ID still decodes as a
// multihash most of the time; only the key inside tells it apart, and no
// peer could ever prove such an ID, so listing it is always a mistake.
func checkKey(id peer.ID) error {
	_, err := id.ExtractPublicKey()
	switch {
	case errors.Is(err, peer.ErrNoPublicKey):
		return newDetail(ErrInvalidID, fmt.Sprintf("%q holds no public key (a hashed ID): list the ID p2pnode id prints for the peer's key", id.String()), nil)
	case err != nil:
		return newDetail(ErrInvalidID, fmt.Sprintf("%q is not a valid peer ID: the public key inside does not decode (a mistyped character?)", id.String()), err)
	}
	return nil
}

// parseID decodes the text form of a peer ID, as written in YAML.
func parseID(s string) (peer.ID, error) {
	if s == "" {
		return "", newDetail(ErrInvalidID, "empty peer ID", nil)
	}
	id, err := peer.Decode(s)
	if err != nil {
		return "", newDetail(ErrInvalidID, fmt.Sprintf("%q is not a peer ID", s), err)
	}
	return id, checkKey(id)
}

// parsePrefix reads an IP prefix or a bare IP address, which stands for the
// prefix holding just that address.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, newDetail(ErrInvalidAddr,
				fmt.Sprintf("%q is not a CIDR prefix", s), err)
		}
		return canonicalPrefix(p), nil
	}
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, newDetail(ErrInvalidAddr,
			fmt.Sprintf("%q is not an IP address or CIDR prefix", s), err)
	}
	if ip.Zone() != "" {
		// A zone names a local interface, which says nothing about where a
		// remote peer is; accepting it would hide a misconfiguration.
		return netip.Prefix{}, newDetail(ErrInvalidAddr,
			fmt.Sprintf("%q: IPv6 zones are not supported", s), nil)
	}
	return canonicalPrefix(netip.PrefixFrom(ip, ip.BitLen())), nil
}

// formatPrefix writes p back the way an operator would: a single address
// without its /32 or /128.
func formatPrefix(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}
