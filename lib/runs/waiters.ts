import { LruMap } from 'toad-cache'
import { InvalidArgumentError, ShuttingDownError, TooManyWaitersError, WaitTimeoutError } from '../errors.js'
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
/** The most deliveries remembered at once (the oldest is forgotten first), so that a burst keeps few runs alive. */
export const MAX_REMEMBERED = 100
/** The most body bytes remembered at once: large `values` are remembered only while they fit. */
export const MAX_REMEMBERED_BYTES = 256 * 1024
/** The most callers waiting at once: each holds a timer and a promise until its timeout. */
export const MAX_WAITING = 10_000
// setTimeout fires at once for longer delays.
const MAX_TIMEOUT_MS = 2 ** 31 - 1

interface Remembered {
  run: RunWebhook<unknown>
  bytes: number
  until: number
}

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
 * as it settles; remembered deliveries stay within a count and a byte budget,
 * the oldest forgotten first.
 */
export class RunWaiters {
  readonly #waiting = new Map<string, Set<Waiter>>()
  #waiters = 0
  // Without a TTL of its own: expiry is checked here, so that the byte count stays exact.
  readonly #remembered: LruMap<Remembered>
  #rememberedBytes = 0
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
    this.#remembered = new LruMap<Remembered>(maxRemembered)
  }

  /** Sends the deliveries received here to the waiters of other instances too. */
  relayTo (relay: WaitRelay): void {
    this.#relay = relay
  }

  wait (runId: string, options: WaitForRunOptions = {}): Promise<RunWebhook<unknown>> {
    if (typeof runId !== 'string' || runId.length === 0) {
      return Promise.reject(new InvalidArgumentError('waitForRun(runId): runId must be a non-empty string (run.run_id)'))
    }
    if (options === null || typeof options !== 'object') {
      return Promise.reject(new InvalidArgumentError('waitForRun(runId, options): options must be an object { timeoutMs?, signal? }'))
    }
    const { timeoutMs = DEFAULT_WAIT_TIMEOUT_MS, signal } = options
    if (!Number.isSafeInteger(timeoutMs) || timeoutMs <= 0 || timeoutMs > MAX_TIMEOUT_MS) {
      return Promise.reject(new InvalidArgumentError(`waitForRun: timeoutMs must be a positive integer of milliseconds up to ${MAX_TIMEOUT_MS}, got ${typeof timeoutMs === 'string' ? `the string ${JSON.stringify(timeoutMs)}` : String(timeoutMs)}`))
    }
    if (signal !== undefined && !(signal instanceof AbortSignal)) {
      return Promise.reject(new InvalidArgumentError('waitForRun: signal must be an AbortSignal'))
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
    if (bytes > this.#maxRememberedBytes) return
    this.#forget(runId)
    const remembered = this.#remembered
    while (remembered.size > 0 && (remembered.size >= this.#maxRemembered || this.#rememberedBytes + bytes > this.#maxRememberedBytes)) {
      this.#forget(remembered.first.key)
    }
    remembered.set(runId, { run, bytes, until: Date.now() + this.#rememberMs })
    this.#rememberedBytes += bytes
  }

  /** The remembered delivery of the run, if it is recent enough. */
  #recall (runId: string): RunWebhook<unknown> | undefined {
    const remembered = this.#remembered.get(runId)
    return remembered !== undefined && remembered.until > Date.now() ? remembered.run : undefined
  }

  #forget (runId: string): void {
    const remembered = this.#remembered.get(runId)
    if (remembered === undefined) return
    this.#rememberedBytes -= remembered.bytes
    this.#remembered.delete(runId)
  }

  /** Rejects every waiter (the application is closing) and forgets every delivery. */
  async close (): Promise<void> {
    this.#closed = true
    for (const waiters of [...this.#waiting.values()]) {
      for (const waiter of waiters) waiter.reject(new ShuttingDownError())
    }
    this.#remembered.clear()
    this.#rememberedBytes = 0
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
