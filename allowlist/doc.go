// Package allowlist decides which peers a BitVMX node talks to and, on a
// host that serves several components, which peer may reach which channel.
//
// # Allowlist
//
// A [List] maps libp2p peer IDs to an [Entry]: an optional operator name and
// an optional set of IP prefixes the peer must connect from. An entry without
// prefixes admits the peer from any IP. The connection gater asks the list on
// every connection, so reads ([List.Allowed], [List.IPAllowed],
// [List.Contains]) are lock-free: they load an immutable snapshot that writers
// replace atomically.
//
// An allowlisted operator may turn hostile, so the list is meant to change at
// run time: [List.Add], [List.Remove], [List.Replace] and [List.Reload] swap
// in a new snapshot, and [List.OnChange] tells the node which peers went away
// so it can disconnect them at once. [List.Watch] reloads the file whenever
// it changes on disk.
//
// The file format is YAML:
//
//	peers:
//	  - id: 16Uiu2HAm...                 # libp2p peer ID
//	    name: operator-2                 # optional
//	    addrs: [127.0.0.2, 10.1.0.0/16]  # optional IP/CIDR binding
//	    relay: true                      # optional: admit it over a circuit relay despite addrs
//	allow_empty: false                   # optional: see Reload
//
// Parsing is strict because a typo in a security file must not go unnoticed:
// unknown keys, malformed peer IDs or prefixes, IDs that hold no valid
// public key, names with control or format characters ([ErrInvalidName]),
// and duplicate peers are errors that name the line. An empty
// file, or "peers: []", is an empty list that admits nobody; a file that is
// missing or does not parse is always an error, never an empty list. A
// reload to an empty list over a non-empty one fails with [ErrEmptyReload]
// unless the file says "allow_empty: true".
//
// # Routing table
//
// [Routes] holds rules of the form
//
//	(from peer | *, from channel | *) -> (to channel | *)
//
// and [Routes.Permits] answers, per message, whether a peer's channel may
// deliver to a local channel. A nil *Routes means no table is configured and
// permits everything; a configured but empty table permits nothing. The
// routes file is YAML as well:
//
//	routes:
//	  - from: 16Uiu2HAm...   # peer ID or "*"
//	    from_channel: 1      # number or "*"; optional, default "*"
//	    to_channel: 2        # number or "*"; optional, default "*"
//
// [Routes] is reloaded and watched like a [List].
package allowlist
