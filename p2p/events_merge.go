package p2p

// mergeDropped folds consecutive Dropped events of one peer into one.
func mergeDropped(last *Event, ev Event) bool {
	d, ok := ev.(Dropped)
	if !ok {
		return false
	}
	l, ok := (*last).(Dropped)
	if !ok || l.Peer != d.Peer {
		return false
	}
	l.Count += d.Count
	l.MsgID = d.MsgID
	*last = l
	return true
}
