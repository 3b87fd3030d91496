// Package control is the local control API of a running p2pnode: a unix
// socket in the node's data directory (SocketName, mode 0600) on which the
// node serves the Control service of control/pb with Connect
// (connectrpc.com/connect) over HTTP/1.1.
//
// The node side implements Node and starts a Server; the CLI side opens a
// Client on the socket. The socket's file mode is the only access control:
// only the node's user (and root) can connect to it, and Listen gives the
// socket that mode before it appears at its path.
package control
