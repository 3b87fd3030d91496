package membership

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Size caps. A document travels between operators and, later, between
// nodes: a decoder must bound what it allocates before it trusts anything.
const (
	// MaxMembers bounds the members of one version, and the signatures one
	// document may carry (more signatures than members cannot help).
	MaxMembers = 1024
	// MaxDocumentSize bounds the encoded document, signatures included.
	MaxDocumentSize = 1 << 20
	// MaxAddrs bounds the IP prefixes of one member.
	MaxAddrs = 32
	// MaxNameLen bounds a member's name, in bytes.
	MaxNameLen = 128
	// MaxRoleLen bounds a member's role, in bytes.
	MaxRoleLen = 64
	// maxIDLen bounds a peer ID's binary form; inlined secp256k1 and
	// ed25519 keys need under 45 bytes.
	maxIDLen = 64
	// maxSigLen bounds one signature: DER secp256k1 is at most 72 bytes,
	// ed25519 64.
	maxSigLen = 128
)

// Member is one operator admitted by a version of the document.
type Member struct {
	// ID is the member's libp2p identity. Its public key, which the ID
	// embeds, checks the member's signatures: only secp256k1 and ed25519
	// identities are accepted.
	ID peer.ID
	// Name is an optional label for people and logs.
	Name string
	// Addrs optionally binds the member to IP prefixes, as an allowlist
	// entry does; empty admits any IP. A single address is a /32 or /128.
	Addrs []netip.Prefix
	// Role is an optional application-defined role.
	Role string
	// Relay admits the member over a circuit relay although Addrs binds it
	// to IPs, as [allowlist.Entry.Relay] does: a relayed connection shows
	// the relay's IP, not the member's, so the binding cannot be checked
	// there. Without it an IP-bound member behind a NAT cannot reach the
	// others through a relay. Members sign it like every other field.
	Relay bool
}

// canonical validates m and returns a copy in canonical form (prefixes
// masked, IPv4-mapped ones as IPv4, sorted, without repeats) that shares no
// memory with m.
func (m Member) canonical() (Member, error) {
	if _, err := memberKey(m.ID); err != nil {
		return Member{}, err
	}
	if err := checkLabel("name", m.Name, MaxNameLen); err != nil {
		return Member{}, fmt.Errorf("member %s: %w", m.ID, err)
	}
	if err := checkLabel("role", m.Role, MaxRoleLen); err != nil {
		return Member{}, fmt.Errorf("member %s: %w", m.ID, err)
	}
	if len(m.Addrs) > MaxAddrs {
		return Member{}, newError(fmt.Sprintf("member %s: %d addresses, at most %d", m.ID, len(m.Addrs), MaxAddrs), ErrInvalid)
	}
	out := Member{ID: m.ID, Name: m.Name, Role: m.Role, Relay: m.Relay}
	for _, p := range m.Addrs {
		if !p.IsValid() {
			return Member{}, newError(fmt.Sprintf("member %s: %q is not a valid IP prefix", m.ID, p), ErrInvalid)
		}
		out.Addrs = append(out.Addrs, canonicalPrefix(p))
	}
	slices.SortFunc(out.Addrs, comparePrefix)
	out.Addrs = slices.Compact(out.Addrs)
	return out, nil
}

// memberKey returns the public key a member's ID embeds, and fails for an
// ID whose key cannot be recovered from it or is of another type.
func memberKey(id peer.ID) (crypto.PubKey, error) {
	if id == "" {
		return nil, newError("empty peer ID", ErrInvalid)
	}
	if len(id) > maxIDLen {
		return nil, newError(fmt.Sprintf("peer ID of %d bytes, at most %d", len(id), maxIDLen), ErrInvalid)
	}
	if _, err := peer.IDFromBytes([]byte(id)); err != nil {
		return nil, newError(fmt.Sprintf("%q is not a peer ID: %v", id.String(), err), ErrInvalid)
	}
	pk, err := id.ExtractPublicKey()
	if err != nil {
		return nil, newError(fmt.Sprintf("peer %s: its public key is not embedded in the ID (use a secp256k1 or ed25519 key)", id), ErrInvalid)
	}
	if t := pk.Type(); t != crypto.Secp256k1 && t != crypto.Ed25519 {
		return nil, newError(fmt.Sprintf("peer %s: %s key; members use secp256k1 or ed25519", id, t), ErrInvalid)
	}
	// One key has several IDs that embed it (its protobuf with the fields
	// swapped, repeated or followed by unknown ones): only the one libp2p
	// derives from the key, which the handshake proves, names a member,
	// else one operator could be listed, and counted, twice.
	if canon, err := peer.IDFromPublicKey(pk); err != nil || canon != id {
		return nil, newError(fmt.Sprintf("peer %s: not the canonical ID of its key (%s)", id, canon), ErrInvalid)
	}
	return pk, nil
}

// checkLabel refuses control characters (a name in `show` output must not
// be able to rewrite the terminal line that says who signed) and invalid
// UTF-8, which protobuf strings cannot carry.
func checkLabel(what, s string, limit int) error {
	if len(s) > limit {
		return newError(fmt.Sprintf("%s of %d bytes, at most %d", what, len(s), limit), ErrInvalid)
	}
	if !utf8.ValidString(s) {
		return newError(what+" is not valid UTF-8", ErrInvalid)
	}
	// Format characters too (bidi overrides, zero-width ones): printed
	// after an ID, they could make a terminal show another name, role or
	// address than the one the members signed.
	if strings.ContainsFunc(s, func(r rune) bool { return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) }) {
		return newError(fmt.Sprintf("%s %q holds a control or format character", what, s), ErrInvalid)
	}
	return nil
}

// canonicalPrefix masks p and writes an IPv4-mapped prefix as the IPv4
// prefix it denotes, as the allowlist does, so that two spellings of one
// binding encode to the same bytes.
func canonicalPrefix(p netip.Prefix) netip.Prefix {
	p = p.Masked()
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(a.Bits(), b.Bits())
}

func compareMembers(a, b Member) int { return strings.Compare(string(a.ID), string(b.ID)) }

// clone returns a copy of m whose Addrs the caller may modify.
func (m Member) clone() Member {
	m.Addrs = slices.Clone(m.Addrs)
	return m
}

// equal reports whether two canonical members are the same.
func (m Member) equal(o Member) bool {
	return m.ID == o.ID && m.Name == o.Name && m.Role == o.Role && m.Relay == o.Relay && slices.Equal(m.Addrs, o.Addrs)
}
