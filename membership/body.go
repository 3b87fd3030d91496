package membership

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/bitvmx/go-bitvmx-p2p/membership/pb"
)

// Hash identifies a version: sha256 of its signed bytes
// ([Document.SignedBytes]). The next version names it in [Body.Prev].
type Hash [32]byte

// String returns the hash in hex.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// IsZero reports whether h is the zero hash, the Prev of a genesis body.
func (h Hash) IsZero() bool { return h == Hash{} }

// ParseHash reads a hash written by [Hash.String].
func ParseHash(s string) (Hash, error) {
	var h Hash
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(h) {
		return Hash{}, fmt.Errorf("%q is not a hex sha256 hash", s)
	}
	copy(h[:], b)
	return h, nil
}

// Body is the signed content of one version of the membership.
type Body struct {
	// Version is 1 for the genesis document and previous+1 afterwards.
	Version uint64
	// Threshold is M: how many members of this version must sign the next.
	Threshold int
	// Prev is the [Hash] of the previous version; zero in version 1.
	Prev Hash
	// Expires is when this version stops being accepted, at one-second
	// precision; the zero time means never.
	Expires time.Time
	// Members are the admitted operators. A [Document] keeps them sorted
	// by peer ID.
	Members []Member
}

// Member returns the member with id.
func (b Body) Member(id peer.ID) (Member, bool) {
	i, ok := slices.BinarySearchFunc(b.Members, id, func(m Member, id peer.ID) int {
		return compareMembers(m, Member{ID: id})
	})
	if !ok {
		return Member{}, false
	}
	return b.Members[i].clone(), true
}

// clone returns a deep copy of b.
func (b Body) clone() Body {
	b.Members = slices.Clone(b.Members)
	for i := range b.Members {
		b.Members[i] = b.Members[i].clone()
	}
	return b
}

// canonical validates b and returns a deep copy in canonical form: members
// canonical and sorted by peer ID, Expires truncated to the second.
func (b Body) canonical() (Body, error) {
	switch {
	case b.Version == 0:
		return Body{}, newError("version 0; versions start at 1", ErrInvalid)
	case b.Version == 1 && !b.Prev.IsZero():
		return Body{}, newError("version 1 names a previous version", ErrInvalid)
	case b.Version > 1 && b.Prev.IsZero():
		return Body{}, newError(fmt.Sprintf("version %d does not name its previous version", b.Version), ErrInvalid)
	case len(b.Members) == 0:
		return Body{}, newError("no members", ErrInvalid)
	case len(b.Members) > MaxMembers:
		return Body{}, newError(fmt.Sprintf("%d members, at most %d", len(b.Members), MaxMembers), ErrInvalid)
	case b.Threshold < 1 || b.Threshold > len(b.Members):
		return Body{}, newError(fmt.Sprintf("threshold %d outside 1..%d (the number of members)", b.Threshold, len(b.Members)), ErrInvalid)
	case !b.Expires.IsZero() && b.Expires.Unix() <= 0:
		return Body{}, newError(fmt.Sprintf("expiry %s is not after 1970", b.Expires), ErrInvalid)
	}
	out := Body{Version: b.Version, Threshold: b.Threshold, Prev: b.Prev, Members: make([]Member, 0, len(b.Members))}
	if !b.Expires.IsZero() {
		out.Expires = time.Unix(b.Expires.Unix(), 0).UTC()
	}
	for _, m := range b.Members {
		c, err := m.canonical()
		if err != nil {
			return Body{}, err
		}
		out.Members = append(out.Members, c)
	}
	slices.SortFunc(out.Members, compareMembers)
	for i := 1; i < len(out.Members); i++ {
		if out.Members[i].ID == out.Members[i-1].ID {
			return Body{}, newError(fmt.Sprintf("member %s is listed twice", out.Members[i].ID), ErrInvalid)
		}
	}
	return out, nil
}

// encodeBody returns the canonical encoding of a canonical body. Only
// fields of b reach the output, so unknown fields of a decoded message
// cannot survive into the bytes compared with the input.
func encodeBody(b Body) ([]byte, error) {
	m := &pb.Body{Version: b.Version, Threshold: uint32(b.Threshold)}
	if b.Version > 1 {
		m.Prev = b.Prev[:]
	}
	if !b.Expires.IsZero() {
		m.Expires = b.Expires.Unix()
	}
	for _, mem := range b.Members {
		pm := &pb.Member{Id: []byte(mem.ID), Name: mem.Name, Role: mem.Role, Relay: mem.Relay}
		for _, p := range mem.Addrs {
			pm.Addrs = append(pm.Addrs, p.String())
		}
		m.Members = append(m.Members, pm)
	}
	return proto.MarshalOptions{Deterministic: true}.Marshal(m)
}

// decodeBody parses raw and accepts it only if it is the canonical encoding
// of a valid body.
func decodeBody(raw []byte) (Body, error) {
	var m pb.Body
	if err := proto.Unmarshal(raw, &m); err != nil {
		return Body{}, newError("body: "+err.Error(), ErrMalformed)
	}
	if len(m.Members) > MaxMembers {
		return Body{}, newError(fmt.Sprintf("body: %d members, at most %d", len(m.Members), MaxMembers), ErrMalformed)
	}
	if m.Threshold > math.MaxInt32 || m.Expires < 0 {
		return Body{}, newError("body: threshold or expiry out of range", ErrMalformed)
	}
	b := Body{Version: m.Version, Threshold: int(m.Threshold), Members: make([]Member, 0, len(m.Members))}
	switch {
	case len(m.Prev) == len(b.Prev):
		copy(b.Prev[:], m.Prev)
	case len(m.Prev) != 0:
		return Body{}, newError(fmt.Sprintf("body: previous hash of %d bytes, want %d", len(m.Prev), len(b.Prev)), ErrMalformed)
	}
	if m.Expires != 0 {
		b.Expires = time.Unix(m.Expires, 0).UTC()
	}
	for i, pm := range m.Members {
		if len(pm.Addrs) > MaxAddrs {
			return Body{}, newError(fmt.Sprintf("body: member with %d addresses, at most %d", len(pm.Addrs), MaxAddrs), ErrMalformed)
		}
		mem := Member{ID: peer.ID(pm.Id), Name: pm.Name, Role: pm.Role, Relay: pm.Relay}
		for _, s := range pm.Addrs {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				// By index and cut short: the ID is not checked yet, and
				// neither is bounded but by the document's size, which a
				// sender would otherwise have copied, escaped up to four
				// times larger, into every event and log line.
				return Body{}, newError(fmt.Sprintf("body: member %d: %s is not an IP prefix", i, quoteInput(s)), ErrMalformed)
			}
			mem.Addrs = append(mem.Addrs, p)
		}
		b.Members = append(b.Members, mem)
	}
	c, err := b.canonical()
	if err != nil {
		return Body{}, err
	}
	again, err := encodeBody(c)
	if err != nil {
		return Body{}, newError("body: "+err.Error(), ErrMalformed)
	}
	if !bytes.Equal(again, raw) {
		// Members out of order, repeated prefixes, an unmasked prefix, an
		// unknown field, a default written out: the same content could be
		// signed under several encodings, and hashes would disagree.
		return Body{}, newError("body is not in canonical form", ErrMalformed)
	}
	return c, nil
}

// maxQuoted bounds what quoteInput keeps of a string.
const maxQuoted = 64

// quoteInput quotes s, a string from a document being decoded, cut to
// maxQuoted bytes, so that an error does not grow with what a sender put in.
func quoteInput(s string) string {
	if len(s) <= maxQuoted {
		return strconv.Quote(s)
	}
	return fmt.Sprintf("%q... (%d bytes)", s[:maxQuoted], len(s))
}
