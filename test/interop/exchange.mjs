// Exchange IDs of the handler envelope (handler/pb/exchange.proto): a random
// non-zero fixed64 chosen by the dialer. Printed as p2pnode prints them: 16
// lowercase hex digits, zero-padded.

import { randomBytes } from 'node:crypto'
import { Long } from './wire.mjs'

/** newExchange returns a random non-zero exchange ID. */
export function newExchange () {
  for (;;) {
    const ex = Long.fromBytesBE([...randomBytes(8)], true)
    if (!ex.isZero()) {
      return ex
    }
  }
}

/** exchangeHex is the text form of an exchange ID. */
export function exchangeHex (ex) {
  return Long.fromValue(ex).toUnsigned().toString(16).padStart(16, '0')
}
