import { hash, timingSafeEqual } from 'node:crypto'
import type { FastifyRequest } from 'fastify'

export type TokenSource = 'query' | 'bearer'

/** Checks a candidate against the configured tokens in constant time. */
export type TokenVerifier = (candidate: unknown) => boolean

function digest (value: string): Buffer {
  // SHA-256 brings every candidate and every token to 32 bytes: the compare
  // below neither depends on nor reveals the secret's length.
  return hash('sha256', value, 'buffer')
}

/**
 * Returns a verifier that compares a candidate with every configured token
 * (several tokens allow rotation). Every token is compared on every call,
 * with no early exit, so neither the position of a wrong character, nor the
 * lengths involved, nor which token matched changes the time taken.
 */
export function createTokenVerifier (tokens: string | readonly string[]): TokenVerifier {
  const list = typeof tokens === 'string' ? [tokens] : tokens
  if (!Array.isArray(list) || list.length === 0 || !list.every(isUsableToken)) {
    throw new TypeError('createTokenVerifier(tokens) needs a non-empty string or a non-empty array of non-empty strings')
  }
  const digests = list.map(digest)
  return function verifyToken (candidate: unknown): boolean {
    if (typeof candidate !== 'string') return false
    const candidateDigest = digest(candidate)
    let matched = 0
    for (let i = 0; i < digests.length; i++) {
      matched |= timingSafeEqual(candidateDigest, digests[i]) ? 1 : 0
    }
    return matched === 1
  }
}

export function isUsableToken (token: unknown): token is string {
  return typeof token === 'string' && token.trim().length > 0
}

const BEARER = /^Bearer +(\S+) *$/i

/**
 * Authenticates a request from the configured sources. Every credential
 * present must verify, and at least one must be present: a wrong header
 * cannot hide behind a right query parameter, and a repeated `?token=`
 * (parsed as an array) never verifies.
 */
export function isAuthorized (
  request: FastifyRequest,
  verify: TokenVerifier,
  sources: ReadonlySet<TokenSource>
): boolean {
  let present = 0
  let valid = 1
  if (sources.has('query')) {
    const candidate = (request.query as Record<string, unknown> | undefined)?.token
    if (candidate !== undefined) {
      present++
      valid &= verify(candidate) ? 1 : 0
    }
  }
  if (sources.has('bearer')) {
    const header = request.headers.authorization
    if (header !== undefined) {
      present++
      const match = BEARER.exec(header)
      valid &= verify(match === null ? undefined : match[1]) ? 1 : 0
    }
  }
  return present > 0 && valid === 1
}
