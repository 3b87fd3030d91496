package dht

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/record"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/bitvmx/go-bitvmx-p2p/dht/pb"
	"github.com/bitvmx/go-bitvmx-p2p/membership"
	"github.com/bitvmx/go-bitvmx-p2p/membership/sealbox"
)

// Sealed records (record format 2): what a node with Config.Membership
// publishes and accepts. docs/dht.md specifies the bytes.
const (
	// SealedRecordPayloadType is the payload type of sealed record
	// envelopes; their domain is RecordDomain, as for format 1.
	SealedRecordPayloadType = "/bitvmx/node-record/2"
	// MaxSealedRecordSize bounds a sealed record, envelope included: about
	// 100 bytes per member, for up to membership.MaxMembers members.
	MaxSealedRecordSize = 128 << 10
	// SealInfo is the info string (domain separation) of the content key
	// wraps of sealed records.
	SealInfo = "bitvmx-node-record/2"
)

// sealedEnvelope is the signed payload of a sealed record.
type sealedEnvelope struct {
	msg *pb.SealedNodeRecord
}

var _ record.Record = (*sealedEnvelope)(nil)

// Domain is the envelope signature domain, RecordDomain.
func (*sealedEnvelope) Domain() string { return RecordDomain }

// Codec is the envelope payload type, SealedRecordPayloadType.
func (*sealedEnvelope) Codec() []byte { return []byte(SealedRecordPayloadType) }

// MarshalRecord encodes the payload.
func (r *sealedEnvelope) MarshalRecord() ([]byte, error) {
	return proto.MarshalOptions{Deterministic: true}.Marshal(r.msg)
}

// UnmarshalRecord decodes the payload.
func (r *sealedEnvelope) UnmarshalRecord(b []byte) error {
	r.msg = new(pb.SealedNodeRecord)
	return proto.Unmarshal(b, r.msg)
}

// sealSealedRecord encrypts r for the members of doc and signs the result
// with key. Members whose key cannot be sealed to are left out and
// returned in skipped.
func sealSealedRecord(r Record, key crypto.PrivKey, doc *membership.Document) (data []byte, skipped []sealbox.Skipped, err error) {
	inner, err := proto.MarshalOptions{Deterministic: true}.Marshal(recordMsg(r))
	if err != nil {
		return nil, nil, fmt.Errorf("dht: marshal record: %w", err)
	}
	members := doc.Body().Members
	ids := make([]peer.ID, len(members))
	for i, m := range members {
		ids[i] = m.ID
	}
	box, skipped, err := sealbox.Seal(SealInfo, ids, inner)
	if err != nil {
		return nil, skipped, fmt.Errorf("dht: seal record for %s: %w", doc, err)
	}
	h := doc.Hash()
	msg := &pb.SealedNodeRecord{
		PeerId:            []byte(r.Peer),
		Seq:               r.Seq,
		PublishedUnixNano: r.Published.UnixNano(),
		ExpiresUnixNano:   r.Expires.UnixNano(),
		MembershipVersion: doc.Version(),
		MembershipHash:    h[:],
		Ciphertext:        box.Ciphertext,
	}
	for _, w := range box.Wraps {
		msg.Wraps = append(msg.Wraps, &pb.KeyWrap{Hint: w.Hint, Enc: w.Enc, WrappedKey: w.Key})
	}
	env, err := record.Seal(&sealedEnvelope{msg: msg}, key)
	if err != nil {
		return nil, skipped, fmt.Errorf("dht: sign sealed record: %w", err)
	}
	if data, err = env.Marshal(); err != nil {
		return nil, skipped, fmt.Errorf("dht: marshal sealed record: %w", err)
	}
	if len(data) > MaxSealedRecordSize {
		return nil, skipped, fmt.Errorf("dht: sealed record of %d bytes for %d members exceeds %d", len(data), len(msg.Wraps), MaxSealedRecordSize)
	}
	return data, skipped, nil
}

// openSealedHeader verifies data as p's sealed record without decrypting
// it: the envelope's signature, domain and payload type, that p's key
// signed it and that it speaks of p, and the header's limits. The Record
// it returns has no Addrs; unsealRecord reads them. Like openRecord, it
// leaves the expiry and the allowlist to the validator.
func openSealedHeader(p peer.ID, data []byte) (Record, error) {
	if len(data) > MaxSealedRecordSize {
		return Record{}, fmt.Errorf("%w: %d bytes, limit %d", ErrInvalidRecord, len(data), MaxSealedRecordSize)
	}
	if err := formatMismatch(data, SealedRecordPayloadType); err != nil {
		return Record{}, err
	}
	var se sealedEnvelope
	env, err := record.ConsumeTypedEnvelope(data, &se)
	if err != nil {
		return Record{}, fmt.Errorf("%w: %w", ErrInvalidRecord, err)
	}
	if !bytes.Equal(env.PayloadType, []byte(SealedRecordPayloadType)) {
		return Record{}, fmt.Errorf("%w: payload type %q", ErrInvalidRecord, bytes.ToValidUTF8(env.PayloadType, []byte("?")))
	}
	signer, err := peer.IDFromPublicKey(env.PublicKey)
	if err != nil {
		return Record{}, fmt.Errorf("%w: signer: %w", ErrInvalidRecord, err)
	}
	if signer != p {
		return Record{}, fmt.Errorf("%w: signed by %s, not by %s", ErrInvalidRecord, signer, p)
	}
	return sealedHeader(p, se.msg)
}

// sealedHeader checks the clear fields of m, p's sealed record.
func sealedHeader(p peer.ID, m *pb.SealedNodeRecord) (Record, error) {
	if peer.ID(m.GetPeerId()) != p {
		return Record{}, fmt.Errorf("%w: record is about another peer", ErrInvalidRecord)
	}
	if n := len(m.GetWraps()); n == 0 || n > membership.MaxMembers {
		return Record{}, fmt.Errorf("%w: %d key wraps, want 1 to %d", ErrInvalidRecord, n, membership.MaxMembers)
	}
	if len(m.GetMembershipHash()) != len(membership.Hash{}) || m.GetMembershipVersion() == 0 {
		return Record{}, fmt.Errorf("%w: no membership version and hash", ErrInvalidRecord)
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
	return r, nil
}

// unsealRecord decrypts data, p's sealed record whose envelope the
// validator has verified, with self, and returns the record with its
// addresses. It fails with ErrNotRecipient when the record was not sealed
// to self, and ErrInvalidRecord when it does not decrypt or its content
// disagrees with its header.
func unsealRecord(p peer.ID, data []byte, self crypto.PrivKey) (Record, error) {
	env, err := record.UnmarshalEnvelope(data)
	if err != nil {
		return Record{}, fmt.Errorf("%w: %w", ErrInvalidRecord, err)
	}
	m := new(pb.SealedNodeRecord)
	if err := proto.Unmarshal(env.RawPayload, m); err != nil {
		return Record{}, fmt.Errorf("%w: %w", ErrInvalidRecord, err)
	}
	hdr, err := sealedHeader(p, m)
	if err != nil {
		return Record{}, err
	}
	box := sealbox.Box{Ciphertext: m.GetCiphertext(), Wraps: make([]sealbox.Wrap, 0, len(m.GetWraps()))}
	for _, w := range m.GetWraps() {
		box.Wraps = append(box.Wraps, sealbox.Wrap{Hint: w.GetHint(), Enc: w.GetEnc(), Key: w.GetWrappedKey()})
	}
	inner, err := sealbox.Open(SealInfo, self, box)
	switch {
	case errors.Is(err, sealbox.ErrNotRecipient):
		return hdr, fmt.Errorf("%w: %s's record is sealed to the %d members of membership version %d (%x), which do not include this node: %w",
			ErrNotRecipient, p, len(m.GetWraps()), m.GetMembershipVersion(), m.GetMembershipHash()[:4], err)
	case err != nil:
		return hdr, fmt.Errorf("%w: %w", ErrInvalidRecord, err)
	}
	msg := new(pb.NodeRecord)
	if err := proto.Unmarshal(inner, msg); err != nil {
		return hdr, fmt.Errorf("%w: sealed content: %w", ErrInvalidRecord, err)
	}
	r, err := recordFromMsg(p, msg)
	if err != nil {
		return hdr, err
	}
	if r.Seq != hdr.Seq || !r.Published.Equal(hdr.Published) || !r.Expires.Equal(hdr.Expires) {
		return hdr, fmt.Errorf("%w: sealed content disagrees with the header", ErrInvalidRecord)
	}
	return r, nil
}

// formatMismatch says clearly when data is a record of the other format
// than want, the one this node uses: the format tells whether the
// publisher runs with a membership document. It returns nil for anything
// else, which the full check then refuses with its own reason.
func formatMismatch(data []byte, want string) error {
	env, err := record.UnmarshalEnvelope(data)
	if err != nil {
		return nil
	}
	got := string(env.PayloadType)
	switch {
	case got == want:
		return nil
	case got == RecordPayloadType:
		return fmt.Errorf("%w: %w: a plain record (%s), but this node runs with a membership document and accepts sealed records (%s) only",
			ErrInvalidRecord, errOtherFormat, got, want)
	case got == SealedRecordPayloadType:
		return fmt.Errorf("%w: %w: a sealed record (%s), but this node runs without a membership document and cannot read it",
			ErrInvalidRecord, errOtherFormat, got)
	}
	return nil
}

// errOtherFormat marks a record refused for its format alone.
var errOtherFormat = errors.New("record of the other format")

// warnFormat logs, once per peer, a record refused for its format: the
// sign of a network whose nodes disagree on running with a membership
// document, which kad-dht would otherwise hide (it drops invalid records
// silently, and lookups then find nothing).
func (d *DHT) warnFormat(p peer.ID, err error) {
	if _, seen := d.formatWarned.LoadOrStore(p, true); !seen {
		d.log.Warn("refused a DHT record of the other format: every node of the DHT must run with a membership document, or none",
			zap.Stringer("peer", p), zap.Error(err))
	}
}

// sealOwn signs r, the node's own record: sealed to the members of the
// membership document in force when Config.Membership is set, plain
// otherwise.
func (d *DHT) sealOwn(r Record) ([]byte, error) {
	key := d.node.Config().Key
	if d.cfg.Membership == nil {
		return sealRecord(r, key)
	}
	doc := d.cfg.Membership()
	if doc == nil {
		return nil, errors.New("dht: Config.Membership returned no document: nothing to seal the record to")
	}
	data, skipped, err := sealSealedRecord(r, key, doc)
	for _, s := range skipped {
		// A member's key that cannot take part in key agreement (one the
		// membership check let through): it cannot read this node's
		// record, and the others still can.
		d.log.Warn("sealed record: a member is left out", zap.Stringer("member", s.ID), zap.Error(s.Err))
	}
	return data, err
}

// unseal returns the content of p's sealed record data, whose header hdr
// the validator verified. The record of an inactive node stays reportable
// without its content: when this node cannot read an expired record,
// unseal returns its header, and Find reports it expired.
func (d *DHT) unseal(p peer.ID, hdr Record, data []byte) (Record, error) {
	r, err := unsealRecord(p, data, d.node.Config().Key)
	if err != nil {
		if hdr.Expired(d.cfg.Now()) {
			d.log.Debug("expired sealed record not readable", zap.Stringer("peer", p), zap.Error(err))
			return hdr, nil
		}
		return Record{}, err
	}
	return r, nil
}
