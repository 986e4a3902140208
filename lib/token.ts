import { hash, timingSafeEqual } from 'node:crypto'
import type { FastifyRequest } from 'fastify'
import { InvalidArgumentError } from './errors.js'

/** Where the token may come from: `?token=`, `Authorization: Bearer`, or a header of its own (the Python server's `webhooks.headers`). */
export type TokenSource = 'query' | 'bearer' | { readonly header: string }

/** Checks a candidate against the configured tokens in constant time. */
export type TokenVerifier = (candidate: unknown) => boolean

/**
 * Every candidate and every token is brought to this many bytes before the
 * compare: a 2-byte header, then the value itself (UTF-8, zero-padded) when
 * it fits in the remaining 126 bytes, as a recommended 64-character hex token
 * does, or else its SHA-256 digest: hashing is the costly part, so the common
 * short values skip it.
 */
export const COMPARED_LENGTH = 128
const DIRECT_MAX = COMPARED_LENGTH - 2
const DIGEST_HEADER = 0xffff

/**
 * Where every verifier writes its candidate's form (verification is
 * synchronous). One buffer for all: the candidate's side then touches the
 * same memory whichever verifier runs, so that two verifiers (of a long and
 * of a short secret, say) take the same time (docs/security.md).
 */
const candidateForm = Buffer.alloc(COMPARED_LENGTH)

/**
 * Writes the fixed-length form of `value` into `target` (COMPARED_LENGTH
 * bytes): header = the value's byte length (≤ 126) then the value, or header
 * 0xFFFF then its SHA-256. Two values have the same form only if they are
 * equal (barring a SHA-256 collision). Which form is used depends only on the
 * value's own length, so a candidate's form reveals nothing about the tokens.
 */
function fixedForm (value: string, target: Buffer): Buffer {
  const length = Buffer.byteLength(value, 'utf8')
  target.fill(0)
  const direct = length <= DIRECT_MAX
  target.writeUInt16BE(direct ? length : DIGEST_HEADER, 0)
  if (direct) target.write(value, 2, length, 'utf8')
  else hash('sha256', value, 'buffer').copy(target, 2)
  return target
}

/**
 * Returns a verifier that compares a candidate with every configured token
 * (several tokens allow rotation). The candidate and every token are brought
 * to one fixed length (see COMPARED_LENGTH), and the candidate is compared
 * with every token by `crypto.timingSafeEqual`, with no early exit: neither
 * the position of a wrong character, nor the secret's length, nor whether
 * the candidate's length equals it (the length is compared inside the fixed
 * form), nor which token matched changes the time taken.
 */
export function createTokenVerifier (tokens: string | readonly string[]): TokenVerifier {
  const list = typeof tokens === 'string' ? [tokens] : tokens
  if (!Array.isArray(list) || list.length === 0 || !list.every(isUsableToken)) {
    throw new InvalidArgumentError('createTokenVerifier(tokens) needs a non-empty string or a non-empty array of non-empty strings')
  }
  const forms = list.map((token) => fixedForm(token, Buffer.alloc(COMPARED_LENGTH)))
  return function verifyToken (candidate: unknown): boolean {
    if (typeof candidate !== 'string') return false
    fixedForm(candidate, candidateForm)
    let matched = 0
    // Number(), not `? 1 : 0`: a branch on each result would let branch
    // prediction tell which token matched (test/token-fixed-form.test.ts).
    for (const form of forms) matched |= Number(timingSafeEqual(candidateForm, form))
    return matched === 1
  }
}

export function isUsableToken (token: unknown): token is string {
  return typeof token === 'string' && token.trim().length > 0
}

const BEARER = /^Bearer +(\S+) *$/i

/** The source's credential: undefined when absent, null when present in another form (never verifies). */
function credential (request: FastifyRequest, source: TokenSource): unknown {
  if (source === 'query') return (request.query as Record<string, unknown> | undefined)?.token
  if (source !== 'bearer') return request.headers[source.header]
  const header = request.headers.authorization
  return header === undefined ? undefined : BEARER.exec(header)?.[1] ?? null
}

/**
 * Authenticates a request from the configured sources. Every credential
 * present must verify, and at least one must be present: a wrong header
 * cannot hide behind a right query parameter, and a repeated `?token=` or
 * header (parsed as an array) never verifies.
 */
export function isAuthorized (request: FastifyRequest, verify: TokenVerifier, sources: readonly TokenSource[]): boolean {
  let present = 0
  let valid = 1
  for (const source of sources) {
    const candidate = credential(request, source)
    if (candidate === undefined) continue
    present++
    valid &= verify(candidate) ? 1 : 0
  }
  return present > 0 && valid === 1
}
