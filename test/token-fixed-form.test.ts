/**
 * The verifier's fixed-length form (lib/token.ts): values up to 126 UTF-8
 * bytes are compared as they are, longer ones by their SHA-256: correctness
 * on both sides of the boundary. Their timing is measured by
 * `npm run bench:timing` (bench/token-timing.ts and bench/token-timing-direct.ts).
 */
import { randomBytes } from 'node:crypto'
import t from 'tap'
import { COMPARED_LENGTH, createTokenVerifier } from '../lib/token.js'
import { freshString } from '../bench/timing.js'

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
