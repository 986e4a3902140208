/**
 * Statistical timing test of createTokenVerifier (dudect-style, see
 * bench/timing.ts): the time a wrong token takes to be rejected must
 * depend neither on where it is wrong nor on the length of the secret.
 *
 * The same harness is then pointed at three leaky comparisons (an early-exit
 * character loop, plain `===`, and the verifier plus `===`) that must
 * be caught every time, which shows the test can fail.
 *
 * Runtime: ~3 s of measurement on an idle machine, 3-6 s with the machine
 * shared and CPU burners running (plus tap and tsx start-up).
 */
import { randomBytes } from 'node:crypto'
import t from 'tap'
import { createTokenVerifier } from '../lib/token.js'
import {
  bestOf,
  describe,
  freshString,
  measureGap,
  worstOf,
  type TimingClass,
  type TimingResult
} from './timing.js'

/**
 * Largest acceptable gap between the two classes, in ns per call (the paired
 * gap of bench/timing.ts; the plain-median gap is reported too).
 *
 * Crosby, Wallach & Riedi ("Opportunities and limits of remote timing
 * attacks", ACM TISSEC 2009) resolved differences of ~100 ns across a LAN at
 * best, with tens of thousands of requests, and 15-100 µs across the
 * Internet. 5 ns is twenty times finer than that LAN limit, so whatever
 * passes is far below anything measurable over a network, while staying
 * above this harness's own noise: on this shared, loaded 2-core machine the
 * paired gap between two equal-cost workloads of ~1.4 µs/call (mostly the
 * SHA-256 of a 1 KiB candidate, i.e. the bound is 0.35% of a call) stays
 * mostly within ±3 ns and exceeded 5 ns in under 1% of measurements (hence
 * best of three). It is also tight enough to catch V8's own `===` on 1 KiB
 * strings, whose leak is only ~20 ns/call.
 */
const BOUND_NS = 5

/** Up to three attempts, for both the verifier and the controls. */
const TRIES = 3

/**
 * Harness settings for the verifier: ~0.6 s per attempt on an idle core. On
 * a starved one, sampling stops after 1 s (with at least 1000 samples).
 */
const OPTIONS = { samples: 8000, batch: 50, warmup: 100, maxMs: 1000 } as const

/**
 * The controls run through the same harness, batch and estimator with an
 * eighth of the samples, only to save time (the early-exit loop costs
 * ~2.4 µs/call, and there are 18 control attempts). Fewer samples make their
 * gaps noisier, not larger: catching the leak in every attempt gets harder,
 * never easier.
 */
const CONTROL_OPTIONS = { ...OPTIONS, samples: 1000 } as const

// 1 KiB of random hex: the secret of pairs 1 and 2.
const SECRET = freshString(randomBytes(512).toString('hex'))
const SHORT_SECRET = freshString(SECRET.slice(0, 40))

function withCharAt (s: string, index: number): string {
  const wrong = s[index] === 'x' ? 'y' : 'x' // never a hex digit, so always wrong
  return freshString(s.slice(0, index) + wrong + s.slice(index + 1))
}

/** Same length as SECRET, wrong only at its last character. */
const WRONG_LAST = withCharAt(SECRET, SECRET.length - 1)
/** Same length as SECRET, wrong only at its first character. */
const WRONG_FIRST = withCharAt(SECRET, 0)

type MakeVerifier = (secret: string) => (candidate: unknown) => boolean

/**
 * Pair 1: the same secret, a candidate wrong at its last character (A) vs one
 * wrong at its first (B). An early-exit comparison makes A slower.
 */
function pair1 (make: MakeVerifier): [TimingClass, TimingClass] {
  const verify = make(SECRET)
  return [
    { label: 'wrong at last char', verify, candidate: WRONG_LAST },
    { label: 'wrong at first char', verify, candidate: WRONG_FIRST }
  ]
}

/**
 * Pair 2: the same 1 KiB candidate against a 1 KiB secret (A) vs a 40-char
 * secret (B). A comparison that checks lengths first, then characters, makes
 * A slower. (The candidate is the same in both classes, so the verifier
 * hashes the same input; only the secret differs.)
 */
function pair2 (make: MakeVerifier): [TimingClass, TimingClass] {
  return [
    { label: `secret of ${SECRET.length} chars`, verify: make(SECRET), candidate: WRONG_LAST },
    { label: `secret of ${SHORT_SECRET.length} chars`, verify: make(SHORT_SECRET), candidate: WRONG_LAST }
  ]
}

/** Control (a): a JS comparison that stops at the first differing character. */
const earlyExit: MakeVerifier = (secret) => (candidate) => {
  if (typeof candidate !== 'string' || candidate.length !== secret.length) return false
  for (let i = 0; i < secret.length; i++) {
    if (candidate.charCodeAt(i) !== secret.charCodeAt(i)) return false
  }
  return true
}

/**
 * Control (b): plain `===`. V8 compares two equal-length flat strings up to
 * their first difference (~21 ns/call for 1 KiB: a vectorised compare), unless
 * it can answer without reading them: two internalised strings compare by
 * pointer, and strings whose hashes are already computed and differ are
 * unequal at once. Hence freshString for every input, and no input is ever
 * used as a property key or in a Map or Set.
 */
const strictEquals: MakeVerifier = (secret) => (candidate) => candidate === secret

const verifier: MakeVerifier = (secret) => createTokenVerifier(secret)

/**
 * Control (c): the real verifier, plus a `===`. Its ~40 ns leak hides under
 * ~1.4 µs of hashing, i.e. it has the verifier's own noise: this shows that
 * the bound is enforceable at that noise level, not only for the cheap
 * controls above. Both results are combined without short-circuit: with
 * `verify(candidate) && candidate === secret`, TurboFan moves the pure `===`
 * into the branch that is never taken and the leak (and the control) vanish.
 */
const verifierAndEquals: MakeVerifier = (secret) => {
  const verify = createTokenVerifier(secret)
  return (candidate) => {
    const hashed = verify(candidate) ? 1 : 0
    const equal = candidate === secret ? 1 : 0
    return (hashed & equal) === 1
  }
}

function report (t: { comment: (message: string) => void }, results: readonly TimingResult[]): void {
  for (const r of results) t.comment(describe(r))
}

const pairs = [
  ['pair 1 (position of the wrong character)', pair1],
  ['pair 2 (length of the secret)', pair2]
] as const

t.test('sanity: the inputs are what the pairs claim', async (t) => {
  t.equal(SECRET.length, 1024)
  t.equal(WRONG_LAST.length, SECRET.length)
  t.equal(WRONG_FIRST.length, SECRET.length)
  t.equal(WRONG_LAST.slice(0, -1), SECRET.slice(0, -1))
  t.not(WRONG_LAST.at(-1), SECRET.at(-1))
  t.equal(WRONG_FIRST.slice(1), SECRET.slice(1))
  t.not(WRONG_FIRST[0], SECRET[0])
  for (const make of [verifier, earlyExit, strictEquals, verifierAndEquals]) {
    t.equal(make(SECRET)(freshString(SECRET)), true)
    t.equal(make(SECRET)(WRONG_LAST), false)
    t.equal(make(SECRET)(WRONG_FIRST), false)
    t.equal(make(SHORT_SECRET)(WRONG_LAST), false)
  }
})

for (const [name, pair] of pairs) {
  t.test(`verifier: ${name} changes the time by under ${BOUND_NS} ns/call`, async (t) => {
    const [a, b] = pair(verifier)
    const { ok, results } = bestOf(TRIES, () => measureGap(a, b, OPTIONS), (r) => Math.abs(r.gapNs) < BOUND_NS)
    report(t, results)
    t.ok(ok, `|gap| < ${BOUND_NS} ns/call in at least one of ${TRIES} attempts`, {
      gapsNs: results.map((r) => Number(r.gapNs.toFixed(2)))
    })
  })
}

const controls = [
  ['early-exit JS loop', earlyExit],
  ['===', strictEquals],
  ['verifier plus ===', verifierAndEquals]
] as const

for (const [control, make] of controls) {
  for (const [name, pair] of pairs) {
    t.test(`control ${control}: ${name} leaks over ${BOUND_NS} ns/call`, async (t) => {
      const [a, b] = pair(make)
      const { ok, results } = worstOf(TRIES, () => measureGap(a, b, CONTROL_OPTIONS), (r) => r.gapNs > BOUND_NS)
      report(t, results)
      t.ok(ok, `gap > ${BOUND_NS} ns/call (A slower) in all of ${TRIES} attempts`, {
        gapsNs: results.map((r) => Number(r.gapNs.toFixed(2)))
      })
    })
  }
}
