package handler_test

import (
	"testing"
	"time"
)

func TestSnapshot(t *testing.T) {
	a, b := pair(t)
	echo(t, b)
	if s := a.Snapshot(); s.Active != 0 || s.Queued != 0 || len(s.Peers) != 0 {
		t.Fatalf("idle handler: %+v", s)
	}
	before := time.Now()
	id, err := a.Request(b.PeerID(), addr(b), []byte("hi"))
	if err != nil {
		t.Fatal(err)
	}
	expect(t, outcome(t, a, id), true, "ok")
	s := a.Snapshot()
	p, ok := s.Peers[b.PeerID()]
	if !ok || p.LastExchange.Before(before) {
		t.Fatalf("after one exchange: %+v", s)
	}
	if s.Active != 0 || p.Active != 0 || p.Queued != 0 {
		t.Fatalf("an ended exchange still counted: %+v", s)
	}
	if s.OutcomesBacklog != 0 || s.PendingRequests != 0 {
		t.Fatalf("backlog: %+v", s)
	}
}
