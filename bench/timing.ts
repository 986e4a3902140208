/**
 * A small dudect-style timing harness ("dude, is my code constant time?",
 * Reparaz, Balasch & Verbauwhede, 2017), used by bench/token-timing.ts (`npm run bench:timing`).
 *
 * Two classes of inputs are measured interleaved: before every sample the
 * class is drawn at random, so whatever else happens on the machine (other
 * processes, frequency scaling, GC, JIT) falls on both classes alike instead
 * of biasing one of them. Each sample times a batch of calls with
 * process.hrtime.bigint(), which keeps the timer's own cost and resolution
 * small next to the work measured.
 *
 * The verdict is an effect size, not a significance test: a gap between the
 * two classes in nanoseconds per call. Welch's t is reported too, but it
 * grows with the sample count for any microscopic artefact, so it says
 * nothing about whether a gap matters; and with these heavy-tailed timings it
 * can also miss a real one (the "verifier plus ===" control of the test leaks
 * ~40 ns/call, caught every time by the gap, while its t stays near ±1).
 *
 * Which gap: the PAIRED gap, the median over every two consecutive samples of
 * different classes of (time of the A sample - time of the B sample), per
 * call. On a shared machine the batch times are a mixture of an undisturbed
 * mode and broad slower modes (another process on the core or on its
 * hyper-thread sibling, frequency dips) that come and go in episodes of
 * milliseconds to seconds, so within one measurement the two classes never
 * see quite the same mixture, and the gap between the classes' plain medians
 * jumps by 10-20 ns (once 190 ns) whenever the median lands in a broad slow
 * mode; the gap between lower quartiles did hardly better. Two samples taken
 * back to back see the same machine state, so their difference cancels it.
 * Measured on this 2-core machine, shared with other test suites and with 1-2
 * CPU burners running, over ~430-580 measurements of two equal-cost classes
 * (~1.4 µs per call): |plain-median gap| > 5 ns/call in ~15% of them (47%
 * during the busiest spell), |paired gap| > 5 ns/call in under 1% (max 9 ns),
 * mostly within ±3 ns. A code path that takes longer for one class shows up
 * in every pair, so the paired gap loses nothing in sensitivity. The gap
 * between the plain medians is reported alongside.
 */

/** What one class measures: `verify(candidate)`, called `batch` times per sample. */
export interface TimingClass {
  readonly label: string
  readonly verify: (candidate: unknown) => boolean
  readonly candidate: unknown
}

export interface TimingOptions {
  /** Samples to collect, both classes together (default 8000). */
  readonly samples?: number
  /** Calls per sample (default 50). */
  readonly batch?: number
  /** Discarded warm-up batches per class, run before sampling (default 100). */
  readonly warmup?: number
  /**
   * Stops sampling after this long (default 1500 ms), so a starved machine
   * yields fewer samples rather than a test that runs for minutes. At least
   * `minSamples` are always collected.
   */
  readonly maxMs?: number
  /** Floor for the sample count when maxMs cuts sampling short (default 1000). */
  readonly minSamples?: number
}

export interface TimingResult {
  readonly labelA: string
  readonly labelB: string
  /**
   * The verdict, ns per call, positive when A is slower: the median over
   * consecutive samples of different classes of (A's time - B's time).
   */
  readonly gapNs: number
  /** median(A) - median(B), ns per call (reported, not gated on). */
  readonly medianGapNs: number
  /** Median ns per call of each class. */
  readonly medianA: number
  readonly medianB: number
  /** Welch's t over the raw batch times (reported, never gated on). */
  readonly t: number
  readonly samplesA: number
  readonly samplesB: number
  /** Consecutive pairs of samples of different classes behind gapNs. */
  readonly pairs: number
  readonly batch: number
  readonly elapsedMs: number
}

// Every result is folded into this module-level value, so no call can be
// optimised away as unused.
let sink = 0
/** Keeps the results observable; there is no need to call it. */
export function timingSink (): number {
  return sink
}

function runBatch (verify: (candidate: unknown) => boolean, candidate: unknown, batch: number): void {
  let acc = 0
  for (let i = 0; i < batch; i++) acc += verify(candidate) ? 1 : 0
  sink ^= acc
}

/** Quantile p of ascending `sorted`, interpolating linearly between ranks. */
function quantile (sorted: Float64Array, p: number): number {
  const rank = p * (sorted.length - 1)
  const lo = Math.floor(rank)
  const hi = Math.ceil(rank)
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo)
}

function meanAndVariance (values: Float64Array): [number, number] {
  let mean = 0
  for (let i = 0; i < values.length; i++) mean += values[i]
  mean /= values.length
  let sq = 0
  for (let i = 0; i < values.length; i++) sq += (values[i] - mean) ** 2
  return [mean, sq / (values.length - 1)]
}

function welchT (a: Float64Array, b: Float64Array): number {
  const [ma, va] = meanAndVariance(a)
  const [mb, vb] = meanAndVariance(b)
  const se = Math.sqrt(va / a.length + vb / b.length)
  return se === 0 ? 0 : (ma - mb) / se
}

/** Measures class A against class B, interleaved at random, and returns the gap. */
export function measureGap (a: TimingClass, b: TimingClass, options: TimingOptions = {}): TimingResult {
  const samples = options.samples ?? 8000
  const batch = options.batch ?? 50
  const warmup = options.warmup ?? 100
  const maxMs = options.maxMs ?? 1500
  const minSamples = Math.min(samples, options.minSamples ?? 1000)

  const start = performance.now()
  // Warm-up: lets the JIT settle on this call site, with both classes seen.
  for (let w = 0; w < warmup; w++) {
    runBatch(a.verify, a.candidate, batch)
    runBatch(b.verify, b.candidate, batch)
  }

  // Preallocated, so sampling itself allocates (almost) nothing.
  const inA = new Uint8Array(samples)
  const times = new Float64Array(samples)
  let n = 0
  const deadline = performance.now() + maxMs
  while (n < samples) {
    const isA = Math.random() < 0.5
    const verify = isA ? a.verify : b.verify
    const candidate = isA ? a.candidate : b.candidate
    const t0 = process.hrtime.bigint()
    runBatch(verify, candidate, batch)
    const t1 = process.hrtime.bigint()
    inA[n] = isA ? 1 : 0
    times[n] = Number(t1 - t0)
    n++
    // Checking the clock every 64 samples is enough and costs nothing.
    if ((n & 63) === 0 && n >= minSamples && performance.now() > deadline) break
  }

  const timesA = new Float64Array(n)
  const timesB = new Float64Array(n)
  const diffs = new Float64Array(n)
  let nA = 0
  let nB = 0
  let pairs = 0
  for (let i = 0; i < n; i++) {
    if (inA[i] === 1) timesA[nA++] = times[i]
    else timesB[nB++] = times[i]
    if (i > 0 && inA[i] !== inA[i - 1]) {
      diffs[pairs++] = inA[i] === 1 ? times[i] - times[i - 1] : times[i - 1] - times[i]
    }
  }
  // Typed arrays sort numerically.
  const sortedA = timesA.slice(0, nA).sort()
  const sortedB = timesB.slice(0, nB).sort()
  const medianA = quantile(sortedA, 0.5) / batch
  const medianB = quantile(sortedB, 0.5) / batch
  return {
    labelA: a.label,
    labelB: b.label,
    gapNs: quantile(diffs.slice(0, pairs).sort(), 0.5) / batch,
    medianGapNs: medianA - medianB,
    medianA,
    medianB,
    t: welchT(sortedA, sortedB),
    samplesA: nA,
    samplesB: nB,
    pairs,
    batch,
    elapsedMs: performance.now() - start
  }
}

export interface Attempts {
  /** Whether the verdict held (see bestOf and worstOf). */
  readonly ok: boolean
  readonly results: readonly TimingResult[]
}

/**
 * Passes when ANY of up to `tries` measurements satisfies `accept`; stops at
 * the first that does. For "no leak" claims: one clean measurement shows the
 * gap is small, a disturbed one proves nothing.
 */
export function bestOf (tries: number, measure: () => TimingResult, accept: (r: TimingResult) => boolean): Attempts {
  const results: TimingResult[] = []
  for (let i = 0; i < tries; i++) {
    const r = measure()
    results.push(r)
    if (accept(r)) return { ok: true, results }
  }
  return { ok: false, results }
}

/**
 * Passes only when EVERY one of `tries` measurements satisfies `accept`;
 * stops at the first that does not. For "this leaks" claims: the leak must be
 * seen every time, not once by luck.
 */
export function worstOf (tries: number, measure: () => TimingResult, accept: (r: TimingResult) => boolean): Attempts {
  const results: TimingResult[] = []
  for (let i = 0; i < tries; i++) {
    const r = measure()
    results.push(r)
    if (!accept(r)) return { ok: false, results }
  }
  return { ok: true, results }
}

/** One line per measurement, for test diagnostics. */
export function describe (r: TimingResult): string {
  return `${r.labelA} vs ${r.labelB}: gap ${r.gapNs.toFixed(2)} ns/call ` +
    `(plain-median gap ${r.medianGapNs.toFixed(2)}, medians ${r.medianA.toFixed(1)} / ${r.medianB.toFixed(1)} ns/call, ` +
    `Welch t ${r.t.toFixed(1)}, n ${r.samplesA}+${r.samplesB} x ${r.batch} calls, ${r.pairs} pairs, ${r.elapsedMs.toFixed(0)} ms)`
}

/**
 * A copy of `s` as a fresh flat (sequential), non-internalised string. Strings
 * built by concatenation are cons strings, and literals are internalised:
 * V8 compares two different internalised strings by pointer, so `===` on them
 * would never reach the characters and could not leak (or be shown to leak).
 */
export function freshString (s: string): string {
  return Buffer.from(s, 'latin1').toString('latin1')
}
