import { ShuttingDownError, TooManyWaitersError, WaitTimeoutError } from '../errors.js'
import type { RunWebhook } from '../schemas.js'

export interface WaitForRunOptions {
  /** How long to wait before rejecting with `FST_LANGGRAPH_WEBHOOKS_WAIT_TIMEOUT`. Default 10 minutes. */
  timeoutMs?: number
  /** Rejects the wait with the signal's reason when aborted. */
  signal?: AbortSignal
}

export const DEFAULT_WAIT_TIMEOUT_MS = 10 * 60 * 1000
/** How long a delivery is remembered for a caller that gets to wait after it arrived. */
export const REMEMBER_MS = 60 * 1000
/**
 * The most deliveries remembered at once (the oldest is forgotten first): a
 * burst can neither take the memory nor keep enough runs alive to burden
 * the garbage collector (bench/README.md).
 */
export const MAX_REMEMBERED = 100
/** The most body bytes remembered at once: large `values` are remembered only while they fit. */
export const MAX_REMEMBERED_BYTES = 256 * 1024
/** The most callers waiting at once: each holds a timer and a promise until its timeout. */
export const MAX_WAITING = 10_000
// setTimeout fires at once for longer delays.
const MAX_TIMEOUT_MS = 2 ** 31 - 1

interface Waiter {
  resolve: (run: RunWebhook<unknown>) => void
  reject: (reason: unknown) => void
  timer: NodeJS.Timeout
  signal: AbortSignal | undefined
  onAbort: (() => void) | undefined
}

/** Tells the other instances about a delivery received here (Redis pub/sub), and finds theirs. */
export interface WaitRelay {
  publish (run: RunWebhook<unknown>): void
  /** Looks for a recent delivery of the run made elsewhere; one found is `heard`. */
  lookup (runId: string): void
  close (): Promise<void>
}

/**
 * Callers waiting for a run's delivery, and the deliveries of the last
 * minute for callers that come late (runs often finish before the code that
 * started them gets to wait). Every waiter holds one timer, dropped as soon
 * as it settles; remembered deliveries expire on one shared timer.
 */
export class RunWaiters {
  readonly #waiting = new Map<string, Set<Waiter>>()
  #waiters = 0
  /**
   * The remembered deliveries, oldest first, in a ring of parallel arrays:
   * remembering one costs no hashing and no allocation, on every delivery;
   * a late caller's lookup scans them, which only a wait pays for.
   */
  readonly #ids: Array<string | undefined>
  readonly #runs: Array<RunWebhook<unknown> | undefined>
  readonly #untils: number[]
  readonly #bytes: number[]
  #oldest = 0
  #count = 0
  #rememberedBytes = 0
  #sweep: NodeJS.Timeout | undefined
  #relay: WaitRelay | undefined
  #closed = false
  readonly #rememberMs: number
  readonly #maxRemembered: number
  readonly #maxRememberedBytes: number
  readonly #maxWaiting: number

  constructor ({ rememberMs = REMEMBER_MS, maxRemembered = MAX_REMEMBERED, maxRememberedBytes = MAX_REMEMBERED_BYTES, maxWaiting = MAX_WAITING } = {}) {
    this.#maxWaiting = maxWaiting
    this.#rememberMs = rememberMs
    this.#maxRemembered = maxRemembered
    this.#maxRememberedBytes = maxRememberedBytes
    this.#ids = new Array(maxRemembered).fill(undefined)
    this.#runs = new Array(maxRemembered).fill(undefined)
    this.#untils = new Array(maxRemembered).fill(0)
    this.#bytes = new Array(maxRemembered).fill(0)
  }

  /** Sends the deliveries received here to the waiters of other instances too. */
  relayTo (relay: WaitRelay): void {
    this.#relay = relay
  }

  wait (runId: string, options: WaitForRunOptions = {}): Promise<RunWebhook<unknown>> {
    if (typeof runId !== 'string' || runId.length === 0) {
      return Promise.reject(new TypeError('waitForRun(runId): runId must be a non-empty string (run.run_id)'))
    }
    if (options === null || typeof options !== 'object') {
      return Promise.reject(new TypeError('waitForRun(runId, options): options must be an object { timeoutMs?, signal? }'))
    }
    const { timeoutMs = DEFAULT_WAIT_TIMEOUT_MS, signal } = options
    if (!Number.isSafeInteger(timeoutMs) || timeoutMs <= 0 || timeoutMs > MAX_TIMEOUT_MS) {
      return Promise.reject(new TypeError(`waitForRun: timeoutMs must be a positive integer of milliseconds up to ${MAX_TIMEOUT_MS}, got ${typeof timeoutMs === 'string' ? `the string ${JSON.stringify(timeoutMs)}` : String(timeoutMs)}`))
    }
    if (signal !== undefined && !(signal instanceof AbortSignal)) {
      return Promise.reject(new TypeError('waitForRun: signal must be an AbortSignal'))
    }
    if (signal?.aborted === true) return Promise.reject(signal.reason)
    const remembered = this.#recall(runId)
    if (remembered !== undefined) return Promise.resolve(remembered)
    if (this.#closed) return Promise.reject(new ShuttingDownError())
    if (this.#waiters >= this.#maxWaiting) return Promise.reject(new TooManyWaitersError(this.#maxWaiting))

    const waiting = this.#waitFor(runId, timeoutMs, signal)
    // Registered first: a delivery that arrives during the lookup resolves it too.
    this.#relay?.lookup(runId)
    return waiting
  }

  /** Someone here waits for the run. */
  waitingFor (runId: string): boolean {
    return this.#waiting.has(runId)
  }

  #waitFor (runId: string, timeoutMs: number, signal: AbortSignal | undefined): Promise<RunWebhook<unknown>> {
    this.#waiters++
    return new Promise((resolve, reject) => {
      let waiters = this.#waiting.get(runId)
      if (waiters === undefined) this.#waiting.set(runId, waiters = new Set())
      const set = waiters
      const settle = (): void => {
        clearTimeout(waiter.timer)
        this.#waiters--
        if (waiter.onAbort !== undefined) waiter.signal!.removeEventListener('abort', waiter.onAbort)
        set.delete(waiter)
        if (set.size === 0 && this.#waiting.get(runId) === set) this.#waiting.delete(runId)
      }
      const waiter: Waiter = {
        resolve: (run) => {
          settle()
          resolve(run)
        },
        reject: (reason) => {
          settle()
          reject(reason)
        },
        timer: setTimeout(() => waiter.reject(new WaitTimeoutError(runId, timeoutMs)), timeoutMs),
        signal,
        onAbort: undefined
      }
      if (signal !== undefined) {
        waiter.onAbort = () => waiter.reject(signal.reason)
        signal.addEventListener('abort', waiter.onAbort, { once: true })
      }
      set.add(waiter)
    })
  }

  /** A delivery of the run was received by this instance; `bytes` is its body's size when known. */
  arrived (run: RunWebhook<unknown>, bytes?: number): void {
    this.heard(run, bytes)
    this.publish(run)
  }

  /** Tells the other instances about a delivery accepted here. */
  publish (run: RunWebhook<unknown>): void {
    if (typeof run.run_id === 'string') this.#relay?.publish(run)
  }

  /** A delivery of the run was received, here or by another instance. */
  heard (run: RunWebhook<unknown>, bytes?: number): void {
    // A body stripped of its run_id (allowedFields) is no run to wait for.
    if (this.#closed || typeof run.run_id !== 'string') return
    const runId = run.run_id
    const waiters = this.#waiting.size === 0 ? undefined : this.#waiting.get(runId)
    if (waiters !== undefined) {
      this.#waiting.delete(runId)
      for (const waiter of waiters) waiter.resolve(run)
    }
    this.#remember(runId, run, bytes ?? sizeOf(run))
  }

  #remember (runId: string, run: RunWebhook<unknown>, bytes: number): void {
    const max = this.#maxRemembered
    if (bytes > this.#maxRememberedBytes || max === 0) return
    while (this.#count === max || this.#rememberedBytes + bytes > this.#maxRememberedBytes) this.#forgetOldest()
    const slot = (this.#oldest + this.#count) % max
    this.#ids[slot] = runId
    this.#runs[slot] = run
    this.#untils[slot] = Date.now() + this.#rememberMs
    this.#bytes[slot] = bytes
    this.#count++
    this.#rememberedBytes += bytes
    this.#sweep ??= this.#scheduleSweep()
  }

  /** The newest remembered delivery of the run, if it is recent enough. */
  #recall (runId: string): RunWebhook<unknown> | undefined {
    for (let i = this.#count - 1; i >= 0; i--) {
      const slot = (this.#oldest + i) % this.#maxRemembered
      if (this.#ids[slot] === runId) return this.#untils[slot] > Date.now() ? this.#runs[slot] : undefined
    }
    return undefined
  }

  #forgetOldest (): void {
    const slot = this.#oldest
    this.#rememberedBytes -= this.#bytes[slot]
    this.#ids[slot] = undefined
    this.#runs[slot] = undefined
    this.#oldest = (slot + 1) % this.#maxRemembered
    this.#count--
  }

  #scheduleSweep (): NodeJS.Timeout | undefined {
    if (this.#count === 0) return undefined
    // Remembered deliveries are no reason to keep the process alive.
    return setTimeout(() => {
      const now = Date.now()
      while (this.#count > 0 && this.#untils[this.#oldest] <= now) this.#forgetOldest()
      this.#sweep = this.#scheduleSweep()
    }, Math.max(0, this.#untils[this.#oldest] - Date.now()) + 1).unref()
  }

  /** Rejects every waiter (the application is closing) and forgets every delivery. */
  async close (): Promise<void> {
    this.#closed = true
    for (const waiters of [...this.#waiting.values()]) {
      for (const waiter of waiters) waiter.reject(new ShuttingDownError())
    }
    clearTimeout(this.#sweep)
    this.#sweep = undefined
    while (this.#count > 0) this.#forgetOldest()
    await this.#relay?.close()
  }
}

/** The serialized size of a run; one too deep to serialize is too large to remember. */
function sizeOf (run: RunWebhook<unknown>): number {
  try {
    return JSON.stringify(run).length
  } catch {
    return Number.POSITIVE_INFINITY
  }
}
