// The message protocol /bitvmx/msg/2.0.0 (docs/PROTOCOL.md §4) over one
// libp2p stream, written from the spec and the .proto files only.
//
// Each end of a stream writes Data frames for its own messages and Ack
// frames for the other end's. Frames are length-prefixed (unsigned varint)
// protobuf Frame messages (§4.2).

import path from 'node:path'
import { fileURLToPath } from 'node:url'
import * as lp from 'it-length-prefixed'
import protobuf from 'protobufjs'

/** The protocol ID of the message protocol (§4). */
export const PROTOCOL = '/bitvmx/msg/2.0.0'

/** Largest payload the peer accepts (§4.6 default), and the frame overhead allowed above it. */
export const MAX_PAYLOAD = 1 << 20
const FRAME_OVERHEAD = 47

const here = path.dirname(fileURLToPath(import.meta.url))
const repo = path.resolve(here, '..', '..')
const root = new protobuf.Root()
// The schemas are read from the repository, not copied: the peer speaks what
// the .proto files say today.
await root.load([
  path.join(repo, 'p2p', 'pb', 'message.proto'),
  path.join(repo, 'handler', 'pb', 'exchange.proto')
], { keepCase: true })

export const Frame = root.lookupType('bitvmx.p2p.v2.Frame')
export const Envelope = root.lookupType('bitvmx.handler.v1.Envelope')
const Reason = root.lookupEnum('bitvmx.p2p.v2.Reason')
const Kind = root.lookupEnum('bitvmx.handler.v1.Kind')
export const Long = protobuf.util.Long

/** reasonName names an Ack reason; one this schema does not know is a refusal named by its number (§4.3). */
export function reasonName (n) {
  return Reason.valuesById[n] ?? `UNKNOWN_REASON_${n}`
}

export const REASON = Reason.values
export const KIND = Kind.values

/** kindName names an Envelope kind. */
export function kindName (n) {
  return Kind.valuesById[n] ?? `UNKNOWN_KIND_${n}`
}

/** StreamError is a failure of one stream: connection lost, protocol violation, ack timeout. */
export class StreamError extends Error {
  constructor (code, message) {
    super(message)
    this.code = code
  }
}

/**
 * FrameStream runs the message protocol on one stream, whoever opened it.
 *
 * send() writes a Data frame and resolves with the reason of its Ack (a
 * name: 'OK', 'BUSY', ...); frames are matched to acks by order, the id is
 * a check (§4.4). Data frames of the other end are handed to onData, which
 * returns the reason to ack them with; acks leave in arrival order.
 */
export class FrameStream {
  /**
   * @param {import('@libp2p/interface').Stream} stream
   * @param {object} opts
   * @param {(fs: FrameStream, data: object) => string} opts.onData judges one Data frame: returns a Reason name
   * @param {(err: Error) => void} opts.onError a protocol violation by the other end
   * @param {number} opts.ackTimeoutMs how long a sent frame may wait for its ack (§4.6)
   */
  constructor (stream, { onData, onError, ackTimeoutMs }) {
    this.stream = stream
    this.onData = onData
    this.onError = onError
    this.ackTimeoutMs = ackTimeoutMs
    this.nextId = 1 // ids of our Data frames: non-zero, increasing (§4.3)
    this.lastSeenId = Long.UZERO // the other end's last Data id
    this.pending = [] // our Data frames awaiting their ack, oldest first
    this.ended = false
    this.done = this.#readLoop()
  }

  /** send writes one Data frame and resolves with its ack's reason name. */
  send ({ channel = 0, fromChannel = 0, payload, lazyAck = false }) {
    if (this.ended) {
      return Promise.reject(new StreamError('connection_lost', 'stream ended'))
    }
    const id = this.nextId++
    const { promise, resolve, reject } = Promise.withResolvers()
    const timer = setTimeout(() => {
      // §4.6: the oldest unanswered frame waited too long; reset the stream.
      this.#fail(new StreamError('ack_timeout', `no ack for frame ${id} within ${this.ackTimeoutMs} ms`), true)
    }, this.ackTimeoutMs)
    this.pending.push({ id, resolve, reject, timer })
    this.#write({ data: { id, channel, payload, from_channel: fromChannel, lazy_ack: lazyAck } })
    return promise
  }

  /** close ends our write half once everything is written (§4.1); the reader goes on to the other end's close. */
  async close () {
    try {
      await this.stream.close({ signal: AbortSignal.timeout(this.ackTimeoutMs) })
    } catch (err) {
      this.stream.abort(err)
    }
  }

  #write (frame) {
    const bytes = Frame.encode(Frame.create(frame)).finish()
    try {
      this.stream.send(lp.encode.single(bytes))
    } catch (err) {
      this.#fail(new StreamError('connection_lost', `write: ${err?.message ?? err}`), true)
    }
  }

  #ack (id, reason) {
    this.#write({ ack: { id, reason: REASON[reason] } })
  }

  async #readLoop () {
    try {
      const frames = lp.decode(this.stream, { maxDataLength: MAX_PAYLOAD + FRAME_OVERHEAD })
      for await (const buf of frames) {
        if (!this.#onFrame(buf.subarray())) {
          return
        }
      }
      // The other end closed its write half: our acks are all written (each
      // is written as its frame is read), so close ours and fail what is
      // still unanswered (§4.1).
      this.#fail(new StreamError('connection_lost', 'the other end closed the stream'), false)
      await this.close()
    } catch (err) {
      const unreadable = { InvalidDataLengthError: 'TOO_LARGE', InvalidDataLengthLengthError: 'MALFORMED', InvalidMessageLengthError: 'MALFORMED' }[err?.name]
      if (unreadable !== undefined) {
        this.#ack(Long.UZERO, unreadable) // §4.4: id 0, then close without reading further
        this.#fail(new StreamError(unreadable.toLowerCase(), err.message), false)
        await this.close()
        return
      }
      this.#fail(new StreamError('connection_lost', `read: ${err?.message ?? err}`), false)
    }
  }

  // #onFrame handles one frame; false means the stream is over.
  #onFrame (bytes) {
    let frame
    try {
      frame = Frame.decode(bytes)
    } catch {
      frame = null
    }
    if (frame === null || frame.body == null) {
      this.#ack(Long.UZERO, 'MALFORMED')
      this.#fail(new StreamError('malformed', 'unreadable frame from the other end'), false)
      void this.close()
      return false
    }
    if (frame.body === 'ack') {
      return this.#onAck(frame.ack)
    }
    const data = frame.data
    const id = Long.fromValue(data.id)
    if (id.isZero() || id.lessThanOrEqual(this.lastSeenId)) {
      this.#ack(Long.UZERO, 'MALFORMED')
      this.#fail(new StreamError('malformed', `Data id ${id} after ${this.lastSeenId}`), false)
      void this.close()
      return false
    }
    this.lastSeenId = id
    let reason
    try {
      reason = this.onData(this, data)
    } catch (err) {
      this.onError(err)
      reason = 'MALFORMED'
    }
    this.#ack(id, reason)
    return true
  }

  #onAck (ack) {
    const head = this.pending[0]
    const id = Long.fromValue(ack.id)
    if (head === undefined || (!id.isZero() && !id.equals(head.id))) {
      // §4.4: an ack out of order is a protocol violation; reset the stream.
      const err = new StreamError('protocol_violation', `ack ${id} but oldest unanswered frame is ${head?.id ?? 'none'}`)
      this.onError(err)
      this.#fail(err, true)
      return false
    }
    this.pending.shift()
    clearTimeout(head.timer)
    head.resolve(reasonName(ack.reason))
    if (id.isZero()) {
      // The other end could not read the frame and closes the stream: the
      // frames after it are lost (§4.4).
      this.#fail(new StreamError('connection_lost', 'the other end could not read a frame'), false)
      return false
    }
    return true
  }

  // #fail fails every frame still awaiting its ack; with reset, the stream is aborted.
  #fail (err, reset) {
    this.ended = true
    for (const p of this.pending.splice(0)) {
      clearTimeout(p.timer)
      p.reject(err)
    }
    if (reset) {
      this.stream.abort(err)
    }
  }
}
