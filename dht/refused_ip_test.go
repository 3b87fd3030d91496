package dht

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/bitvmx/go-bitvmx-p2p/allowlist"
	tu "github.com/bitvmx/go-bitvmx-p2p/internal/testutil"
	"github.com/bitvmx/go-bitvmx-p2p/p2p"
)

// A bootstrap peer whose allowlist binds our key to another IP refuses our
// connection before the Noise handshake (its gater's InterceptAccept). The
// DHT's bootstrap error says so as p2p's dials do (ErrClosedAtHandshake,
// Before, the IP named as the likely reason): it was a bare "failed to
// negotiate security protocol: EOF".
func TestBootstrapRefusedByIPBeforeHandshake(t *testing.T) {
	ia, ib := tu.NewIdentity(t), tu.NewIdentity(t)
	bound, err := allowlist.New(
		allowlist.Entry{ID: ia.ID, Addrs: []netip.Prefix{netip.MustParsePrefix("127.0.0.3/32")}},
		allowlist.Entry{ID: ib.ID, Addrs: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}})
	if err != nil {
		t.Fatal(err)
	}
	b := tu.Node(t, ib, bound, tu.Listen("127.0.0.2"))
	bd, err := New(b, Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bd.Close() })

	a := tu.Node(t, ia, tu.Allowlist(t, ia, ib)) // dials from 127.0.0.1
	ad, err := New(a, Config{Bootstrap: []peer.AddrInfo{{ID: b.ID(), Addrs: b.Host().Addrs()}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ad.Close() })

	ctx, cancel := context.WithTimeout(context.Background(), tu.Timeout)
	defer cancel()
	var berr error
	for berr == nil {
		select {
		case <-ad.Ready():
			t.Fatal("joined through a peer that refuses our IP")
		case <-ctx.Done():
			t.Fatal("no bootstrap error")
		case <-ad.bootTried:
		}
		berr = ad.BootstrapError()
	}
	ce, ok := errors.AsType[*p2p.ClosedAtHandshakeError](berr)
	if !ok || !ce.Before || !errors.Is(berr, p2p.ErrClosedAtHandshake) || !strings.Contains(berr.Error(), "IP") ||
		!strings.Contains(berr.Error(), "bootstrap peer "+b.ID().String()) {
		t.Fatalf("bootstrap error: %v", berr)
	}
}

// A lookup whose only peer to ask has since bound our key to another IP
// (and so refuses our connection before the handshake) says so, as the
// bootstrap does: it failed with no word of the refusal. A publication,
// which kad-dht reports done whoever it reached, logs it.
func TestLookupRefusedByIPBeforeHandshake(t *testing.T) {
	var logs *observer.ObservedLogs
	for name, op := range map[string]func(d *DHT, other peer.ID) error{
		"find": func(d *DHT, other peer.ID) error {
			_, err := d.Find(timeout(t), other)
			return err
		},
		"publish": func(d *DHT, _ peer.ID) error {
			if _, err := d.Publish(timeout(t)); err != nil {
				return err
			}
			warned := logs.FilterMessageSnippet("not on the peers that refused").All()
			if len(warned) != 1 {
				return fmt.Errorf("no warning: %v", logs.All())
			}
			for _, f := range warned[0].Context {
				if err, ok := f.Interface.(error); ok && f.Key == "error" {
					return err
				}
			}
			return fmt.Errorf("the warning has no error: %v", warned[0].Context)
		},
	} {
		t.Run(name, func(t *testing.T) {
			ia, ib, ic := tu.NewIdentity(t), tu.NewIdentity(t), tu.NewIdentity(t)
			entry := func(id tu.Identity, ip string) allowlist.Entry {
				return allowlist.Entry{ID: id.ID, Addrs: []netip.Prefix{netip.MustParsePrefix(ip + "/32")}}
			}
			bound, err := allowlist.New(entry(ia, "127.0.0.1"), entry(ib, "127.0.0.2"), entry(ic, "127.0.0.4"))
			if err != nil {
				t.Fatal(err)
			}
			b := tu.Node(t, ib, bound, tu.Listen("127.0.0.2"))
			bd, err := New(b, Config{NoPublish: true})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { bd.Close() })
			a := tu.Node(t, ia, tu.Allowlist(t, ia, ib, ic)) // dials from 127.0.0.1
			var core zapcore.Core
			core, logs = observer.New(zap.WarnLevel)
			ad, err := New(a, Config{NoPublish: true, Logger: zap.New(core), Bootstrap: []peer.AddrInfo{{ID: b.ID(), Addrs: b.Host().Addrs()}}})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ad.Close() })
			if err := ad.WaitReady(timeout(t)); err != nil {
				t.Fatal(err)
			}

			// b binds a to another IP: it cuts a off, and refuses its
			// next dial before the handshake; b stays in a's routing
			// table until then.
			if err := bound.Add(entry(ia, "127.0.0.3")); err != nil {
				t.Fatal(err)
			}
			tu.NextMatch(t, a.Receiver(), func(e p2p.Disconnected) bool { return e.Peer == b.ID() })

			err = op(ad, ic.ID)
			if ce, ok := errors.AsType[*p2p.ClosedAtHandshakeError](err); !ok || !ce.Before || ce.Peer != b.ID() ||
				!strings.Contains(err.Error(), "IP") {
				t.Fatalf("%s: %v", name, err)
			}
		})
	}
}

// The latest refusal explains a failed call only while it is recent and
// stands: it ages out after latestRefusalTTL, and is forgotten once its
// peer is connected again (whoever dialed: here it dials us, which kad-dht
// never does for us) or leaves the allowlist. Before, it was attached to
// every failed call for ever, even hours later, and then matched
// p2p.ErrClosedAtHandshake, which callers branch on.
func TestLatestRefusalAgesAndClears(t *testing.T) {
	// A clock that moves only when the test moves it: on the real clock the
	// "nearly latestRefusalTTL old" step had a second of margin, which a
	// loaded machine can spend between refuse and explained.
	var skew atomic.Int64
	base := time.Now()
	now := func() time.Time { return base.Add(time.Duration(skew.Load())) }
	ia, ic := tu.NewIdentity(t), tu.NewIdentity(t)
	list := tu.Allowlist(t, ia, ic)
	a := tu.Node(t, ia, list)
	d, err := New(a, Config{NoPublish: true, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	refuse := func() {
		d.refused.Store(&refusedAt{err: &p2p.ClosedAtHandshakeError{Self: a.ID(), Peer: ic.ID, Err: errors.New("EOF"), Before: true}, at: now()})
	}
	failed := fmt.Errorf("%w: no record", ErrNotFound)
	explained := func() bool { return errors.Is(d.explain(nil, failed), p2p.ErrClosedAtHandshake) }

	refuse()
	if !explained() {
		t.Fatal("a fresh refusal does not explain a failed call")
	}
	skew.Add(int64(latestRefusalTTL - time.Second))
	if !explained() {
		t.Fatal("a refusal nearly latestRefusalTTL old no longer explains a failed call")
	}
	skew.Add(int64(time.Second + time.Millisecond))
	if explained() {
		t.Fatalf("a refusal older than latestRefusalTTL explains a failed call: %v", d.explain(nil, failed))
	}

	// The peer connects to us: identify completes, the refusal is over.
	refuse()
	c := tu.Node(t, ic, list, tu.Listen("127.0.0.2"))
	c.Sender() <- p2p.Dial{Peer: a.ID(), Addr: a.Addrs()[0]}
	tu.NextMatch(t, a.Receiver(), func(e p2p.Connected) bool { return e.Peer == ic.ID })
	deadline := time.After(tu.Timeout)
	for d.refused.Load() != nil {
		select {
		case <-deadline:
			t.Fatal("the refusal outlived a connection with its peer")
		case <-time.After(10 * time.Millisecond):
		}
	}

	// The peer leaves the allowlist.
	refuse()
	list.Remove(ic.ID)
	if d.refused.Load() != nil || explained() {
		t.Fatal("the refusal outlived its peer's leaving the allowlist")
	}
}
