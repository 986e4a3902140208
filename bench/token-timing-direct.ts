/**
 * Timing of the verifier's direct form (lib/token.ts), which real
 * 64-character tokens take: the harness and bound of bench/token-timing.ts,
 * whose 1 KiB candidates take the digest form. Exits non-zero on a leak.
 */
import { randomBytes } from 'node:crypto'
import t from 'tap'
import { createTokenVerifier } from '../lib/token.js'
import { bestOf, describe, freshString, measureGap, type TimingClass } from './timing.js'

// As in bench/token-timing.ts, the
// pairs vary what the sender does not know (the secret: where it differs,
// its length, which token matched), with the same work on the candidate's
// side; the work on a candidate depends on its own length only (as hashing
// it did), which tells the sender nothing it did not choose.
const BOUND_NS = 5
const TRIES = 3
const OPTIONS = { samples: 8000, batch: 50, warmup: 100, maxMs: 1000 } as const

const SECRET = freshString(randomBytes(32).toString('hex')) // 64 chars, the recommended token
function withCharAt (s: string, index: number): string {
  const wrong = s[index] === 'x' ? 'y' : 'x'
  return freshString(s.slice(0, index) + wrong + s.slice(index + 1))
}

const pairs: Array<[string, () => [TimingClass, TimingClass]]> = [
  ['position of the wrong character (64-char token)', () => {
    const verify = createTokenVerifier(SECRET)
    return [
      { label: 'wrong at last char', verify, candidate: withCharAt(SECRET, SECRET.length - 1) },
      { label: 'wrong at first char', verify, candidate: withCharAt(SECRET, 0) }
    ]
  }],
  ['the secret\'s length equal to the candidate\'s or not (same 64-char candidate, secrets of 64 and 40 chars)', () => {
    const candidate = withCharAt(SECRET, 10)
    return [
      { label: 'secret of 64 chars', verify: createTokenVerifier(SECRET), candidate },
      { label: 'secret of 40 chars', verify: createTokenVerifier(freshString(SECRET.slice(0, 40))), candidate }
    ]
  }],
  ['the secret\'s form, direct or digest (same 64-char candidate, secrets of 64 and 1024 chars)', () => {
    const candidate = withCharAt(SECRET, 10)
    return [
      { label: 'secret of 64 chars', verify: createTokenVerifier(SECRET), candidate },
      { label: 'secret of 1024 chars', verify: createTokenVerifier(freshString(randomBytes(512).toString('hex'))), candidate }
    ]
  }],
  ['which of two tokens matches', () => {
    const other = freshString(randomBytes(32).toString('hex'))
    const verify = createTokenVerifier([SECRET, other])
    return [
      { label: 'first token', verify, candidate: freshString(SECRET) },
      { label: 'second token', verify, candidate: freshString(other) }
    ]
  }]
]

for (const [name, pair] of pairs) {
  t.test(`direct form: ${name} changes the time by under ${BOUND_NS} ns/call`, async (t) => {
    const [a, b] = pair()
    const { ok, results } = bestOf(TRIES, () => measureGap(a, b, OPTIONS), (r) => Math.abs(r.gapNs) < BOUND_NS)
    for (const r of results) t.comment(describe(r))
    t.ok(ok, `|gap| < ${BOUND_NS} ns/call in at least one of ${TRIES} attempts`, {
      gapsNs: results.map((r) => Number(r.gapNs.toFixed(2)))
    })
  })
}
