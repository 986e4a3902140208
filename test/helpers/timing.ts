/**
 * A small dudect-style timing harness ("dude, is my code constant time?",
 * Reparaz, Balasch & Verbauwhede, 2017), used by test/token-timing.test.ts.
 *
 * Two classes of inputs are measured interleaved: before every sample the
 * class is drawn at random, so whatever else happens on the machine (other
 * processes, frequency scaling, GC, JIT) lands on both classes alike instead
 * of biasing one of them. Each sample times a batch of calls with
 * process.hrtime.bigint(), which keeps the timer's own cost and resolution
 * small next to the work measured.
 *
 * The verdict is an effect size, not a significance test: the gap between the
 * two classes' median batch times, in nanoseconds per call. Welch's t is
 * reported too, but it grows with the sample count for any microscopic
 * artefact (two identical workloads reach |t| ≈ 6 on a busy machine), so it
 * says nothing useful about whether the gap matters.
 */

/** What one class measures: `verify(candidate)`, called `batch` times per sample. */
export interface TimingClass {
  readonly label: string
  readonly verify: (candidate: unknown) => boolean
  readonly candidate: unknown
}

export interface TimingOptions {
  /** Samples to collect, both classes together (default 4000). */
  readonly samples?: number
  /** Calls per sample (default 100). */
  readonly batch?: number
  /** Discarded warm-up batches per class, run before sampling (default 200). */
  readonly warmup?: number
  /**
   * Stops sampling after this long (default 2500 ms), so a starved machine
   * yields fewer samples rather than a test that runs for minutes. At least
   * `minSamples` are always collected.
   */
  readonly maxMs?: number
  /** Floor for the sample count when maxMs cuts sampling short (default 600). */
  readonly minSamples?: number
}

export interface TimingResult {
  readonly labelA: string
  readonly labelB: string
  /** median(A) - median(B), ns per call: positive when A is slower. */
  readonly gapNs: number
  readonly medianA: number
  readonly medianB: number
  /** Welch's t over the raw batch times (reported, never gated on). */
  readonly t: number
  readonly samplesA: number
  readonly samplesB: number
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

function median (sorted: Float64Array): number {
  const n = sorted.length
  const mid = n >> 1
  return n % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
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
  const samples = options.samples ?? 4000
  const batch = options.batch ?? 100
  const warmup = options.warmup ?? 200
  const maxMs = options.maxMs ?? 2500
  const minSamples = Math.min(samples, options.minSamples ?? 600)

  const start = performance.now()
  // Warm-up: let the JIT settle on this call site with both classes seen.
  for (let w = 0; w < warmup; w++) {
    runBatch(a.verify, a.candidate, batch)
    runBatch(b.verify, b.candidate, batch)
  }

  // Preallocated, so sampling itself allocates (almost) nothing.
  const timesA = new Float64Array(samples)
  const timesB = new Float64Array(samples)
  let nA = 0
  let nB = 0
  const deadline = performance.now() + maxMs
  for (let s = 0; s < samples; s++) {
    const inA = Math.random() < 0.5
    const verify = inA ? a.verify : b.verify
    const candidate = inA ? a.candidate : b.candidate
    const t0 = process.hrtime.bigint()
    runBatch(verify, candidate, batch)
    const t1 = process.hrtime.bigint()
    const ns = Number(t1 - t0)
    if (inA) timesA[nA++] = ns
    else timesB[nB++] = ns
    // Checking the clock every 64 samples is enough and costs nothing.
    if ((s & 63) === 63 && s >= minSamples && performance.now() > deadline) break
  }

  const sortedA = timesA.slice(0, nA).sort()
  const sortedB = timesB.slice(0, nB).sort()
  const medianA = median(sortedA) / batch
  const medianB = median(sortedB) / batch
  return {
    labelA: a.label,
    labelB: b.label,
    gapNs: medianA - medianB,
    medianA,
    medianB,
    t: welchT(sortedA, sortedB),
    samplesA: nA,
    samplesB: nB,
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
 * gap is small, a noisy one proves nothing.
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
 * seen reliably, not once by luck.
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
    `(medians ${r.medianA.toFixed(1)} / ${r.medianB.toFixed(1)} ns/call, ` +
    `Welch t ${r.t.toFixed(1)}, n ${r.samplesA}+${r.samplesB} x ${r.batch}, ${r.elapsedMs.toFixed(0)} ms)`
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
