package dht

import (
	"bytes"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/record"
	ma "github.com/multiformats/go-multiaddr"
	"google.golang.org/protobuf/proto"

	"github.com/bitvmx/go-bitvmx-p2p/dht/pb"
)

// Names on the wire. They are part of the protocol (docs/dht.md): changing
// one splits the network.
const (
	// ProtocolPrefix is the kad-dht protocol prefix: the DHT speaks
	// /bitvmx/kad/1.0.0, so it never mixes with the public IPFS DHT.
	ProtocolPrefix = "/bitvmx"
	// Namespace is the DHT key namespace of node records: a node's record
	// is stored under "/bitvmx-node/" + its binary peer ID.
	Namespace = "bitvmx-node"
	// RecordDomain is the signature domain of node record envelopes. A
	// signature made for any other libp2p record type does not verify here.
	RecordDomain = "bitvmx-node-record"
	// RecordPayloadType is the payload type of node record envelopes.
	RecordPayloadType = "/bitvmx/node-record/1"
)

// Limits on what a record may say. A record breaking one is invalid.
const (
	// MaxRecordSize bounds a sealed record, envelope included.
	MaxRecordSize = 4 << 10
	// MaxRecordAddrs bounds the addresses in one record.
	MaxRecordAddrs = 32
	// MaxRecordLifetime bounds Expires-Published: a node cannot vouch for
	// itself for longer, so a record cannot keep a dead node "active".
	MaxRecordLifetime = 7 * 24 * time.Hour
	// MaxClockSkew is how far in the future a record's Published time may
	// be, by the reader's clock.
	MaxClockSkew = 10 * time.Minute
)

// Record is a node record that passed verification: Peer's own key signed
// it, so Addrs, Seq, Published and Expires are what Peer said.
type Record struct {
	// Peer is the node the record is about, and whose key signed it.
	Peer peer.ID
	// Addrs are Peer's transport addresses (no /p2p component), and its
	// circuit relay addresses (<relay addr>/p2p/<relay>/p2p-circuit).
	Addrs []ma.Multiaddr
	// Seq orders Peer's records: the highest one is current.
	Seq uint64
	// Published is when Peer made the record, by Peer's clock.
	Published time.Time
	// Expires is when the record stops vouching for Peer. Past it, Peer
	// counts as inactive.
	Expires time.Time
}

// Age is how old the record is at now.
func (r Record) Age(now time.Time) time.Duration { return now.Sub(r.Published) }

// Expired reports whether the record has expired at now, which means its
// node counts as inactive.
func (r Record) Expired(now time.Time) bool { return !now.Before(r.Expires) }

// RecordKey is the DHT key under which p's record is stored.
func RecordKey(p peer.ID) string { return "/" + Namespace + "/" + string(p) }

// parseRecordKey returns the peer whose record key is key.
func parseRecordKey(key string) (peer.ID, error) {
	prefix := "/" + Namespace + "/"
	if len(key) <= len(prefix) || key[:len(prefix)] != prefix {
		return "", fmt.Errorf("%w: key is not in the %s namespace", ErrInvalidRecord, Namespace)
	}
	p, err := peer.IDFromBytes([]byte(key[len(prefix):]))
	if err != nil {
		return "", fmt.Errorf("%w: key: %w", ErrInvalidRecord, err)
	}
	return p, nil
}

// envelopeRecord is the signed payload: it implements libp2p's record.Record
// so that the signed envelope machinery (core/record) can seal and open it.
type envelopeRecord struct {
	msg *pb.NodeRecord
}

var _ record.Record = (*envelopeRecord)(nil)

// Domain is the envelope signature domain, RecordDomain.
func (*envelopeRecord) Domain() string { return RecordDomain }

// Codec is the envelope payload type, RecordPayloadType.
func (*envelopeRecord) Codec() []byte { return []byte(RecordPayloadType) }

// MarshalRecord encodes the payload.
func (r *envelopeRecord) MarshalRecord() ([]byte, error) {
	return proto.MarshalOptions{Deterministic: true}.Marshal(r.msg)
}

// UnmarshalRecord decodes the payload.
func (r *envelopeRecord) UnmarshalRecord(b []byte) error {
	r.msg = new(pb.NodeRecord)
	return proto.Unmarshal(b, r.msg)
}

// sealRecord signs r with key into a marshalled envelope.
func sealRecord(r Record, key crypto.PrivKey) ([]byte, error) {
	env, err := record.Seal(&envelopeRecord{msg: recordMsg(r)}, key)
	if err != nil {
		return nil, fmt.Errorf("dht: seal record: %w", err)
	}
	b, err := env.Marshal()
	if err != nil {
		return nil, fmt.Errorf("dht: marshal record: %w", err)
	}
	return b, nil
}

// recordMsg is r in its wire form.
func recordMsg(r Record) *pb.NodeRecord {
	msg := &pb.NodeRecord{
		PeerId:            []byte(r.Peer),
		Seq:               r.Seq,
		PublishedUnixNano: r.Published.UnixNano(),
		ExpiresUnixNano:   r.Expires.UnixNano(),
	}
	for _, a := range r.Addrs {
		msg.Addrs = append(msg.Addrs, a.Bytes())
	}
	return msg
}

// openRecord verifies data as p's record: the envelope's signature, domain
// and payload type, that p's key signed it and that it speaks of p, and that
// its fields are well formed and within the limits. It does not check the
// expiry or the allowlist: that is the validator's job.
func openRecord(p peer.ID, data []byte) (Record, error) {
	if len(data) > MaxRecordSize {
		return Record{}, fmt.Errorf("%w: %d bytes, limit %d", ErrInvalidRecord, len(data), MaxRecordSize)
	}
	var er envelopeRecord
	env, err := record.ConsumeTypedEnvelope(data, &er)
	if err != nil {
		return Record{}, fmt.Errorf("%w: %w", ErrInvalidRecord, err)
	}
	if !bytes.Equal(env.PayloadType, []byte(RecordPayloadType)) {
		return Record{}, fmt.Errorf("%w: payload type %q", ErrInvalidRecord, env.PayloadType)
	}
	signer, err := peer.IDFromPublicKey(env.PublicKey)
	if err != nil {
		return Record{}, fmt.Errorf("%w: signer: %w", ErrInvalidRecord, err)
	}
	if signer != p {
		return Record{}, fmt.Errorf("%w: signed by %s, not by %s", ErrInvalidRecord, signer, p)
	}
	return recordFromMsg(p, er.msg)
}

// recordFromMsg checks the fields of m, a record said to be p's, and
// returns them as a Record.
func recordFromMsg(p peer.ID, m *pb.NodeRecord) (Record, error) {
	if peer.ID(m.GetPeerId()) != p {
		return Record{}, fmt.Errorf("%w: record is about another peer", ErrInvalidRecord)
	}
	if len(m.GetAddrs()) > MaxRecordAddrs {
		return Record{}, fmt.Errorf("%w: %d addresses, limit %d", ErrInvalidRecord, len(m.GetAddrs()), MaxRecordAddrs)
	}
	r := Record{
		Peer:      p,
		Seq:       m.GetSeq(),
		Published: time.Unix(0, m.GetPublishedUnixNano()),
		Expires:   time.Unix(0, m.GetExpiresUnixNano()),
	}
	if !r.Expires.After(r.Published) || r.Expires.Sub(r.Published) > MaxRecordLifetime {
		return Record{}, fmt.Errorf("%w: lifetime %s outside (0, %s]", ErrInvalidRecord, r.Expires.Sub(r.Published), MaxRecordLifetime)
	}
	for _, b := range m.GetAddrs() {
		a, err := ma.NewMultiaddrBytes(b)
		if err != nil {
			return Record{}, fmt.Errorf("%w: address: %w", ErrInvalidRecord, err)
		}
		if !recordAddrOK(a) {
			return Record{}, fmt.Errorf("%w: address %s has a /p2p component", ErrInvalidRecord, a)
		}
		r.Addrs = append(r.Addrs, a)
	}
	return r, nil
}

// recordAddrOK reports whether a may stand in a record: a transport address
// without /p2p, or a circuit relay address, whose only /p2p names the relay
// right before /p2p-circuit (the peer's own ID is the record's).
func recordAddrOK(a ma.Multiaddr) bool {
	for i, c := range a {
		if c.Code() == ma.P_P2P && (i+1 >= len(a) || a[i+1].Code() != ma.P_CIRCUIT) {
			return false
		}
	}
	return true
}
