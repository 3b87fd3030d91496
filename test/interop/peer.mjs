#!/usr/bin/env node
// A js-libp2p peer of the BitVMX p2p protocol, written from docs/PROTOCOL.md,
// docs/handler-fsm.md and the .proto files, to check that an implementation
// that shares no code with the Go node can talk to it. interop_test.go drives
// it; by hand:
//
//	node peer.mjs --expect-peer <peer ID of the Go node>
//
// It listens on 127.0.0.1, prints one JSON object per line on stdout (the
// first: {"event":"listening","peer":...,"addrs":[...]}) and takes commands
// on stdin, one JSON object per line:
//
//	{"cmd":"send","addr":"/ip4/127.0.0.1/tcp/N/p2p/<id>","data":"<text>","id":1}
//	{"cmd":"request","addr":"...","data":"<text>","id":2}
//
// A request the Go node makes is answered with "js-reply:" + its payload.
// It admits, and dials, only the expected peer. Closing stdin stops it.

// libp2p 3.x calls Promise.withResolvers, which Node gained in 22; the
// polyfill must be in place before any libp2p module loads, hence the
// dynamic imports below.
if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function withResolvers () {
    let resolve, reject
    const promise = new this((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}

const { parseArgs } = await import('node:util')
const readline = await import('node:readline')
const { createLibp2p } = await import('libp2p')
const { tcp } = await import('@libp2p/tcp')
const { noise } = await import('@chainsafe/libp2p-noise')
const { yamux } = await import('@chainsafe/libp2p-yamux')
const { identify } = await import('@libp2p/identify')
const { generateKeyPair } = await import('@libp2p/crypto/keys')
const { peerIdFromString } = await import('@libp2p/peer-id')
const { multiaddr } = await import('@multiformats/multiaddr')
const wire = await import('./wire.mjs')
const { exchangeHex, newExchange } = await import('./exchange.mjs')

const { values: opts } = parseArgs({
  options: {
    'expect-peer': { type: 'string' },
    'key-type': { type: 'string', default: 'secp256k1' },
    'timeout-ms': { type: 'string', default: '20000' },
    'lifetime-ms': { type: 'string', default: '900000' }
  }
})
if (opts['expect-peer'] === undefined) {
  console.error('peer.mjs: --expect-peer <peer ID> is required')
  process.exit(2)
}
const expected = peerIdFromString(opts['expect-peer'])
const timeoutMs = Number(opts['timeout-ms'])
const keyType = { secp256k1: 'secp256k1', ed25519: 'Ed25519' }[opts['key-type']]
if (keyType === undefined || !(timeoutMs > 0)) {
  console.error('peer.mjs: --key-type is secp256k1 or ed25519, --timeout-ms a positive number')
  process.exit(2)
}

/** errText describes anything thrown: libp2p sometimes rejects with an Event or a bare value. */
function errText (err) {
  return err?.message ?? err?.type ?? String(err)
}

/** emit prints one event line. */
function emit (ev) {
  process.stdout.write(JSON.stringify(ev) + '\n')
}

// A watchdog: whatever happens, this process does not outlive its test.
setTimeout(() => {
  emit({ event: 'error', error: `lifetime of ${opts['lifetime-ms']} ms over` })
  process.exit(3)
}, Number(opts['lifetime-ms'])).unref()
process.on('unhandledRejection', (err) => {
  emit({ event: 'error', error: `unhandled: ${err?.stack ?? err}` })
  process.exit(1)
})

const node = await createLibp2p({
  privateKey: await generateKeyPair(keyType),
  addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: { identify: identify() },
  // The connection monitor pings every connection (/ipfs/ping/1.0.0) and
  // aborts one whose ping times out. The spec names no ping protocol (the
  // node does not run one), and on a loaded machine a slow negotiation
  // would cut a connection mid-exchange.
  connectionMonitor: { enabled: false },
  // The JS side's allowlist: the expected peer and nobody else (§3).
  connectionGater: {
    denyDialPeer: (id) => !id.equals(expected),
    denyInboundEncryptedConnection: (id) => !id.equals(expected),
    denyOutboundEncryptedConnection: (id) => !id.equals(expected)
  }
})

const replyWaiters = new Map() // exchange hex -> resolve(payload), our requests awaiting their reply
const answered = new Map() // exchange hex -> reply payload, requests we answered (a resend gets the same reply)

/** checkPeer fails unless conn is with the expected peer: Noise proved its key (§2). */
function checkPeer (conn) {
  if (!conn.remotePeer.equals(expected)) {
    throw new Error(`connected to ${conn.remotePeer}, expected ${expected}`)
  }
}

/** frameStream runs the message protocol on stream with the handler's view of Data frames. */
function frameStream (stream, conn) {
  return new wire.FrameStream(stream, {
    ackTimeoutMs: timeoutMs,
    onError: (err) => emit({ event: 'error', peer: conn.remotePeer.toString(), error: err.message }),
    onData: (fs, data) => onData(fs, data, conn)
  })
}

/** onData judges one Data frame as the handler would: returns the ack's reason. */
function onData (fs, data, conn) {
  if (data.channel !== 0) {
    emit({ event: 'error', error: `data on channel ${data.channel}` })
    return 'NOT_ROUTED'
  }
  let env
  try {
    env = wire.Envelope.decode(data.payload)
  } catch (err) {
    emit({ event: 'error', error: `not an envelope: ${errText(err)}` })
    return 'MALFORMED'
  }
  const ex = wire.Long.fromValue(env.exchange)
  if (ex.isZero() || wire.kindName(env.kind).startsWith('UNKNOWN') || env.kind === wire.KIND.KIND_UNSPECIFIED) {
    emit({ event: 'error', error: `bad envelope: kind ${env.kind}, exchange ${ex}` })
    return 'MALFORMED'
  }
  const hex = exchangeHex(ex)
  const from = conn.remotePeer.toString()
  const text = Buffer.from(env.payload).toString('utf8')
  switch (env.kind) {
    case wire.KIND.KIND_MESSAGE:
      emit({ event: 'message', from, exchange: hex, data: text, from_channel: data.from_channel, lazy_ack: data.lazy_ack })
      return 'OK'
    case wire.KIND.KIND_REQUEST: {
      const first = !answered.has(hex)
      if (first) {
        answered.set(hex, Buffer.concat([Buffer.from('js-reply:'), env.payload]))
        emit({ event: 'request', from, exchange: hex, data: text, from_channel: data.from_channel, lazy_ack: data.lazy_ack })
      }
      // After the ack, which is written when this returns: the reply goes
      // on the stream the request came on.
      setImmediate(() => { void respond(fs, conn, ex, answered.get(hex)) })
      return 'OK'
    }
    case wire.KIND.KIND_REPLY: {
      const resolve = replyWaiters.get(hex)
      if (resolve === undefined) {
        return 'UNKNOWN_EXCHANGE' // handler-fsm.md U1
      }
      replyWaiters.delete(hex)
      setImmediate(() => resolve(text))
      return 'OK'
    }
  }
  return 'MALFORMED'
}

/** respond sends the reply to a request and, once it is acked, closes the connection: the responder has the last word. */
async function respond (fs, conn, ex, payload) {
  const hex = exchangeHex(ex)
  try {
    const reason = await fs.send({ payload: envelope(wire.KIND.KIND_REPLY, ex, payload) })
    emit({ event: 'replied', exchange: hex, reason })
    await fs.close()
    await closeConn(conn)
  } catch (err) {
    emit({ event: 'error', exchange: hex, error: `reply: ${errText(err)}` })
  }
}

function envelope (kind, exchange, payload) {
  return wire.Envelope.encode(wire.Envelope.create({ kind, exchange, payload })).finish()
}

/**
 * closeConn closes conn, and is done as well once the connection ends some
 * other way. The node closes too (the receiver of an exchange's last word
 * does, after its linger), and when its close crosses ours, js-libp2p's
 * close can wait out its whole signal: @libp2p/utils'
 * AbstractMultiaddrConnection.close waits for the socket's write queue to
 * go idle and then, if a write had filled it, for a 'drain'; the node's
 * reset aborts the socket in between, which emits that 'idle' and then
 * 'close' at once, before the wait for 'drain' begins, and no 'drain'
 * ever comes. The connection is closed all the same: its 'close' event
 * says so.
 */
async function closeConn (conn) {
  const { promise: ended, resolve } = Promise.withResolvers()
  conn.addEventListener('close', resolve, { once: true })
  try {
    await Promise.race([conn.close({ signal: AbortSignal.timeout(timeoutMs) }), ended])
  } finally {
    conn.removeEventListener('close', resolve)
  }
}

/** waitClosed resolves true once conn has closed, false after ms. */
function waitClosed (conn, ms) {
  if (conn.status === 'closed') {
    return Promise.resolve(true)
  }
  const { promise, resolve } = Promise.withResolvers()
  const onClose = (evt) => { if (evt.detail.id === conn.id) { done(true) } }
  const timer = setTimeout(() => done(false), ms)
  function done (closed) {
    clearTimeout(timer)
    node.removeEventListener('connection:close', onClose)
    resolve(closed)
  }
  node.addEventListener('connection:close', onClose)
  return promise
}

/** dialExchange runs one exchange this peer dials: a one-way message, or a request and its reply. */
async function dialExchange (cmd) {
  const kind = cmd.cmd === 'request' ? wire.KIND.KIND_REQUEST : wire.KIND.KIND_MESSAGE
  const ex = newExchange()
  const hex = exchangeHex(ex)
  const base = { id: cmd.id, exchange: hex }
  const signal = AbortSignal.timeout(timeoutMs)
  const conn = await node.dial(multiaddr(cmd.addr), { signal })
  checkPeer(conn)
  const stream = await conn.newStream(wire.PROTOCOL, { signal })
  const fs = frameStream(stream, conn)
  let reply
  if (kind === wire.KIND.KIND_REQUEST) {
    // Registered before the send: the reply may overtake the ack (D11).
    const { promise, resolve } = Promise.withResolvers()
    replyWaiters.set(hex, resolve)
    reply = promise
  }
  const reason = await fs.send({
    payload: envelope(kind, ex, Buffer.from(cmd.data ?? '', 'utf8')),
    lazyAck: kind === wire.KIND.KIND_REQUEST // as the handler does (§4.5)
  })
  emit({ event: 'acked', ...base, kind: wire.kindName(kind), reason })
  if (reason !== 'OK' || kind === wire.KIND.KIND_MESSAGE) {
    // A message's sender has the last word, and closes at once.
    replyWaiters.delete(hex)
    await fs.close()
    await closeConn(conn)
    emit({ event: 'closed', ...base, by: 'us' })
    return
  }
  const timer = setTimeout(() => replyWaiters.get(hex)?.(null), timeoutMs)
  const data = await reply
  clearTimeout(timer)
  replyWaiters.delete(hex)
  if (data === null) {
    throw new Error(`no reply within ${timeoutMs} ms`)
  }
  emit({ event: 'reply', ...base, data })
  // The dialer that got the reply lingers: the responder closes once it has
  // our ack; closing first could lose that ack.
  const byPeer = await waitClosed(conn, 2000)
  if (!byPeer) {
    await closeConn(conn)
  }
  emit({ event: 'closed', ...base, by: byPeer ? 'peer' : 'us' })
}

await node.handle(wire.PROTOCOL, (stream, conn) => {
  try {
    checkPeer(conn)
  } catch (err) {
    emit({ event: 'error', error: errText(err) })
    stream.abort(err)
    return
  }
  frameStream(stream, conn)
})
await node.start()
emit({ event: 'listening', peer: node.peerId.toString(), addrs: node.getMultiaddrs().map(String) })

const running = new Set()
const lines = readline.createInterface({ input: process.stdin })
for await (const line of lines) {
  if (line.trim() === '') {
    continue
  }
  let cmd
  try {
    cmd = JSON.parse(line)
  } catch (err) {
    emit({ event: 'error', error: `stdin: ${errText(err)}` })
    continue
  }
  if (cmd.cmd !== 'send' && cmd.cmd !== 'request') {
    emit({ event: 'error', id: cmd.id, error: `unknown cmd ${cmd.cmd}` })
    continue
  }
  const p = dialExchange(cmd).catch((err) => emit({ event: 'error', id: cmd.id, error: `${cmd.cmd}: ${errText(err)}` }))
  running.add(p)
  p.finally(() => running.delete(p))
}
await Promise.all(running)
await node.stop()
emit({ event: 'stopped' })
process.exit(0)
