package store_test

import (
	"fmt"
	"log"
	"os"
	"time"

	"github.com/bitvmx/go-bitvmx-p2p/store"
)

func ExampleOpen() {
	dir, err := os.MkdirTemp("", "store-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	s, err := store.Open(dir, store.Options{})
	if err != nil {
		log.Fatal(err)
	}

	// Request accepted: on disk before the caller hears so.
	var b store.Batch
	b.PutOutgoing(store.Outgoing{
		ID:      1,
		Peer:    "16Uiu2HAm...",
		Kind:    store.KindRequest,
		Payload: []byte("hello"),
		Created: time.Now(),
	})
	if err := s.Commit(&b); err != nil {
		log.Fatal(err)
	}

	// At the next start, the handler resumes from what is on disk.
	st, err := s.Load()
	if err != nil {
		log.Fatal(err)
	}
	for _, o := range st.Outgoing {
		fmt.Printf("exchange %d to %s: %s %q\n", o.ID, o.Peer, o.Kind, o.Payload)
	}
	if err := s.Close(); err != nil {
		log.Fatal(err)
	}
	// Output:
	// exchange 1 to 16Uiu2HAm...: request "hello"
}
