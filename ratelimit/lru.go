package ratelimit

// entry is one tracked key: its bucket, its ban, and its place in one of
// its shard's two lists. The links live in the entry itself (an intrusive
// list) so that tracking a key costs one small allocation and unlinking it
// is O(1) without a search.
type entry[K comparable] struct {
	key        K
	prev, next *entry[K]

	// b is the key's token bucket.
	b bucket

	// until is when the ban ends, in the policy's clock (see policy.tick).
	// banned entries sit on the banned list, the others on the active list;
	// a ban that has lapsed is noticed lazily.
	until  int64
	banned bool
}

// list is a doubly linked list of entries; the zero list is empty. A shard
// keeps two: the active list in least-recently-used order (front is the most
// recent) and the banned list in the order bans end (front ends first; with
// Refill longer than BanDuration a later ban can end sooner, so this is not
// always the order they began).
type list[K comparable] struct {
	front, back *entry[K]
}

func (l *list[K]) pushFront(e *entry[K]) {
	e.prev, e.next = nil, l.front
	if l.front != nil {
		l.front.prev = e
	} else {
		l.back = e
	}
	l.front = e
}

func (l *list[K]) pushBack(e *entry[K]) {
	e.prev, e.next = l.back, nil
	if l.back != nil {
		l.back.next = e
	} else {
		l.front = e
	}
	l.back = e
}

// insertByUntil puts e into l, which is ordered by until, after every entry
// whose ban ends no later than e's. Bans nearly always end in the order they
// began, so the search from the back normally stops at once.
func (l *list[K]) insertByUntil(e *entry[K]) {
	at := l.back
	for at != nil && at.until > e.until {
		at = at.prev
	}
	if at == nil {
		l.pushFront(e)
		return
	}
	e.prev, e.next = at, at.next
	if at.next != nil {
		at.next.prev = e
	} else {
		l.back = e
	}
	at.next = e
}

func (l *list[K]) remove(e *entry[K]) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		l.front = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		l.back = e.prev
	}
	e.prev, e.next = nil, nil
}

func (l *list[K]) moveToFront(e *entry[K]) {
	if l.front == e {
		return
	}
	l.remove(e)
	l.pushFront(e)
}
