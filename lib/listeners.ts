import type { FastifyBaseLogger, FastifyRequest } from 'fastify'
import { describeError, InvalidArgumentError } from './errors.js'
import type { RunStatus, RunWebhook, RunWebhookField, RunWebhookOf, RunWebhookWith } from './schemas.js'

/** What a listener receives besides the run. */
export interface RunContext {
  /**
   * The webhook request, when the listener runs while it is answered; absent
   * for a reconciled run and in a queue worker. Its `url`, `query` and
   * `headers` still hold the token: log `run` or use `log`, not these.
   */
  readonly request?: FastifyRequest
  /** A logger bound with `run_id`, `thread_id` and `status` (and `attempt` in a queue worker); safe to log the run with. */
  readonly log: FastifyBaseLogger
  /** Which attempt this is, from 1: a queued run is retried after a failure; 1 otherwise. */
  readonly attempt: number
  /** `true` when the run was fetched from the LangGraph server because its webhook never came. */
  readonly reconciled: boolean
}

export type RunListener<R = RunWebhook> = (run: R, context: RunContext) => unknown
export type Unsubscribe = () => void

/**
 * Subscribes listeners to runs, optionally filtered by status. `S` only
 * admits known statuses, so a misspelt status is a compile error. Runs hold
 * only the fields `Fields` (`allowedFields`); without `status` among them,
 * runs cannot be filtered by status.
 */
export interface OnRun<Values = Record<string, unknown>, Fields extends RunWebhookField = RunWebhookField> {
  (listener: RunListener<RunWebhookWith<Fields, Values>>): Unsubscribe
  <S extends RunStatus>(
    status: 'status' extends Fields ? S | readonly S[] : never,
    listener: RunListener<RunWebhookOf<S, Values, Fields>>
  ): Unsubscribe
}

type AnyListener = RunListener<any>

/**
 * The listeners of one plugin registration, apart from the HTTP transport:
 * `on` subscribes, `receive` runs every listener matching a run.
 */
export class RunListeners {
  readonly #catchAll = new Set<AnyListener>()
  readonly #byStatus = new Map<string, Set<AnyListener>>()
  readonly #byStatusAllowed: boolean

  /** `statusFiltering: false` when bodies carry no `status` (`allowedFields` without it). */
  constructor ({ statusFiltering = true }: { statusFiltering?: boolean } = {}) {
    this.#byStatusAllowed = statusFiltering
  }

  on (statusOrListener: unknown, maybeListener?: unknown): Unsubscribe {
    const catchAll = typeof statusOrListener === 'function'
    const listener = catchAll ? statusOrListener : maybeListener
    if (typeof listener !== 'function') {
      throw new InvalidArgumentError('onRun(listener) or onRun(status | statuses, listener): the listener must be a function')
    }
    if (catchAll) {
      const subscription: AnyListener = (run, context) => (listener as AnyListener)(run, context)
      this.#catchAll.add(subscription)
      return () => { this.#catchAll.delete(subscription) }
    }
    if (!this.#byStatusAllowed) {
      throw new InvalidArgumentError('onRun(status, listener) filters by status, but allowedFields does not list "status": add it to allowedFields and to the server\'s webhooks.allowed_fields, or subscribe with onRun(listener)')
    }
    const statuses = [...new Set(Array.isArray(statusOrListener) ? statusOrListener : [statusOrListener])]
    if (statuses.length === 0 || !statuses.every((status) => typeof status === 'string' && status.length > 0)) {
      throw new InvalidArgumentError('onRun(status | statuses, listener): give a run status such as "success" or a non-empty array of them')
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

  /**
   * Runs every listener matching `run.status`, all started at once. Returns
   * undefined when every one returned without a promise or a throw (nothing
   * left to wait for), else a promise that settles when all have settled;
   * failures are gathered, in subscription order, into one `AggregateError`.
   */
  dispatch (run: RunWebhook<unknown>, context: RunContext): Promise<void> | undefined {
    const byStatus = this.#byStatus.get(run.status)
    const listeners = byStatus === undefined ? this.#catchAll : [...this.#catchAll, ...byStatus]
    let results: unknown[] | undefined
    let index = 0
    for (const listener of listeners) {
      let result
      try {
        result = listener(run, context)
        // Read inside the try: a hostile `then` getter is a failure like any other.
        if (typeof (result as PromiseLike<unknown> | undefined)?.then !== 'function') result = undefined
      } catch (error) {
        result = Promise.reject(error)
      }
      if (result !== undefined) (results ??= [])[index] = result
      index++
    }
    return results === undefined ? undefined : settleAll(results, run)
  }
}

async function settleAll (results: unknown[], run: RunWebhook<unknown>): Promise<void> {
  const outcomes = await Promise.allSettled(results)
  const errors = outcomes.filter((outcome) => outcome.status === 'rejected').map((outcome) => outcome.reason)
  if (errors.length > 0) throw listenerFailure(errors, run)
}

function listenerFailure (errors: unknown[], run: RunWebhook<unknown>): AggregateError {
  const noun = errors.length === 1 ? 'listener' : 'listeners'
  return new AggregateError(errors.map(describeError), `${errors.length} ${noun} failed for run ${run.run_id} (${run.status})`)
}
