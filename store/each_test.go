package store

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

// EachOutgoing and EachDeadLetter see what OutgoingList and DeadLetters
// return, in the same order, across several pages; fn's error and ctx end
// the walk.
func TestEachRecord(t *testing.T) {
	s := openT(t, t.TempDir(), Options{})
	closeT(t, s)
	const n = 3*pageRecords + 5
	commitT(t, s, func(b *Batch) {
		for id := uint64(1); id <= n; id++ {
			b.PutOutgoing(outgoing(id * 7919)) // not in key order as written
			b.PutDeadLetter(deadLetter(id))
		}
	})
	var out []Outgoing
	if err := s.EachOutgoing(context.Background(), func(o Outgoing) error { out = append(out, o); return nil }); err != nil {
		t.Fatal(err)
	}
	if want, err := s.OutgoingList(); err != nil || !reflect.DeepEqual(out, want) {
		t.Fatalf("EachOutgoing saw %d records, OutgoingList %d (%v): not the same", len(out), len(want), err)
	}
	var dls []DeadLetter
	if err := s.EachDeadLetter(context.Background(), func(d DeadLetter) error { dls = append(dls, d); return nil }); err != nil {
		t.Fatal(err)
	}
	if want, err := s.DeadLetters(); err != nil || !reflect.DeepEqual(dls, want) {
		t.Fatalf("EachDeadLetter saw %d records, DeadLetters %d (%v): not the same", len(dls), len(want), err)
	}
	// The stamps: each record's ID and time, in the same order.
	var stamps []Stamp
	if err := s.EachOutgoingStamp(context.Background(), func(st Stamp) error { stamps = append(stamps, st); return nil }); err != nil {
		t.Fatal(err)
	}
	for i, o := range out {
		if i >= len(stamps) || stamps[i].ID != o.ID || !stamps[i].At.Equal(o.Created) {
			t.Fatalf("outgoing stamp %d: %+v, record %d created %v (%d stamps for %d records)", i, stamps, o.ID, o.Created, len(stamps), len(out))
		}
	}
	stamps = stamps[:0]
	if err := s.EachDeadLetterStamp(context.Background(), func(st Stamp) error { stamps = append(stamps, st); return nil }); err != nil {
		t.Fatal(err)
	}
	for i, d := range dls {
		if i >= len(stamps) || stamps[i].ID != d.ID || !stamps[i].At.Equal(d.Failed) {
			t.Fatalf("dead letter stamp %d: %+v, record %d failed %v (%d stamps for %d records)", i, stamps[min(i, len(stamps)-1)], d.ID, d.Failed, len(stamps), len(dls))
		}
	}

	stop := errors.New("stop")
	seen := 0
	err := s.EachOutgoing(context.Background(), func(Outgoing) error { seen++; return stop })
	if !errors.Is(err, stop) || seen != 1 {
		t.Fatalf("EachOutgoing with fn failing: %v after %d records; want fn's error after 1", err, seen)
	}
	ctx, cancel := context.WithCancel(context.Background())
	seen = 0
	err = s.EachOutgoing(ctx, func(Outgoing) error {
		if seen++; seen == 2 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) || seen != 2 {
		t.Fatalf("EachOutgoing with ctx cancelled: %v after %d records; want context.Canceled after 2", err, seen)
	}

	// A record committed between pages is seen once, after the walk's
	// position; the store is not locked while fn runs.
	seen = 0
	err = s.EachOutgoing(context.Background(), func(o Outgoing) error {
		if seen++; seen == 1 {
			commitT(t, s, func(b *Batch) { b.PutOutgoing(outgoing(1 << 24)) })
		}
		return nil
	})
	if err != nil || seen != n+1 {
		t.Fatalf("EachOutgoing with a commit during the walk: %v, %d records; want %d", err, seen, n+1)
	}

	if c, err := s.Count(); err != nil || c != (Counts{Outgoing: n + 1, DeadLetters: n}) {
		t.Fatalf("Count = %+v, %v; want %d outgoing, %d dead letters", c, err, n+1, n)
	}
	if o, ok, err := s.Outgoing(7919); err != nil || !ok || !reflect.DeepEqual(o, outgoing(7919)) {
		t.Fatalf("Outgoing(7919) = %+v, %v, %v", o, ok, err)
	}
	if _, ok, err := s.Outgoing(1); err != nil || ok {
		t.Fatalf("Outgoing(1) = %v, %v; want none", ok, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.EachOutgoing(context.Background(), func(Outgoing) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("EachOutgoing after Close: %v, want ErrClosed", err)
	}
}

// A page holds at most pageBytes of values (plus one record): large
// payloads make small pages, so a walk's memory does not grow with the
// outbox.
func TestEachRecordPageBounded(t *testing.T) {
	s := openT(t, t.TempDir(), Options{})
	closeT(t, s)
	big := bytes.Repeat([]byte{'x'}, 1<<20)
	commitT(t, s, func(b *Batch) {
		for id := uint64(1); id <= 12; id++ {
			o := outgoing(id)
			o.Payload = big
			b.PutOutgoing(o)
		}
	})
	lower, upper := tableOutgoing.bounds()
	var pages []int
	for from := lower; from != nil; {
		var page []Outgoing
		err := s.view(false, func(r pebble.Reader) (err error) {
			page, from, err = readPage(r, s.path, tableOutgoing, from, upper, outgoingKV)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		pages = append(pages, len(page))
	}
	want := pageBytes/len(big) + 1
	for _, n := range pages {
		if n > want {
			t.Fatalf("pages of %v records of 1 MiB; want at most %d a page", pages, want)
		}
	}
}
