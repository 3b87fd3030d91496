package allowlist

import (
	"testing"
)

func TestVersion(t *testing.T) {
	ids := newIDs(t, 2)
	a, b := Entry{ID: ids[0], Name: "a"}, Entry{ID: ids[1]}
	var zero List
	if v := zero.Version(); v.Number != 0 || v.Len != 0 || v.Digest == "" {
		t.Fatalf("zero list: %+v", v)
	}
	l, err := New(a)
	if err != nil {
		t.Fatal(err)
	}
	v1 := l.Version()
	if v1.Number != 1 || v1.Len != 1 {
		t.Fatalf("new list: %+v", v1)
	}
	if err := l.Add(b); err != nil {
		t.Fatal(err)
	}
	v2 := l.Version()
	if v2.Number != 2 || v2.Len != 2 || v2.Digest == v1.Digest {
		t.Fatalf("after Add: %+v (before %+v)", v2, v1)
	}
	// A replace with the same entries changes nothing, not even the number.
	if err := l.Replace([]Entry{b, a}); err != nil {
		t.Fatal(err)
	}
	if v := l.Version(); v != v2 {
		t.Fatalf("after a no-op Replace: %+v, want %+v", v, v2)
	}
	l.Remove(b.ID)
	if v := l.Version(); v.Number != 3 || v.Digest != v1.Digest {
		t.Fatalf("after Remove: %+v, want digest %s", v, v1.Digest)
	}
	// Same entries in another list: same digest.
	other, err := New(a)
	if err != nil {
		t.Fatal(err)
	}
	if other.Version().Digest != v1.Digest {
		t.Fatal("equal lists with different digests")
	}
}
