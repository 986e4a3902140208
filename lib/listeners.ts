import type { FastifyBaseLogger, FastifyRequest } from 'fastify'
import type { RunStatus, RunWebhook, RunWebhookOf } from './schemas.js'

/** What a listener receives besides the run. */
export interface RunContext {
  /** The webhook request. Its `url`, `query` and `headers` still hold the token: log `run` or use `log`, not these. */
  request: FastifyRequest
  /** The request logger bound with `run_id`, `thread_id` and `status`; safe to log the run with. */
  log: FastifyBaseLogger
}

export type RunListener<R = RunWebhook> = (run: R, context: RunContext) => unknown
export type Unsubscribe = () => void

/**
 * Subscribes listeners to runs, optionally filtered by status. `S` only
 * admits known statuses, so a misspelt status is a compile error.
 */
export interface OnRun<Values = Record<string, unknown>> {
  (listener: RunListener<RunWebhook<Values>>): Unsubscribe
  <S extends RunStatus>(status: S | readonly S[], listener: RunListener<RunWebhookOf<S, Values>>): Unsubscribe
}

type AnyListener = RunListener<any>

/**
 * The listeners of one plugin registration, apart from the HTTP transport:
 * `on` subscribes, `receive` runs every listener matching a run.
 */
export class RunListeners {
  readonly #catchAll = new Set<AnyListener>()
  readonly #byStatus = new Map<string, Set<AnyListener>>()

  on (statusOrListener: unknown, maybeListener?: unknown): Unsubscribe {
    const catchAll = typeof statusOrListener === 'function'
    const listener = catchAll ? statusOrListener : maybeListener
    if (typeof listener !== 'function') {
      throw new TypeError('onRun(listener) or onRun(status | statuses, listener): the listener must be a function')
    }
    if (catchAll) {
      const subscription: AnyListener = (run, context) => (listener as AnyListener)(run, context)
      this.#catchAll.add(subscription)
      return () => { this.#catchAll.delete(subscription) }
    }
    const statuses = [...new Set(Array.isArray(statusOrListener) ? statusOrListener : [statusOrListener])]
    if (statuses.length === 0 || !statuses.every((status) => typeof status === 'string' && status.length > 0)) {
      throw new TypeError('onRun(status | statuses, listener): give a run status such as "success" or a non-empty array of them')
    }
    // One subscription object per call, so that subscribing the same function
    // twice and unsubscribing once leaves the other subscription in place.
    const subscription: AnyListener = (run, context) => (listener as AnyListener)(run, context)
    for (const status of statuses as string[]) {
      let set = this.#byStatus.get(status)
      if (set === undefined) this.#byStatus.set(status, set = new Set())
      set.add(subscription)
    }
    return () => {
      for (const status of statuses as string[]) {
        const set = this.#byStatus.get(status)
        set?.delete(subscription)
        if (set?.size === 0) this.#byStatus.delete(status)
      }
    }
  }

  /** The number of listeners a run of this status would reach. */
  count (status: string): number {
    return this.#catchAll.size + (this.#byStatus.get(status)?.size ?? 0)
  }

  /**
   * Runs every listener matching `run.status` concurrently and settles when
   * all have settled. Failures are gathered into one `AggregateError`.
   * Returns `undefined` when every listener returned synchronously without
   * throwing, so that the common path needs no promise.
   */
  receive (run: RunWebhook<unknown>, context: RunContext): Promise<void> | undefined {
    const byStatus = this.#byStatus.get(run.status)
    const listeners = byStatus === undefined ? [...this.#catchAll] : [...this.#catchAll, ...byStatus]
    let pending: Promise<unknown>[] | undefined
    let errors: unknown[] | undefined
    for (const listener of listeners) {
      try {
        const result = listener(run, context)
        if (isThenable(result)) (pending ??= []).push(Promise.resolve(result))
      } catch (error) {
        (errors ??= []).push(error)
      }
    }
    if (pending === undefined) {
      if (errors !== undefined) return Promise.reject(listenerFailure(errors, run))
      return undefined
    }
    return Promise.allSettled(pending).then((results) => {
      for (const result of results) {
        if (result.status === 'rejected') (errors ??= []).push(result.reason)
      }
      if (errors !== undefined) throw listenerFailure(errors, run)
    })
  }
}

function isThenable (value: unknown): value is PromiseLike<unknown> {
  return value !== null && (typeof value === 'object' || typeof value === 'function') &&
    typeof (value as PromiseLike<unknown>).then === 'function'
}

function listenerFailure (errors: unknown[], run: RunWebhook<unknown>): AggregateError {
  const noun = errors.length === 1 ? 'listener' : 'listeners'
  return new AggregateError(errors, `${errors.length} ${noun} failed for run ${run.run_id} (${run.status})`)
}
