package store

import "fmt"

// Batch is a set of writes applied atomically, in order. The zero value is an
// empty batch.
//
// Each method encodes its record at once, so the caller may reuse the slices
// it passed (payloads) as soon as the method returns. A record the store
// cannot keep makes the whole batch fail with ErrInvalid when committed. A
// batch may be committed once; it must not be changed while a commit of it is
// pending.
type Batch struct {
	ops  []op
	err  error // the first invalid record, reported at commit
	adds bool  // any put: a full store looks at what the batch adds (stager.grows)
	dels bool  // any delete: a full store reclaims space after it
	size int64 // estimated bytes the puts add to the store
}

type opKind uint8

const (
	opPut    opKind = iota + 1 // write unconditionally
	opAdd                      // write unless the key exists
	opDelete                   // delete if present
)

// op is one write, already encoded.
type op struct {
	kind  opKind
	table tableID
	key   []byte // the key within the table, without its prefix
	value []byte
}

// elemOverhead approximates pebble's per-entry cost beyond key and value (the
// table prefix, the write-ahead log's kind and lengths, an sstable's 8-byte
// trailer), for the ErrFull estimate of what a batch adds.
const elemOverhead = 16

func (b *Batch) put(kind opKind, table tableID, key, value []byte) {
	if len(value) > maxValueLen {
		b.fail(fmt.Errorf("record of %d bytes, more than %d", len(value), maxValueLen))
	}
	b.ops = append(b.ops, op{kind: kind, table: table, key: key, value: value})
	b.adds = true
	b.size += int64(len(key) + len(value) + elemOverhead)
}

func (b *Batch) del(table tableID, key []byte) {
	b.ops = append(b.ops, op{kind: opDelete, table: table, key: key})
	b.dels = true
}

// fail records the batch's first invalid record; the op is still counted by
// Len so that Len matches the calls made.
func (b *Batch) fail(err error) {
	if b.err == nil {
		b.err = fmt.Errorf("%w: op %d: %w", ErrInvalid, len(b.ops), err)
	}
}

// PutOutgoing writes o to the outbox, replacing any record with its ID.
func (b *Batch) PutOutgoing(o Outgoing) {
	if err := o.validate(); err != nil {
		b.fail(fmt.Errorf("outgoing %d: %w", o.ID, err))
		b.ops = append(b.ops, op{})
		return
	}
	b.put(opPut, tableOutgoing, idKey(o.ID), encodeOutgoing(&o))
}

// DeleteOutgoing removes the outbox record with this ID, if any.
func (b *Batch) DeleteOutgoing(id uint64) {
	b.del(tableOutgoing, idKey(id))
}

// AddIncoming writes in only if no record for (in.Peer, in.ID) exists yet,
// checked when the batch is committed, against the store and the batches
// committed before it in the same group: a resent request must not reset a
// record the application already answered or handled.
func (b *Batch) AddIncoming(in Incoming) {
	b.putIncoming(opAdd, in)
}

// PutIncoming writes in unconditionally, replacing any record for
// (in.Peer, in.ID): the way state changes are recorded.
func (b *Batch) PutIncoming(in Incoming) {
	b.putIncoming(opPut, in)
}

func (b *Batch) putIncoming(kind opKind, in Incoming) {
	if err := in.validate(); err != nil {
		b.fail(fmt.Errorf("incoming %q/%d: %w", in.Peer, in.ID, err))
		b.ops = append(b.ops, op{})
		return
	}
	b.put(kind, tableIncoming, incomingKey(in.Peer, in.ID), encodeIncoming(&in))
}

// DeleteIncoming removes the record for (peer, id), if any.
func (b *Batch) DeleteIncoming(peer string, id uint64) {
	if err := validPeer(peer); err != nil {
		b.fail(fmt.Errorf("delete incoming %q/%d: %w", peer, id, err))
		b.ops = append(b.ops, op{})
		return
	}
	b.del(tableIncoming, incomingKey(peer, id))
}

// PutDeadLetter writes d to the dead letters, replacing any with its ID.
func (b *Batch) PutDeadLetter(d DeadLetter) {
	if err := d.validate(); err != nil {
		b.fail(fmt.Errorf("dead letter %d: %w", d.ID, err))
		b.ops = append(b.ops, op{})
		return
	}
	b.put(opPut, tableDeadLetters, idKey(d.ID), encodeDeadLetter(&d))
}

// DeleteDeadLetter removes the dead letter with this ID, if any.
func (b *Batch) DeleteDeadLetter(id uint64) {
	b.del(tableDeadLetters, idKey(id))
}

// Len returns the number of writes in the batch.
func (b *Batch) Len() int { return len(b.ops) }

// Adds reports whether the batch writes any record (a put), which a full
// store refuses if the batch grows the records (Options.MaxBytes); a batch
// of deletes alone always goes through.
func (b *Batch) Adds() bool { return b.adds }
