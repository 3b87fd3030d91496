package allowlist_test

import (
	"fmt"
	"log"
	"net/netip"

	"github.com/bitvmx/go-bitvmx-p2p/allowlist"
	"github.com/libp2p/go-libp2p/core/peer"
)

func ExampleList() {
	entries, err := allowlist.Parse([]byte(`
peers:
  - id: 16Uiu2HAmUQrpLvoQn9oBDez7bb4RJfHHq8DQ4H6UqtoMgkNyiCMf
    name: operator-2
    addrs: [127.0.0.2, 10.1.0.0/16]
  - id: 16Uiu2HAmFeQckFgrgGV6iCA54jA6vePTEvPpiV2hbYUdUayyoJRY
    name: operator-3
`))
	if err != nil {
		log.Fatal(err)
	}
	list, err := allowlist.New(entries...)
	if err != nil {
		log.Fatal(err)
	}

	// The node disconnects a peer as soon as it leaves the list.
	cancel := list.OnChange(func(c allowlist.Change) {
		for _, e := range c.Removed {
			fmt.Println("disconnect", e.Name)
		}
	})
	defer cancel()

	op2, _ := peer.Decode("16Uiu2HAmUQrpLvoQn9oBDez7bb4RJfHHq8DQ4H6UqtoMgkNyiCMf")
	op3, _ := peer.Decode("16Uiu2HAmFeQckFgrgGV6iCA54jA6vePTEvPpiV2hbYUdUayyoJRY")
	fmt.Println(list.Allowed(op2, netip.MustParseAddr("10.1.4.2")))
	fmt.Println(list.Allowed(op2, netip.MustParseAddr("192.0.2.1"))) // outside its binding
	fmt.Println(list.Allowed(op3, netip.MustParseAddr("192.0.2.1"))) // unbound: any IP

	list.Remove(op3)
	fmt.Println(list.Len())
	// Output:
	// true
	// false
	// true
	// disconnect operator-3
	// 1
}

func ExampleRoutes_Permits() {
	rules, err := allowlist.ParseRoutes([]byte(`
routes:
  - from: 16Uiu2HAmUQrpLvoQn9oBDez7bb4RJfHHq8DQ4H6UqtoMgkNyiCMf
    from_channel: 1
    to_channel: 2
  - from: "*"
    to_channel: 0
`))
	if err != nil {
		log.Fatal(err)
	}
	routes, err := allowlist.NewRoutes(rules...)
	if err != nil {
		log.Fatal(err)
	}
	op2, _ := peer.Decode("16Uiu2HAmUQrpLvoQn9oBDez7bb4RJfHHq8DQ4H6UqtoMgkNyiCMf")
	op3, _ := peer.Decode("16Uiu2HAmFeQckFgrgGV6iCA54jA6vePTEvPpiV2hbYUdUayyoJRY")
	fmt.Println(routes.Permits(op2, 1, 2))
	fmt.Println(routes.Permits(op3, 1, 2))
	fmt.Println(routes.Permits(op3, 7, 0)) // any peer may reach channel 0

	var none *allowlist.Routes // no table configured
	fmt.Println(none.Permits(op3, 1, 2))
	// Output:
	// true
	// false
	// true
	// true
}

func ExampleParse_error() {
	_, err := allowlist.Parse([]byte(`peers:
  - id: 16Uiu2HAmUQrpLvoQn9oBDez7bb4RJfHHq8DQ4H6UqtoMgkNyiCMf
    adrs: [10.0.0.1]
`))
	fmt.Println(err)
	// Output:
	// allowlist: line 3: unknown key "adrs" in peer entry (want id, name, addrs, relay)
}
