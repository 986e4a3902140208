import { LruMap } from 'toad-cache'
import { InvalidArgumentError, ShuttingDownError, TooManyWaitersError, WaitTimeoutError } from '../errors.js'
import type { RunWebhook } from '../schemas.js'

export interface WaitForRunOptions {
  /** How long to wait before rejecting with `FST_LANGGRAPH_WEBHOOKS_WAIT_TIMEOUT`. Default 10 minutes. */
  timeoutMs?: number
  /** Rejects the wait with the signal's reason when aborted. */
  signal?: AbortSignal
}

/** How long a delivery is remembered for a caller that gets to wait after it arrived. */
export const REMEMBER_MS = 60 * 1000
// setTimeout fires at once for longer delays.
const MAX_TIMEOUT_MS = 2 ** 31 - 1

interface Remembered { run: RunWebhook<unknown>, bytes: number, until: number }
interface Waiter { resolve: (run: RunWebhook<unknown>) => void, reject: (reason: unknown) => void }

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
  readonly #limits

  // At most 100 deliveries (a burst keeps few runs alive) and 256 KiB remembered; each of 10 000 waiters holds a timer and a promise.
  constructor ({ rememberMs = REMEMBER_MS, maxRemembered = 100, maxRememberedBytes = 256 * 1024, maxWaiting = 10_000 } = {}) {
    this.#limits = { rememberMs, maxRemembered, maxRememberedBytes, maxWaiting }
    this.#remembered = new LruMap<Remembered>(maxRemembered)
  }

  /** Sends the deliveries received here to the waiters of other instances too. */
  relayTo (relay: WaitRelay): void {
    this.#relay = relay
  }

  wait (runId: string, options: WaitForRunOptions = {}): Promise<RunWebhook<unknown>> {
    const invalid = (message: string): Promise<never> => Promise.reject(new InvalidArgumentError(message))
    if (typeof runId !== 'string' || runId.length === 0) return invalid('waitForRun(runId): runId must be a non-empty string (run.run_id)')
    if (options === null || typeof options !== 'object') return invalid('waitForRun(runId, options): options must be an object { timeoutMs?, signal? }')
    const { timeoutMs = 10 * 60 * 1000, signal } = options
    if (!Number.isSafeInteger(timeoutMs) || timeoutMs <= 0 || timeoutMs > MAX_TIMEOUT_MS) {
      return invalid(`waitForRun: timeoutMs must be a positive integer of milliseconds up to ${MAX_TIMEOUT_MS}, got ${typeof timeoutMs === 'string' ? `the string ${JSON.stringify(timeoutMs)}` : String(timeoutMs)}`)
    }
    if (signal !== undefined && !(signal instanceof AbortSignal)) return invalid('waitForRun: signal must be an AbortSignal')
    if (signal?.aborted === true) return Promise.reject(signal.reason)
    const remembered = this.#remembered.get(runId)
    if (remembered !== undefined && remembered.until > Date.now()) return Promise.resolve(remembered.run)
    if (this.#closed) return Promise.reject(new ShuttingDownError())
    if (this.#waiters >= this.#limits.maxWaiting) return Promise.reject(new TooManyWaitersError(this.#limits.maxWaiting))
    this.#waiters++
    const waiting = new Promise<RunWebhook<unknown>>((resolve, reject) => {
      const waiters = this.#waiting.get(runId) ?? new Set()
      this.#waiting.set(runId, waiters)
      const settle = <T> (then: (value: T) => void) => (value: T): void => {
        clearTimeout(timer)
        signal?.removeEventListener('abort', onAbort)
        this.#waiters--
        waiters.delete(waiter)
        if (waiters.size === 0 && this.#waiting.get(runId) === waiters) this.#waiting.delete(runId)
        then(value)
      }
      const waiter: Waiter = { resolve: settle(resolve), reject: settle(reject) }
      const timer = setTimeout(() => waiter.reject(new WaitTimeoutError(runId, timeoutMs)), timeoutMs)
      const onAbort = (): void => waiter.reject(signal!.reason)
      signal?.addEventListener('abort', onAbort, { once: true })
      waiters.add(waiter)
    })
    // Registered first: a delivery that arrives during the lookup resolves it too.
    this.#relay?.lookup(runId)
    return waiting
  }

  /** Someone here waits for the run. */
  waitingFor (runId: string): boolean {
    return this.#waiting.has(runId)
  }

  /** A delivery of the run was received by this instance (`bytes`: its body's size, when known): other instances hear of it. */
  arrived (run: RunWebhook<unknown>, bytes?: number): void {
    this.heard(run, bytes)
    if (typeof run.run_id === 'string') this.#relay?.publish(run)
  }

  /** A delivery of the run was received, here or by another instance. */
  heard (run: RunWebhook<unknown>, bytes?: number): void {
    // A body stripped of its run_id (allowedFields) is no run to wait for.
    if (this.#closed || typeof run.run_id !== 'string') return
    const runId = run.run_id
    const waiters = this.#waiting.get(runId)
    if (waiters !== undefined) {
      this.#waiting.delete(runId)
      for (const waiter of waiters) waiter.resolve(run)
    }
    const { maxRemembered, maxRememberedBytes, rememberMs } = this.#limits
    bytes ??= sizeOf(run)
    if (bytes > maxRememberedBytes) return
    const remembered = this.#remembered
    const again = remembered.items.get(runId)
    if (again !== undefined) {
      this.#rememberedBytes -= again.value.bytes
      remembered.delete(runId)
    }
    while (remembered.size > 0 && (remembered.size >= maxRemembered || this.#rememberedBytes + bytes > maxRememberedBytes)) {
      this.#rememberedBytes -= (remembered.first as { value: Remembered }).value.bytes
      remembered.evict()
    }
    remembered.set(runId, { run, bytes, until: Date.now() + rememberMs })
    this.#rememberedBytes += bytes
  }

  /** Rejects every waiter (the application is closing) and forgets every delivery. */
  async close (): Promise<void> {
    this.#closed = true
    for (const waiter of [...this.#waiting.values()].flatMap((waiters) => [...waiters])) waiter.reject(new ShuttingDownError())
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
