package handler

// fifo is a peer's queue of exchanges waiting for their turn, oldest first.
type fifo struct {
	items []*exchange
	head  int
}

func (q *fifo) len() int { return len(q.items) - q.head }

func (q *fifo) push(ex *exchange) { q.items = append(q.items, ex) }

// pop removes and returns the oldest exchange; the queue must not be empty.
func (q *fifo) pop() *exchange {
	ex := q.items[q.head]
	q.items[q.head] = nil
	q.head++
	if q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
	}
	return ex
}

// drain empties the queue and returns what it held, oldest first.
func (q *fifo) drain() []*exchange {
	out := append([]*exchange(nil), q.items[q.head:]...)
	clear(q.items)
	q.items, q.head = q.items[:0], 0
	return out
}
