import { randomBytes } from 'node:crypto'
// '%' (the escape itself), ':' (the separator of key parts), '.' (the
// separator of job ids), '{' and '}' (Redis Cluster hash tags), and lone
// surrogates, which UTF-8 would turn into U+FFFD on their way to Redis.
const RESERVED = /[%:.{}]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g

/**
 * A value from a webhook (a run id, a status) as one part of a Redis key or
 * a BullMQ job id: injective, and never holding ':', '.', '{' or '}', so no
 * value can reach into another part, another run's key or another feature's.
 */
export function encodeKeyPart (value: string): string {
  return value.replace(RESERVED, escapeChar)
}

function escapeChar (char: string): string {
  const code = char.charCodeAt(0)
  // Lone surrogates get four digits behind a 'u', the rest two: decodable either way.
  return code > 0xff ? `%u${code.toString(16).toUpperCase()}` : `%${code.toString(16).toUpperCase()}`
}

const OWNER_PREFIX = randomBytes(9).toString('base64url')
let owners = 0

/** A holder of a lease or claim, unique across instances: a release drops only its own. */
export function newOwner (): string {
  return `${OWNER_PREFIX}.${++owners}`
}
