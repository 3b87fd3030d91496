package main

// The kill/restart soak test: five real "p2pnode run --json" processes
// exchange requests while one of them is SIGKILLed and restarted every
// 0.5-1 s, and the test checks that nothing was lost and nothing delivered
// twice (the durability issue: "nothing lost and nothing delivered twice
// when a node crashes and restarts"). The criteria, asserted per subtest:
//
//	(1) every request has exactly one final dialer outcome (exchange event,
//	    role dialer, its id), from its requester, before the nodes stop;
//	    copies of it marked "redelivered" by a later instance of the same
//	    node (killed between printing it and acknowledging it) are the
//	    same end, not a second one;
//	(2) no request is delivered to the responder's application twice,
//	    except deliveries marked "redelivered" by a later instance;
//	(3) no connection_limit event and no unexpected_message error between
//	    these honest nodes;
//	(4) every failed request is listed (and compared with the requester's
//	    dead letters by checkDeadLetters, a hook);
//	(5) replies likewise: one per request at the requester, the right data.
//
// Usage:
//
//	go test -run TestSoakKillRestart ./cmd/p2pnode/                      # CI size
//	SOAK_EXCHANGES=1000 go test -run TestSoakKillRestart -count=1 ./cmd/p2pnode/   # make soak
//
// Environment:
//
//	SOAK_EXCHANGES=N    requests per variant (default: the CI sizes)
//	SOAK_DURABLE=0      run the nodes with --ephemeral, for "before"
//	                    figures; the kill variants are then skipped
//	SOAK_FORCE_KILLS=1  run the kill variants even without durability, to
//	                    see the failures of a node that forgets on a crash
//	SOAK_LOG_DIR=DIR    keep every process instance's events and stderr in
//	                    DIR/<subtest>/<node>#<instance>.jsonl
//
// Before durability (5db7f37, SOAK_EXCHANGES=1000, SOAK_FORCE_KILLS=1, no
// -race) the kill variants failed with: responder kills, 19 (instant echo)
// and 60 (slow app) requests delivered twice; requester kills, 180 (instant
// echo) and 162 (slow app) requests lost, and with the slow app 135
// unexpected_message errors; any kills, 78 lost, 28 delivered twice, 70
// unexpected_message. No connection_limit event in any of them.
//
// The machinery is in soak_helpers_test.go.

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// soakParams is one scenario.
type soakParams struct {
	Nodes      int
	Requesters []int // the nodes that send requests; every node answers
	Targets    []int // the nodes they send to (never to themselves)
	Killable   []int // the nodes the kill loop picks from; none: no kills
	Exchanges  int   // requests in all, spread round-robin over the pairs
	Window     int   // most requests one node has outstanding

	SlowApp  bool             // answer after AppDelay instead of at once
	AppDelay [2]time.Duration // random in [lo, hi]

	Spread       time.Duration    // a node's k-th request is issued no sooner than Spread*k/(its requests)...
	Burst        int              // ...with k rounded down to a multiple of Burst: several in flight at once
	KillEvery    [2]time.Duration // between restart and next kill, random in [lo, hi]
	RestartAfter time.Duration    // between a kill and the restart
	MaxKills     int
	KillFor      time.Duration // no kill starts after this
	// KillWhenBusy: once KillEvery has passed, wait (up to twice KillEvery's
	// upper bound) for the victim to have work in flight: requests it sent
	// not yet answered, or requests it was given whose requester has no
	// outcome yet. Without it, an instant-echo exchange (a few ms) is
	// rarely in flight when the kill comes.
	KillWhenBusy bool

	SettleTimeout time.Duration // after the last kill: every request must have its outcome by then
}

// soakNodeArgs bound the tail of a run: a request to a node that stays down
// fails after about 4.5 s of resends instead of 15 s, a reply waits at most
// 6 s. Generous enough for a restart under the race detector (≈1-2 s).
var soakNodeArgs = []string{
	"--reply-timeout", "6s",
	"--max-attempts", "8",
	"--backoff-base", "100ms",
	"--backoff-max", "1s",
	"--dial-timeout", "2s",
	"--ack-timeout", "5s",
}

// soakDurable reports whether the nodes keep a store (the default), or run
// with --ephemeral because SOAK_DURABLE=0.
func soakDurable() bool {
	v := os.Getenv("SOAK_DURABLE")
	return v != "0" && v != "false"
}

// durableArgs are the flags that make a run node keep its state in
// dataDir across restarts, or, with SOAK_DURABLE=0, the node of before the
// store.
func durableArgs(dataDir string) []string {
	if soakDurable() {
		return []string{"--data-dir", dataDir}
	}
	return []string{"--ephemeral"}
}

type soakVariant struct {
	name  string
	kills bool
	p     soakParams
}

// soakVariants are the subtests. exchanges > 0 (SOAK_EXCHANGES) sizes every
// variant for make soak; 0 is the CI size: ≥ 200 exchanges in all, a few
// kills each, well under a minute each under -race.
func soakVariants(exchanges int) []soakVariant {
	base := soakParams{
		Nodes:         5,
		Window:        8,
		AppDelay:      [2]time.Duration{50 * time.Millisecond, 300 * time.Millisecond},
		KillEvery:     [2]time.Duration{500 * time.Millisecond, time.Second},
		RestartAfter:  300 * time.Millisecond,
		SettleTimeout: 15 * time.Second, // a request's tail: resends ≈ 4.5 s, reply timeout 6 s
	}
	all := []int{0, 1, 2, 3, 4}
	// Requesters 0-1 send to 2-4 only, so that a killed node is only a
	// requester (kills of 0-1) or only a responder (kills of 2-4).
	senders, answerers := []int{0, 1}, []int{2, 3, 4}

	control := base
	control.Requesters, control.Targets = all, all // all 20 ordered pairs
	control.Exchanges = 100

	killing := base
	killing.Requesters, killing.Targets = senders, answerers
	killing.Exchanges = 60
	killing.Spread, killing.Burst = 6*time.Second, 6
	killing.MaxKills, killing.KillFor = 8, 8*time.Second
	killing.KillWhenBusy = true

	if exchanges > 0 {
		control.Exchanges = exchanges
		killing.Exchanges = exchanges
		killing.Spread = time.Duration(exchanges) * time.Second / 25
		killing.MaxKills, killing.KillFor = max(8, exchanges/15), killing.Spread
	}

	v := func(name string, slow bool, killable []int) soakVariant {
		p := killing
		p.SlowApp, p.Killable = slow, killable
		return soakVariant{name: name, kills: true, p: p}
	}
	anyKills := v("slow-app/any-kills", true, all)
	anyKills.p.Requesters, anyKills.p.Targets = all, all
	anyKills.p.Burst = max(1, killing.Burst/2) // five requesters: as many bursts as two would make
	slowControl := control
	slowControl.SlowApp = true
	return []soakVariant{
		{name: "no-kills/instant-echo", p: control},
		{name: "no-kills/slow-app", p: slowControl},
		v("instant-echo/responder-kills", false, answerers),
		v("slow-app/responder-kills", true, answerers),
		v("instant-echo/requester-kills", false, senders),
		v("slow-app/requester-kills", true, senders),
		anyKills,
	}
}

// The variants run in parallel (at the CI size), with each other and with
// the package's other tests: each has its own processes, ports and
// directories, and most of a variant's time is its own pacing (requests
// spread over seconds, kills every 0.5-1 s, restarts), not CPU. One after
// the other they took 61 s of a quiet two-core machine's package run and
// 183 s of a loaded one, with no other test running meanwhile.
func TestSoakKillRestart(t *testing.T) {
	t.Parallel()
	exchanges := 0
	if s := os.Getenv("SOAK_EXCHANGES"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("SOAK_EXCHANGES=%q: want a positive number", s)
		}
		exchanges = n
	}
	durable, forceKills := soakDurable(), os.Getenv("SOAK_FORCE_KILLS") == "1"
	t.Logf("durable: %v; force kills: %v; race: %v", durable, forceKills, raceEnabled)
	for _, v := range soakVariants(exchanges) {
		t.Run(v.name, func(t *testing.T) {
			if exchanges == 0 {
				// At the CI size; a make soak run (SOAK_EXCHANGES) keeps
				// them one at a time, so that each one's figures are its
				// own and not those of a machine shared with another.
				t.Parallel()
			}
			// Without durability the kill variants fail (the figures are
			// in the file comment); SOAK_FORCE_KILLS runs them.
			if v.kills && !durable && !forceKills {
				t.Skip("SOAK_DURABLE=0: nodes without a store lose exchanges when killed")
			}
			began := time.Now()
			h := runSoak(t, v.p)
			h.check(t, v.name)
			t.Logf("%s took %s (race %v)", v.name, time.Since(began).Round(10*time.Millisecond), raceEnabled)
		})
	}
}

// runSoak runs one scenario to its end and stops every node; the
// bookkeeping is left in the harness for check.
func runSoak(t *testing.T, p soakParams) *soakHarness {
	t.Helper()
	h := newSoakHarness(t, p)
	h.nodeArgs = soakNodeArgs

	// Requests round-robin over the ordered pairs, interleaved so that
	// consecutive requests come from different requesters.
	type pair struct{ from, to int }
	var pairs []pair
	for j := range p.Targets {
		for _, r := range p.Requesters {
			to := p.Targets[(j+r)%len(p.Targets)]
			if to != r {
				pairs = append(pairs, pair{r, to})
			}
		}
	}
	for n := 1; n <= p.Exchanges; n++ {
		pr := pairs[(n-1)%len(pairs)]
		h.reqs = append(h.reqs, &soakReq{n: n, from: pr.from, to: pr.to})
		h.nodes[pr.from].requests = append(h.nodes[pr.from].requests, n)
		h.nodes[pr.from].everRequester = true
	}
	for _, k := range p.Killable {
		h.nodes[k].killable = true
	}

	h.start = time.Now()
	errs := make([]error, len(h.nodes))
	var starting sync.WaitGroup
	for i, nd := range h.nodes {
		starting.Go(func() {
			in, err := h.startInst(nd)
			if err != nil {
				errs[i] = err
				return
			}
			h.mu.Lock()
			nd.cur, nd.up = in, true
			h.mu.Unlock()
		})
	}
	starting.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}

	var senders sync.WaitGroup
	for _, nd := range h.nodes {
		if len(nd.requests) > 0 {
			senders.Add(1)
			go h.sender(nd, &senders)
		}
	}
	killed := make(chan struct{})
	go h.killLoop(killed)
	sent := make(chan struct{})
	go func() { senders.Wait(); close(sent) }()
	// Both end by themselves: the senders within SettleTimeout of their
	// last progress, the kill loop within KillFor plus one restart.
	<-sent
	<-killed

	// Every node is up again: wait for the outcomes still due.
	if !h.waitUntil(time.Now().Add(p.SettleTimeout), func() bool { return h.allResolved(false) }) {
		t.Logf("settle: not every request has an outcome after %s", p.SettleTimeout)
	}
	h.abort()
	h.stopAll()
	return h
}

// abort ends the senders and the kill loop if still running.
func (h *soakHarness) abort() {
	h.mu.Lock()
	defer h.mu.Unlock()
	select {
	case <-h.done:
	default:
		close(h.done)
	}
}

// stopAll drops the pending answers and closes every node's stdin, which
// stops it cleanly; each must exit 0 (a race report would be 66). Events
// printed from here on are marked: an outcome the shutdown gives a request
// does not count as its outcome.
func (h *soakHarness) stopAll() {
	h.mu.Lock()
	h.stopping = true
	var cur []*soakInst
	for _, nd := range h.nodes {
		nd.up = false
		if nd.cur != nil {
			cur = append(cur, nd.cur)
		}
	}
	h.mu.Unlock()
	for _, in := range cur {
		in.stopTimers(false)
		in.closeStdin()
	}
	for _, in := range cur {
		if !in.waitExit(2 * waitTimeout) {
			h.harnessError("%s did not exit within %s of its stdin closing; stderr:\n%s", in, 2*waitTimeout, in.errOutput())
			continue
		}
		if code := in.exitCode(); code != 0 {
			h.harnessError("%s exited %d (%v); stderr:\n%s", in, code, in.waitErr, in.errOutput())
		}
	}
}

// soakCheck is one kind of violation: how many, and the first examples.
type soakCheck struct {
	what     string
	total    int
	examples []string
}

func (c *soakCheck) add(format string, args ...any) {
	c.total++
	if len(c.examples) < 10 {
		c.examples = append(c.examples, fmt.Sprintf(format, args...))
	}
}

func (h *soakHarness) instName(node, inst int) string {
	return fmt.Sprintf("%s#%d", h.nodes[node].name, inst)
}

func ms(d time.Duration) string { return "+" + d.Round(time.Millisecond).String() }

// describe is one request's story, for a failure message.
func (h *soakHarness) describe(r *soakReq) string {
	var b strings.Builder
	fmt.Fprintf(&b, "#%d %s→%s", r.n, h.nodes[r.from].name, h.nodes[r.to].name)
	if !r.issued {
		b.WriteString(" never issued")
		return b.String()
	}
	fmt.Fprintf(&b, " issued %s to %s; outcomes:", ms(r.issuedAt), h.instName(r.from, r.issuedInst))
	if len(r.outcomes) == 0 {
		b.WriteString(" none")
	}
	for _, o := range r.outcomes {
		res := "ok"
		if !o.ok {
			res = o.reason + "/" + o.stage
		}
		var flags string
		if o.resumed {
			flags += " resumed"
		}
		if o.lettered {
			flags += " dead-lettered"
		}
		if o.afterStop {
			flags += " (at shutdown)"
		}
		fmt.Fprintf(&b, " %s %s %s%s", res, h.instName(o.node, o.inst), ms(o.at), flags)
	}
	b.WriteString("; delivered:")
	if len(r.deliveries) == 0 {
		b.WriteString(" never")
	}
	for _, d := range r.deliveries {
		red := ""
		if d.redelivered {
			red = " redelivered"
		}
		fmt.Fprintf(&b, " %s %s%s", h.instName(d.node, d.inst), ms(d.at), red)
	}
	b.WriteString("; replies:")
	if len(r.replies) == 0 {
		b.WriteString(" none")
	}
	for _, d := range r.replies {
		red := ""
		if d.redelivered {
			red = " redelivered"
		}
		fmt.Fprintf(&b, " %s %s%s", h.instName(d.node, d.inst), ms(d.at), red)
	}
	// The kills that could explain it: of either end, from just before the
	// issue to a few seconds after its last trace.
	last := r.issuedAt
	for _, o := range r.outcomes {
		last = max(last, o.at)
	}
	for _, d := range append(slices.Clone(r.deliveries), r.replies...) {
		last = max(last, d.at)
	}
	var kills []string
	for _, idx := range []int{r.from, r.to} {
		for _, in := range h.nodes[idx].insts {
			if in.killedAt != 0 && in.killedAt > r.issuedAt-time.Second && in.killedAt < last+3*time.Second {
				kills = append(kills, fmt.Sprintf("%s %s", in, ms(in.killedAt)))
			}
		}
	}
	if len(kills) > 0 {
		b.WriteString("; kills: " + strings.Join(kills, ", "))
	}
	return b.String()
}

// onceEach finds the deliveries (or replies) of one request that break
// oneEnd reports whether outcomes tell of one end: the first, and copies
// of it printed again (marked redelivered) by later instances of the same
// node, which was killed between printing it and acknowledging it.
func oneEnd(outcomes []soakOutcome) bool {
	for i, o := range outcomes[1:] {
		prev := outcomes[i]
		if !o.redelivered || o.node != prev.node || o.inst <= prev.inst || o.ok != outcomes[0].ok || o.reason != outcomes[0].reason {
			return false
		}
	}
	return true
}

// "delivered once": after the first, each must be marked redelivered and
// come from a later instance of the same node (it follows a restart).
func onceEach(ds []soakDelivery) (bad []soakDelivery) {
	ds = slices.Clone(ds)
	slices.SortFunc(ds, func(a, b soakDelivery) int {
		if a.node != b.node {
			return a.node - b.node
		}
		if a.inst != b.inst {
			return a.inst - b.inst
		}
		return a.seq - b.seq
	})
	for i := 1; i < len(ds); i++ {
		prev, d := ds[i-1], ds[i]
		if !d.redelivered || d.node != prev.node || d.inst <= prev.inst {
			bad = append(bad, d)
		}
	}
	return bad
}

// check asserts the pass criteria and logs the figures.
func (h *soakHarness) check(t *testing.T, name string) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.attachOrphans()

	var (
		lost      = &soakCheck{what: "(1) requests with no final dialer outcome (lost)"}
		dupOut    = &soakCheck{what: "(1) requests with more than one final dialer outcome"}
		wrongOut  = &soakCheck{what: "(1) dialer outcomes printed by a node other than the requester"}
		orphans   = &soakCheck{what: "(1) dialer outcomes matching no request"}
		dupDeliv  = &soakCheck{what: "(2) requests delivered to the responder more than once (not a marked redelivery after a restart)"}
		badDeliv  = &soakCheck{what: "(2) requests delivered to the wrong node or with the wrong data"}
		connLimit = &soakCheck{what: "(3) connection_limit events"}
		unexp     = &soakCheck{what: "(3) unexpected_message errors and outcomes"}
		dupReply  = &soakCheck{what: "(5) replies delivered to the requester more than once (not a marked redelivery after a restart)"}
		badReply  = &soakCheck{what: "(5) replies with the wrong data or at the wrong node, or ok outcomes without a reply"}
		harness   = &soakCheck{what: "harness errors (the test's own machinery)"}
	)
	var (
		issued, ok, failed, delivered, redelivered, dupDeliveries, resumed int
		failedByReason                                                     = map[string]int{}
		failedReqs                                                         []*soakReq
	)
	for _, r := range h.reqs {
		if !r.issued {
			harness.add("request never issued: %s", h.describe(r))
			continue
		}
		issued++
		var before []soakOutcome
		for _, o := range r.outcomes {
			if !o.afterStop {
				before = append(before, o)
			}
			if o.resumed {
				resumed++
			}
			if o.node != r.from {
				wrongOut.add("%s", h.describe(r))
			}
		}
		switch {
		case len(before) == 0:
			lost.add("%s", h.describe(r))
		case !oneEnd(r.outcomes):
			dupOut.add("%s", h.describe(r))
		}
		if len(before) > 0 {
			if before[0].ok {
				ok++
			} else {
				failed++
				failedByReason[before[0].reason]++
				failedReqs = append(failedReqs, r)
			}
		}
		want := "soak-" + strconv.Itoa(r.n)
		for _, d := range r.deliveries {
			delivered++
			if d.redelivered {
				redelivered++
			}
			if d.node != r.to || d.data != want || d.from != h.nodes[r.from].id {
				badDeliv.add("%s at %s: %q from %s", h.describe(r), h.instName(d.node, d.inst), d.data, d.from)
			}
		}
		if bad := onceEach(r.deliveries); len(bad) > 0 {
			dupDeliveries += len(bad)
			dupDeliv.add("%s", h.describe(r))
		}
		for _, d := range r.replies {
			if d.node != r.from || d.data != "re:"+want {
				badReply.add("%s at %s: %q", h.describe(r), h.instName(d.node, d.inst), d.data)
			}
		}
		if bad := onceEach(r.replies); len(bad) > 0 {
			dupReply.add("%s", h.describe(r))
		}
		if len(before) > 0 && before[0].ok && len(r.replies) == 0 {
			badReply.add("ok outcome without a reply event: %s", h.describe(r))
		}
	}
	for _, o := range h.orphans {
		orphans.add("%s %s: exchange %s, ok %v, reason %s", h.instName(o.node, o.inst), ms(o.at), o.exchange, o.ok, o.reason)
	}
	for _, l := range h.connLimits {
		connLimit.add("%s", l)
	}
	for _, l := range h.unexpected {
		unexp.add("%s", l)
	}
	for _, e := range h.harnessErrs {
		harness.add("%s", e)
	}

	var restarts int
	for _, nd := range h.nodes {
		restarts += len(nd.insts) - 1
	}
	var reasons []string
	for r, c := range failedByReason {
		reasons = append(reasons, fmt.Sprintf("%s=%d", r, c))
	}
	slices.Sort(reasons)
	var others []string
	for e, c := range h.otherErrors {
		others = append(others, fmt.Sprintf("%dx %s", c, e))
	}
	slices.Sort(others)
	summary := fmt.Sprintf("%s: %d requests issued of %d; outcomes: %d ok, %d failed [%s], %d lost, %d with several, %d resumed; "+
		"deliveries %d (%d marked redelivered, %d duplicates); connection_limit %d; unexpected_message %d; "+
		"kills %d (%d with work in flight: %d requests outstanding at the requester, %d unanswered at the responder), restarts %d; "+
		"other error events %d",
		name, issued, len(h.reqs), ok, failed, strings.Join(reasons, " "), lost.total, dupOut.total, resumed,
		delivered, redelivered, dupDeliveries, connLimit.total, unexp.total,
		len(h.kills), h.busyKills, h.killedSent, h.killedGiven, restarts, len(others))
	t.Log(summary)
	if len(h.kills) > 0 {
		t.Logf("kills: %s", strings.Join(h.kills, ", "))
	}
	for _, o := range others {
		t.Logf("other error event: %s", o)
	}

	// (4) every failed request is accounted for: listed here, and (once
	// run keeps them) checked against the node's dead letters.
	if len(failedReqs) > 0 {
		t.Logf("(4) %d failed requests:", len(failedReqs))
		for i, r := range failedReqs {
			if i == 50 {
				t.Logf("  ... and %d more", len(failedReqs)-50)
				break
			}
			t.Logf("  %s", h.describe(r))
		}
	}
	checkDeadLetters(t, h, failedReqs)

	var msg strings.Builder
	bad := 0
	for _, c := range []*soakCheck{lost, dupOut, wrongOut, orphans, dupDeliv, badDeliv, connLimit, unexp, dupReply, badReply, harness} {
		if c.total == 0 {
			continue
		}
		bad++
		fmt.Fprintf(&msg, "\n%s: %d", c.what, c.total)
		for _, e := range c.examples {
			msg.WriteString("\n    " + e)
		}
		if c.total > len(c.examples) {
			fmt.Fprintf(&msg, "\n    ... %d more", c.total-len(c.examples))
		}
	}
	if bad > 0 {
		t.Errorf("soak %s: %d kinds of violation\n%s%s", name, bad, summary, msg.String())
	}
}

// checkDeadLetters checks criterion (4) against the stores: every request
// whose outcome failed is in its requester's dead letters (p2pnode
// deadletters list --json --data-dir DIR), and nothing else is. It runs
// once every node has stopped: a running node owns its store.
func checkDeadLetters(t *testing.T, h *soakHarness, failed []*soakReq) {
	t.Helper()
	if !soakDurable() {
		return
	}
	report := t.Errorf
	want := map[string]*soakReq{} // "node/tag"
	for _, r := range failed {
		want[fmt.Sprintf("%d/%d", r.from, r.n)] = r
	}
	var missing, extra []string
	total := 0
	for _, nd := range h.nodes {
		if !nd.everRequester {
			continue
		}
		r := runCLI(t, h.dir, "deadletters", "list", "--json", "--data-dir", nd.dataDir)
		if r.code != 0 {
			report("deadletters list of %s: exit %d: %s", nd.name, r.code, r.stderr)
			continue
		}
		var out struct {
			DeadLetters []struct {
				Exchange string `json:"exchange"`
				Tag      string `json:"tag"`
				Reason   string `json:"reason"`
				Data     string `json:"data"`
			} `json:"dead_letters"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
			report("deadletters list of %s: %v in %q", nd.name, err, r.stdout)
			continue
		}
		for _, d := range out.DeadLetters {
			total++
			key := fmt.Sprintf("%d/%s", nd.idx, d.Tag)
			if want[key] == nil {
				extra = append(extra, fmt.Sprintf("%s: tag %s exchange %s %s %q", nd.name, d.Tag, d.Exchange, d.Reason, d.Data))
				continue
			}
			delete(want, key)
		}
	}
	for _, r := range want {
		missing = append(missing, h.describe(r))
	}
	slices.Sort(missing)
	t.Logf("(4) dead letters: %d kept, %d failed requests; %d failed requests not kept, %d kept that did not fail",
		total, len(failed), len(missing), len(extra))
	for i, m := range missing {
		if i == 10 {
			break
		}
		report("(4) failed request not in the dead letters: %s", m)
	}
	for i, e := range extra {
		if i == 10 {
			break
		}
		report("(4) dead letter of no failed request: %s", e)
	}
}
