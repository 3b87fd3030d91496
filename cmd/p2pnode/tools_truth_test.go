package main

// The tool commands must finish and tell the truth for every input they
// accept: bench at its largest payload, outbox retry of an ended exchange.

import (
	"bytes"
	"crypto/rand"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/bitvmx/go-bitvmx-p2p/handler"
	"github.com/bitvmx/go-bitvmx-p2p/internal/bench"
	"github.com/bitvmx/go-bitvmx-p2p/store"
)

// The bare echo baseline wrote a whole message before reading its echo:
// above what yamux buffers both ways (about 512 KiB) the echoing host
// blocks on the full receive window, stops reading, and both ends wait
// for ever. bench --payload accepted up to 1 MiB and hung there.
func TestEchoBaselineLargePayloadDoesNotHang(t *testing.T) {
	p, err := bench.NewBarePair()
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	done := make(chan error, 1)
	go func() {
		_, err := p.RoundTrips(t.Context(), 2, 1<<20)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("1 MiB echo round trips: %v", err)
		}
	case <-time.After(waitTimeout):
		p.Close() // resets the stream: the goroutine returns
		t.Fatalf("1 MiB echo round trips still blocked after %s: write-then-read deadlock", waitTimeout)
	}
}

// Every --payload bench accepts must run: 1 MiB hung in the echo baseline,
// and the exchange workloads refuse a payload that fills the nodes' whole
// message limit (the handler's envelope does not fit any more), exiting 1
// after validation had accepted it.
func TestBenchLargestPayloadRuns(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	size := 1 << 20
	r := runCLI(t, dir, "bench", "--payload", strconv.Itoa(size), "--count", "1")
	if r.code == exitUsage {
		m := regexp.MustCompile(`between 1 and (\d+) bytes`).FindStringSubmatch(r.stderr)
		if m == nil {
			t.Fatalf("usage error without the bound: %q", r.stderr)
		}
		size, _ = strconv.Atoi(m[1])
		r = runCLI(t, dir, "bench", "--payload", strconv.Itoa(size), "--count", "1")
	}
	if r.code != 0 {
		t.Fatalf("bench --payload %d (accepted by its validation): exit %d (-1: killed after %s), stderr %q",
			size, r.code, waitTimeout, lastLine(r.stderr))
	}
}

func lastLine(s string) string {
	ls := lines(string(bytes.ReplaceAll([]byte(s), []byte("\r"), []byte("\n"))))
	if len(ls) == 0 {
		return ""
	}
	return ls[len(ls)-1]
}

// A node killed after a request failed for good and before it printed
// that outcome leaves the exchange twice in its store (run keeps outcomes
// until printed, AckOutcomes): ended in the outbox, and in the dead
// letters. "outbox retry" runs the ended exchange again, but left the dead
// letter: once the retried exchange is under way (or done), deadletters
// still lists it as failed, and "deadletters retry" starts it a second
// time with the same ID, a repeated request.
func TestOutboxRetryOfEndedExchangeDropsItsDeadLetter(t *testing.T) {
	dir := t.TempDir()
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	to, err := peer.IDFromPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	const id = 0x3f2a9c0d4e5b6a71
	created := time.Now().Add(-time.Minute)
	rec := store.Outgoing{ID: id, Peer: string(to), Kind: store.KindRequest, Payload: []byte("pay 1 BTC"),
		Tag: "7", Attempts: 5, Created: created}
	ended := rec
	ended.Ended, ended.Reason, ended.Error = time.Now(), "reply_timeout", "no reply"
	var b store.Batch
	b.PutDeadLetter(store.DeadLetter{Outgoing: rec, Reason: "reply_timeout", Error: "no reply", Failed: ended.Ended})
	b.PutOutgoing(ended)
	if err := st.Commit(&b); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	var out, errOut bytes.Buffer
	args := []string{"outbox", "retry", "--data-dir", dir, handler.ExchangeID(id).String()}
	if code := execute(args, stdio{out: &out, err: &errOut}); code != 0 {
		t.Fatalf("outbox retry: exit %d: %s", code, errOut.String())
	}

	st, err = store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	obox, err := st.OutgoingList()
	if err != nil {
		t.Fatal(err)
	}
	if len(obox) != 1 || !obox[0].Ended.IsZero() || obox[0].Attempts != 0 {
		t.Fatalf("outbox after retry: %+v", obox)
	}
	dls, err := st.DeadLetters()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dls {
		if d.ID == id {
			t.Fatalf("exchange %s runs again from the outbox and is still a dead letter (%s): "+
				"deadletters retry would start it a second time", handler.ExchangeID(id), d.Reason)
		}
	}
}
