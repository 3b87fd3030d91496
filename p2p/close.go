package p2p

// Close disconnects every peer and stops the node. Messages not yet acked get
// their Status, ReasonClosed (the Receiver queues it, whatever its buffer
// holds); then the Receiver and Priority channels are closed. Close returns once every
// goroutine the node started has ended.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		// Acks owed go out before the connections close: a message this
		// node delivered must not be reported lost to its sender. Frames
		// read meanwhile are refused shutting_down (admit), and streams
		// peers open are reset (handleStream).
		n.closing.Store(true)
		n.stopWatchAL()
		wait := n.drainWait()
		n.drainStreams(n.streams.all(), wait, 2*wait, nil)
		if n.cfg.closeDrainedHook != nil {
			n.cfg.closeDrainedHook()
		}
		n.cancel()
		n.closeErr = n.host.Close()
		n.wg.Wait()
		// Streams the peers opened are read by go-libp2p's goroutines, not
		// ours; ending them here gives our messages on them their Status
		// before the Receiver closes. Such a goroutine may be ending one
		// itself, and fail then returns at once: its Statuses are pushed
		// when gone closes (msgStream.end), a moment away (the
		// connections are closed, so its last flush fails fast).
		left := n.streams.all()
		for _, st := range left {
			st.fail(ReasonClosed, nil)
		}
		for _, st := range left {
			if n.cfg.closeWaitHook != nil {
				n.cfg.closeWaitHook()
			}
			<-st.gone
		}
		// The barrier: an enqueue that checked before cancel may still
		// be about to write to Sender. Once it is through, every enqueue
		// has returned ErrClosed or left its command for failUnhandled.
		// (Send's fast way needs none: a stream's end and a write to it
		// are ordered by the stream's lock, and a write to an ended
		// stream fails over to enqueue.)
		if n.cfg.closeBarrierHook != nil {
			n.cfg.closeBarrierHook()
		}
		n.enqueueMu.Lock()
		n.enqueueMu.Unlock() // nothing to do inside: waiting for the readers is the point
		n.failUnhandled()
		n.events.Close()
		n.prio.Close()
		// The registry is free again for a node made after this one
		// (one node per registry), and no longer shows a closed node.
		n.metrics.unregister()
		n.relay.unregister()
		close(n.closed)
	})
	<-n.closed
	return n.closeErr
}

// failUnhandled gives the SendMsgs left in the Sender channel, which the
// stopped node loop will never handle, their Status (closed): Send
// accepted them, and every SendMsg gets one. At most a channel's worth, so
// that a caller still writing cannot keep Close here.
func (n *Node) failUnhandled() {
	for range cap(n.sender) {
		var cmd Command
		select {
		case c, ok := <-n.sender:
			if !ok {
				return
			}
			cmd = c
		default:
			return
		}
		if sc, ok := cmd.(sentCmd); ok {
			cmd = sc.Command
			n.viaSend.Add(-1)
		}
		switch c := cmd.(type) {
		case SendMsg:
			n.status(c, ReasonClosed, nil)
		case *SendMsg:
			if c != nil {
				n.status(*c, ReasonClosed, nil)
			}
		}
	}
}
