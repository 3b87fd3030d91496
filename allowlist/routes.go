package allowlist

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Channel is a channel number, 0 through [MaxChannel], or [AnyChannel] in a
// rule.
type Channel int64

const (
	// AnyChannel in a rule matches every channel ("*" in YAML).
	AnyChannel Channel = -1
	// MaxChannel is the largest channel number: channels are uint32 on the
	// wire.
	MaxChannel Channel = 1<<32 - 1
)

// String returns the channel number, or "*" for AnyChannel.
func (c Channel) String() string {
	if c == AnyChannel {
		return "*"
	}
	return strconv.FormatInt(int64(c), 10)
}

func (c Channel) valid() bool {
	return c == AnyChannel || (c >= 0 && c <= MaxChannel)
}

// Route is one rule of a routing table: messages from FromPeer on
// FromChannel may be delivered to the local ToChannel.
type Route struct {
	// FromPeer is the sending peer; "" matches any peer ("*" in YAML).
	FromPeer peer.ID
	// FromChannel is the sender's channel; AnyChannel matches any.
	FromChannel Channel
	// ToChannel is the local destination channel; AnyChannel matches any.
	ToChannel Channel
}

// String formats r as "peer:channel -> channel", with "*" for wildcards.
func (r Route) String() string {
	from := "*"
	if r.FromPeer != "" {
		from = r.FromPeer.String()
	}
	return from + ":" + r.FromChannel.String() + " -> " + r.ToChannel.String()
}

func (r Route) validate() error {
	if r.FromPeer != "" {
		if err := validateID(r.FromPeer); err != nil {
			return err
		}
	}
	for _, c := range []Channel{r.FromChannel, r.ToChannel} {
		if !c.valid() {
			return newDetail(ErrInvalidChannel,
				fmt.Sprintf("route %s: channel %d is not in 0..%d", r, int64(c), int64(MaxChannel)), nil)
		}
	}
	return nil
}

func compareRoutes(a, b Route) int {
	return cmp.Or(
		strings.Compare(string(a.FromPeer), string(b.FromPeer)),
		cmp.Compare(a.FromChannel, b.FromChannel),
		cmp.Compare(a.ToChannel, b.ToChannel),
	)
}

// Routes is the broker's routing table for a host that serves several
// components: which peer's channel may deliver to which local channel. A
// message is permitted when at least one rule matches it; there are no deny
// rules, so the order of rules does not matter.
//
// A nil *Routes means no table is configured: everything the allowlist
// admits may reach every channel. A non-nil table, even an empty one, permits
// only what its rules match; the zero Routes is such an empty table.
//
// Routes is safe for concurrent use; Permits never blocks.
type Routes struct {
	snap atomic.Pointer[routeTable]
	mu   sync.Mutex // serializes mutations
}

// NewRoutes returns a table holding rules. It fails on an invalid peer ID or
// channel, or a rule given twice.
func NewRoutes(rules ...Route) (*Routes, error) {
	set, err := buildRoutes(rules)
	if err != nil {
		return nil, fmt.Errorf("allowlist: %w", err)
	}
	r := &Routes{}
	r.snap.Store(newRouteTable(set))
	return r, nil
}

func buildRoutes(rules []Route) (map[Route]struct{}, error) {
	set := make(map[Route]struct{}, len(rules))
	for _, rule := range rules {
		if err := rule.validate(); err != nil {
			return nil, err
		}
		if _, dup := set[rule]; dup {
			return nil, newDetail(ErrDuplicateRoute, "route "+rule.String()+" is listed twice", nil)
		}
		set[rule] = struct{}{}
	}
	return set, nil
}

// Permits reports whether a message from peer from, sent on its channel
// fromChannel, may be delivered to the local channel toChannel. It is called
// for every message and costs a few map lookups whatever the table's size.
func (r *Routes) Permits(from peer.ID, fromChannel, toChannel uint32) bool {
	if r == nil {
		return true
	}
	t := r.snap.Load()
	if t == nil {
		return false
	}
	return t.byPeer[from].permits(fromChannel, toChannel) || t.anyPeer.permits(fromChannel, toChannel)
}

// Rules returns a copy of the rules, sorted by peer (wildcard first), then
// by channels (wildcards first).
func (r *Routes) Rules() []Route {
	if r == nil {
		return nil
	}
	return r.snap.Load().sorted()
}

// Add adds rule; adding a rule already in the table does nothing.
func (r *Routes) Add(rule Route) error {
	if err := rule.validate(); err != nil {
		return fmt.Errorf("allowlist: %w", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	cur := r.current()
	if _, ok := cur[rule]; ok {
		return nil
	}
	next := make(map[Route]struct{}, len(cur)+1)
	maps.Copy(next, cur)
	next[rule] = struct{}{}
	r.snap.Store(newRouteTable(next))
	return nil
}

// Remove removes rule and reports whether it was in the table. Only the
// identical rule is removed: removing a specific rule does not narrow a
// wildcard rule that also matches it.
func (r *Routes) Remove(rule Route) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	cur := r.current()
	if _, ok := cur[rule]; !ok {
		return false
	}
	next := maps.Clone(cur)
	delete(next, rule)
	r.snap.Store(newRouteTable(next))
	return true
}

// Replace swaps the whole table for rules in one step. It validates every
// rule first and, on error, leaves the table unchanged.
func (r *Routes) Replace(rules []Route) error {
	set, err := buildRoutes(rules)
	if err != nil {
		return fmt.Errorf("allowlist: %w", err)
	}
	r.mu.Lock()
	r.snap.Store(newRouteTable(set))
	r.mu.Unlock()
	return nil
}

// current returns the rules in force; r.mu must be held and the map must not
// be modified.
func (r *Routes) current() map[Route]struct{} {
	if t := r.snap.Load(); t != nil {
		return t.rules
	}
	return nil
}

// routeTable is one immutable version of a Routes, indexed for Permits.
type routeTable struct {
	rules   map[Route]struct{}
	byPeer  map[peer.ID]*channelRules
	anyPeer *channelRules // rules with FromPeer == ""
}

// channelRules holds the rules of one from-peer bucket, split by which
// channels are wildcards so each shape is one lookup.
type channelRules struct {
	all  bool                // from *, to *
	to   map[uint32]struct{} // from *, to c
	from map[uint32]struct{} // from c, to *
	pair map[uint64]struct{} // from c1, to c2
}

func newRouteTable(rules map[Route]struct{}) *routeTable {
	t := &routeTable{rules: rules, byPeer: make(map[peer.ID]*channelRules)}
	for rule := range rules {
		var b *channelRules
		if rule.FromPeer == "" {
			if t.anyPeer == nil {
				t.anyPeer = &channelRules{}
			}
			b = t.anyPeer
		} else {
			if b = t.byPeer[rule.FromPeer]; b == nil {
				b = &channelRules{}
				t.byPeer[rule.FromPeer] = b
			}
		}
		b.add(rule.FromChannel, rule.ToChannel)
	}
	return t
}

func (b *channelRules) add(from, to Channel) {
	switch {
	case from == AnyChannel && to == AnyChannel:
		b.all = true
	case from == AnyChannel:
		b.to = addKey(b.to, uint32(to))
	case to == AnyChannel:
		b.from = addKey(b.from, uint32(from))
	default:
		b.pair = addKey(b.pair, pairKey(uint32(from), uint32(to)))
	}
}

func addKey[K comparable](m map[K]struct{}, k K) map[K]struct{} {
	if m == nil {
		m = make(map[K]struct{})
	}
	m[k] = struct{}{}
	return m
}

func pairKey(from, to uint32) uint64 { return uint64(from)<<32 | uint64(to) }

// permits reports whether a rule of the bucket matches; a nil bucket
// matches nothing.
func (b *channelRules) permits(from, to uint32) bool {
	if b == nil {
		return false
	}
	if b.all {
		return true
	}
	if _, ok := b.to[to]; ok {
		return true
	}
	if _, ok := b.from[from]; ok {
		return true
	}
	_, ok := b.pair[pairKey(from, to)]
	return ok
}

func (t *routeTable) sorted() []Route {
	if t == nil {
		return nil
	}
	return slices.SortedFunc(maps.Keys(t.rules), compareRoutes)
}
