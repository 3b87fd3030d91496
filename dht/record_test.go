package dht

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/record"
	ma "github.com/multiformats/go-multiaddr"
	"google.golang.org/protobuf/proto"

	"github.com/bitvmx/go-bitvmx-p2p/dht/pb"
	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
)

var testAddr = ma.StringCast("/ip4/127.0.0.1/tcp/4001")

func recordOf(id tu.Identity, now time.Time) Record {
	return Record{
		Peer:      id.ID,
		Addrs:     []ma.Multiaddr{testAddr},
		Seq:       uint64(now.UnixNano()),
		Published: now,
		Expires:   now.Add(time.Hour),
	}
}

func seal(t *testing.T, r Record, id tu.Identity) []byte {
	t.Helper()
	b, err := sealRecord(r, id.Key)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// foreignRecord is a payload signed for another domain or payload type.
type foreignRecord struct {
	domain, codec string
	msg           *pb.NodeRecord
}

func (f *foreignRecord) Domain() string                 { return f.domain }
func (f *foreignRecord) Codec() []byte                  { return []byte(f.codec) }
func (f *foreignRecord) MarshalRecord() ([]byte, error) { return proto.Marshal(f.msg) }
func (f *foreignRecord) UnmarshalRecord([]byte) error   { return nil }

func sealForeign(t *testing.T, id tu.Identity, domain, codec string, now time.Time) []byte {
	t.Helper()
	msg := &pb.NodeRecord{
		PeerId:            []byte(id.ID),
		Seq:               1,
		PublishedUnixNano: now.UnixNano(),
		ExpiresUnixNano:   now.Add(time.Hour).UnixNano(),
	}
	env, err := record.Seal(&foreignRecord{domain: domain, codec: codec, msg: msg}, id.Key)
	if err != nil {
		t.Fatal(err)
	}
	b, err := env.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRecordRoundTrip(t *testing.T) {
	id := tu.NewIdentity(t)
	now := time.Unix(1_800_000_000, 123)
	want := recordOf(id, now)
	got, err := openRecord(id.ID, seal(t, want, id))
	if err != nil {
		t.Fatal(err)
	}
	if got.Peer != want.Peer || got.Seq != want.Seq || !got.Published.Equal(want.Published) ||
		!got.Expires.Equal(want.Expires) || !sameAddrs(got.Addrs, want.Addrs) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if got.Age(now.Add(time.Minute)) != time.Minute || got.Expired(now) || !got.Expired(now.Add(time.Hour)) {
		t.Fatal("Age or Expired wrong")
	}
}

func TestValidator(t *testing.T) {
	victim, mallory, stranger := tu.NewIdentity(t), tu.NewIdentity(t), tu.NewIdentity(t)
	now := time.Unix(1_800_000_000, 0)
	v := &validator{
		list:   tu.Allowlist(t, victim, mallory),
		now:    func() time.Time { return now },
		retain: time.Hour,
	}
	key := RecordKey(victim.ID)
	good := recordOf(victim, now)
	with := func(f func(*Record)) Record { r := good; f(&r); return r }
	many := make([]ma.Multiaddr, MaxRecordAddrs+1)
	for i := range many {
		many[i] = testAddr
	}

	cases := []struct {
		name  string
		key   string
		value []byte
		want  error // nil: valid
	}{
		{"valid", key, seal(t, good, victim), nil},
		{"expired within retention", key, seal(t, with(func(r *Record) {
			r.Published, r.Expires = now.Add(-90*time.Minute), now.Add(-30*time.Minute)
		}), victim), nil},
		{"forged: signed by another key", key, seal(t, good, mallory), ErrInvalidRecord},
		{"about another peer", key, seal(t, with(func(r *Record) { r.Peer = mallory.ID }), victim), ErrInvalidRecord},
		{"under another peer's key", RecordKey(mallory.ID), seal(t, good, victim), ErrInvalidRecord},
		{"other signature domain", key, sealForeign(t, victim, "libp2p-peer-record", RecordPayloadType, now), ErrInvalidRecord},
		{"other payload type", key, sealForeign(t, victim, RecordDomain, "/other/1", now), ErrInvalidRecord},
		{"too many addresses", key, seal(t, with(func(r *Record) { r.Addrs = many }), victim), ErrInvalidRecord},
		{"address with /p2p", key, seal(t, with(func(r *Record) {
			r.Addrs = []ma.Multiaddr{testAddr.Encapsulate(ma.StringCast("/p2p/" + victim.ID.String()))}
		}), victim), ErrInvalidRecord},
		{"circuit relay address", key, seal(t, with(func(r *Record) {
			r.Addrs = []ma.Multiaddr{testAddr.Encapsulate(ma.StringCast("/p2p/" + mallory.ID.String() + "/p2p-circuit"))}
		}), victim), nil},
		{"circuit relay address with the peer's /p2p", key, seal(t, with(func(r *Record) {
			r.Addrs = []ma.Multiaddr{testAddr.Encapsulate(ma.StringCast("/p2p/" + mallory.ID.String() + "/p2p-circuit/p2p/" + victim.ID.String()))}
		}), victim), ErrInvalidRecord},
		{"expires before published", key, seal(t, with(func(r *Record) { r.Expires = r.Published }), victim), ErrInvalidRecord},
		{"lifetime too long", key, seal(t, with(func(r *Record) {
			r.Expires = r.Published.Add(MaxRecordLifetime + time.Second)
		}), victim), ErrInvalidRecord},
		{"published in the future", key, seal(t, with(func(r *Record) {
			r.Published, r.Expires = now.Add(MaxClockSkew+time.Minute), now.Add(2*time.Hour)
		}), victim), ErrInvalidRecord},
		{"expired beyond retention", key, seal(t, with(func(r *Record) {
			r.Published, r.Expires = now.Add(-3*time.Hour), now.Add(-2*time.Hour)
		}), victim), ErrExpired},
		{"not allowlisted", RecordKey(stranger.ID), seal(t, recordOf(stranger, now), stranger), ErrNotAllowlisted},
		{"garbage", key, []byte("not an envelope"), ErrInvalidRecord},
		{"oversized", key, bytes.Repeat([]byte{1}, MaxRecordSize+1), ErrInvalidRecord},
		{"other namespace", "/pk/" + string(victim.ID), seal(t, good, victim), ErrInvalidRecord},
		{"bad peer ID in key", "/" + Namespace + "/xyz", seal(t, good, victim), ErrInvalidRecord},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := v.Validate(c.key, c.value)
			switch {
			case c.want == nil && err != nil:
				t.Fatalf("rejected: %v", err)
			case c.want != nil && !errors.Is(err, c.want):
				t.Fatalf("got %v, want %v", err, c.want)
			}
			// Twice: the second goes through the cache of opened records.
			if err2 := v.Validate(c.key, c.value); (err == nil) != (err2 == nil) {
				t.Fatalf("second validation disagrees: %v then %v", err, err2)
			}
		})
	}
}

func TestValidatorSelfWhenNotListed(t *testing.T) {
	self := tu.NewIdentity(t)
	now := time.Now()
	v := &validator{list: tu.Allowlist(t), self: self.ID, now: time.Now, retain: time.Hour}
	if err := v.Validate(RecordKey(self.ID), seal(t, recordOf(self, now), self)); err != nil {
		t.Fatalf("own record rejected: %v", err)
	}
}

func TestValidatorSelect(t *testing.T) {
	victim, mallory := tu.NewIdentity(t), tu.NewIdentity(t)
	now := time.Now()
	v := &validator{list: tu.Allowlist(t, victim, mallory), now: time.Now, retain: time.Hour}
	key := RecordKey(victim.ID)
	older := seal(t, recordOf(victim, now), victim)
	newerRec := recordOf(victim, now.Add(time.Second))
	newer := seal(t, newerRec, victim)
	forgedRec := newerRec
	forgedRec.Seq = math.MaxUint64
	forged := seal(t, forgedRec, mallory)
	expiredRec := newerRec
	expiredRec.Seq++
	expiredRec.Published, expiredRec.Expires = now.Add(-2*time.Hour), now.Add(-time.Hour)
	newestExpired := seal(t, expiredRec, victim)

	cases := []struct {
		name   string
		values [][]byte
		want   int
	}{
		{"highest seq", [][]byte{older, newer}, 1},
		{"highest seq first", [][]byte{newer, older}, 0},
		{"forged higher seq ignored", [][]byte{older, forged, newer}, 2},
		{"newest wins even expired", [][]byte{newer, newestExpired}, 1},
		{"same bytes", [][]byte{newer, newer}, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := v.Select(key, c.values)
			if err != nil || got != c.want {
				t.Fatalf("got %d, %v; want %d", got, err, c.want)
			}
		})
	}
	if _, err := v.Select(key, [][]byte{forged, []byte("junk")}); !errors.Is(err, ErrInvalidRecord) {
		t.Fatalf("no valid record: got %v", err)
	}

	// Equal seqs (two records an honest node never signs) resolve the same
	// way whatever the order.
	twin := newerRec
	twin.Addrs = []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.2/tcp/1")}
	a, b := newer, seal(t, twin, victim)
	pick := func(vals ...[]byte) []byte {
		i, err := v.Select(key, vals)
		if err != nil {
			t.Fatal(err)
		}
		return vals[i]
	}
	if !bytes.Equal(pick(a, b), pick(b, a)) {
		t.Fatal("tie not broken deterministically")
	}
}

func TestParseBootstrap(t *testing.T) {
	a, b := tu.NewIdentity(t), tu.NewIdentity(t)
	s := "/ip4/127.0.0.1/tcp/1/p2p/" + a.ID.String() + ", /ip4/127.0.0.1/tcp/2/p2p/" + b.ID.String() +
		",/ip4/127.0.0.2/tcp/3/p2p/" + a.ID.String()
	infos, err := ParseBootstrap(s)
	if err != nil {
		t.Fatal(err)
	}
	got := map[peer.ID]int{}
	for _, ai := range infos {
		got[ai.ID] = len(ai.Addrs)
	}
	if len(got) != 2 || got[a.ID] != 2 || got[b.ID] != 1 {
		t.Fatalf("got %v", infos)
	}
	for _, bad := range []string{"/ip4/127.0.0.1/tcp/1", "nonsense", "/ip4/127.0.0.1/tcp/1/p2p/" + strings.Repeat("x", 10)} {
		if _, err := ParseBootstrap(bad); !errors.Is(err, ErrNoBootstrap) {
			t.Errorf("%q: got %v", bad, err)
		}
	}
	// An address without its peer is the likely slip: the error names it
	// and says what it lacks.
	_, err = ParseBootstrap("/ip4/127.0.0.3/tcp/14003")
	if err == nil || !strings.Contains(err.Error(), `"/ip4/127.0.0.3/tcp/14003"`) || !strings.Contains(err.Error(), "/p2p/<peer ID>") {
		t.Errorf("an address without /p2p/<id>: %v", err)
	}
}
