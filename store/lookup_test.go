package store

import (
	"errors"
	"reflect"
	"testing"
)

func TestDeadLetterLookup(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{})
	commitT(t, s, func(b *Batch) {
		b.PutDeadLetter(deadLetter(5))
		b.PutDeadLetter(deadLetter(6))
		b.PutOutgoing(outgoing(7)) // another table, same key
	})
	if got, ok, err := s.DeadLetter(5); err != nil || !ok || !reflect.DeepEqual(got, deadLetter(5)) {
		t.Errorf("DeadLetter(5) = %+v, %v, %v; want %+v", got, ok, err, deadLetter(5))
	}
	for _, id := range []uint64{0, 4, 7, 1 << 63} {
		if got, ok, err := s.DeadLetter(id); err != nil || ok {
			t.Errorf("DeadLetter(%d) = %+v, %v, %v; want none", id, got, ok, err)
		}
	}
	// A record that does not decode fails the lookup as it fails Load.
	if err := s.db.Set(tableDeadLetters.key(idKey(8)), []byte("\x09"), nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.DeadLetter(8); !errors.Is(err, ErrCorrupt) {
		t.Errorf("DeadLetter of a damaged record: %v, want ErrCorrupt", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.DeadLetter(5); !errors.Is(err, ErrClosed) {
		t.Errorf("DeadLetter after Close: %v, want ErrClosed", err)
	}
}
