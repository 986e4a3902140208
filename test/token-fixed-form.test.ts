/**
 * The verifier's fixed-length form (lib/token.ts): values up to 126 UTF-8
 * bytes are compared as they are, longer ones by their SHA-256. Correctness
 * on both sides of the boundary, and (with the harness of
 * test/token-timing.test.ts, whose 1 KiB candidates take the digest form)
 * the timing of the direct form that real 64-character tokens take.
 */
import { randomBytes } from 'node:crypto'
import t from 'tap'
import { COMPARED_LENGTH, createTokenVerifier } from '../lib/token.js'
import { bestOf, describe, freshString, measureGap, type TimingClass } from './helpers/timing.js'

const DIRECT_MAX = COMPARED_LENGTH - 2

t.test('equal values verify, and only they, on both sides of the direct/digest boundary', async (t) => {
  for (const length of [1, 2, 63, 64, DIRECT_MAX - 1, DIRECT_MAX, DIRECT_MAX + 1, DIRECT_MAX + 2, 1024]) {
    const secret = randomBytes(length).toString('hex').slice(0, length)
    const verify = createTokenVerifier(secret)
    t.equal(verify(freshString(secret)), true, `${length} chars: the token itself`)
    t.equal(verify(secret + 'a'), false, `${length} chars: one char more`)
    t.equal(verify(secret.slice(0, -1)), false, `${length} chars: one char less`)
    t.equal(verify(secret.slice(0, -1) + (secret.endsWith('x') ? 'y' : 'x')), false, `${length} chars: last char wrong`)
    t.equal(verify(secret + '\0'), false, `${length} chars: a NUL more (the padding byte)`)
  }
})

t.test('the form encodes the length: zero padding cannot stand for a character', async (t) => {
  const verify = createTokenVerifier('abc\0')
  t.equal(verify('abc'), false)
  t.equal(verify('abc\0'), true)
  t.equal(createTokenVerifier('abc')('abc\0'), false)
})

t.test('multi-byte characters count in bytes, on both sides of the boundary', async (t) => {
  const fits = 'é'.repeat(DIRECT_MAX / 2) // 126 bytes: the direct form
  const over = fits + 'é' // 128 bytes: the digest form
  t.equal(createTokenVerifier(fits)(freshString(fits)), true)
  t.equal(createTokenVerifier(over)(freshString(over)), true)
  t.equal(createTokenVerifier(fits)(over), false)
  t.equal(createTokenVerifier(over)(fits), false)
  // A lone surrogate is encoded as U+FFFD, as the previous digest of the UTF-8 bytes did.
  t.equal(createTokenVerifier('a\uFFFD')('a\uD800'), true)
})

t.test('a long candidate against a short token, and the reverse, never verify', async (t) => {
  const short = randomBytes(32).toString('hex')
  const long = short.repeat(4)
  t.equal(createTokenVerifier(short)(long), false)
  t.equal(createTokenVerifier(long)(short), false)
  t.equal(createTokenVerifier([short, long])(long), true)
  t.equal(createTokenVerifier([short, long])(short), true)
})

// Timing of the direct form, as in test/token-timing.test.ts. As there, the
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
