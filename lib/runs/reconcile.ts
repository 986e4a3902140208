import type { FastifyBaseLogger } from 'fastify'
import { InvalidRunError } from '../errors.js'
import type { Receiver } from '../receive.js'
import type { RunWebhook } from '../schemas.js'
import type { LanggraphClient, LanggraphRun } from './sdk.js'
import type { RunTracker, TrackedRun } from './tracker.js'

export interface ReconcilerOptions {
  tracker: RunTracker
  client: LanggraphClient
  /** The delivery path, as a webhook goes through it. */
  receive: Receiver['receive']
  log: FastifyBaseLogger
  reconcileEveryMs: number
  /** How often the loop looks for due runs. */
  tickMs: number
}

/** Checks in a row that fail (fetch or delivery) before a run is dropped. */
export const MAX_FAILURES = 5
/** Runs taken per look, and checked at once. */
const BATCH = 100
const CONCURRENCY = 4
const ACTIVE = new Set(['pending', 'running'])

/**
 * The loop that recovers webhooks that never came (or whose handling
 * failed): a tracked run that is due is fetched from the LangGraph server;
 * still pending or running, it is checked again `reconcileEveryMs` later;
 * terminal, it is delivered as its webhook would have been, with
 * `reconciled: true`.
 */
export class Reconciler {
  readonly #options: ReconcilerOptions
  #timer: NodeJS.Timeout | undefined
  #looking: Promise<void> | undefined
  #closed = false

  constructor (options: ReconcilerOptions) {
    this.#options = options
  }

  start (): void {
    if (this.#closed) return
    // The loop alone is no reason to keep the process alive.
    this.#timer = setTimeout(() => {
      this.#looking = this.look().finally(() => {
        this.#looking = undefined
        this.#timer = undefined
        this.start()
      })
    }, this.#options.tickMs).unref()
  }

  /** Checks every run due now. */
  async look (): Promise<void> {
    const { tracker, log } = this.#options
    let due: TrackedRun[]
    try {
      due = await tracker.due(Date.now(), BATCH)
    } catch (error) {
      log.error({ err: error }, 'fastify-langgraph-webhooks: could not read the tracked runs due for reconciliation')
      return
    }
    for (let i = 0; i < due.length; i += CONCURRENCY) {
      await Promise.all(due.slice(i, i + CONCURRENCY).map((run) => this.check(run).catch((error: unknown) => {
        log.error({ err: error, run_id: run.runId }, 'fastify-langgraph-webhooks: the store of tracked runs failed during a reconciliation check; the run is checked again once its lease ends')
      })))
    }
  }

  /** Fetches one tracked run and, once it is terminal, delivers it. */
  async check (tracked: TrackedRun): Promise<void> {
    const { client, tracker, receive, reconcileEveryMs } = this.#options
    const log = this.#options.log.child({ run_id: tracked.runId, thread_id: tracked.threadId })
    let body: RunWebhook<unknown>
    try {
      const run = await client.runs.get(tracked.threadId, tracked.runId)
      if (ACTIVE.has(run.status)) {
        log.debug({ status: run.status }, 'tracked run not finished yet; checked again later')
        await tracker.reschedule({ ...tracked, failures: 0 }, Date.now() + reconcileEveryMs)
        return
      }
      body = await this.#webhookBody(run, tracked)
    } catch (error) {
      return await this.#failed(tracked, error, log, 'could not be fetched from the LangGraph server')
    }
    log.info({ status: body.status }, 'tracked run had no handled delivery: delivering it from the LangGraph server')
    try {
      await receive(body, { reconciled: true })
    } catch (error) {
      // Not a run, or its values failing the valuesSchema: no later check makes it pass.
      if (error instanceof InvalidRunError) return await this.#invalid(tracked, error, log)
      return await this.#failed(tracked, error, log, 'could not be delivered')
    }
    // Refused when its webhook is in flight: checked again in case that fails.
    await tracker.reschedule({ ...tracked, failures: 0 }, Date.now() + reconcileEveryMs)
  }

  /** The body its webhook would have carried, with the thread's state when it has one. */
  async #webhookBody (run: LanggraphRun, tracked: TrackedRun): Promise<RunWebhook<unknown>> {
    // Like the JS server: no values for a stateless run (its thread is gone) nor a cancelled one.
    const withState = !tracked.stateless && run.status !== 'interrupted'
    return webhookBody(run, withState ? await this.#options.client.threads.getState(tracked.threadId) : undefined)
  }

  async #invalid (tracked: TrackedRun, invalid: Error, log: FastifyBaseLogger): Promise<void> {
    log.error({ reason: invalid.message }, 'fastify-langgraph-webhooks: a reconciled run is not a valid run webhook; it is dropped')
    await this.#options.tracker.drop(tracked.runId)
  }

  async #failed (tracked: TrackedRun, error: unknown, log: FastifyBaseLogger, what: string): Promise<void> {
    const failures = tracked.failures + 1
    if (failures >= MAX_FAILURES) {
      log.error({ err: error, failures }, `fastify-langgraph-webhooks: a tracked run ${what}, ${failures} times; it is dropped`)
      return await this.#options.tracker.drop(tracked.runId)
    }
    log.warn({ err: error, failures }, `fastify-langgraph-webhooks: a tracked run ${what}; it is checked again later`)
    await this.#options.tracker.reschedule({ ...tracked, failures }, Date.now() + this.#options.reconcileEveryMs)
  }

  /** Stops the loop; waits for the checks under way. */
  async close (): Promise<void> {
    this.#closed = true
    clearTimeout(this.#timer)
    await this.#looking
  }
}

/** The state a webhook body takes `values` and `error` from. */
export interface ThreadStateLike {
  values: unknown
  tasks?: ReadonlyArray<{ error?: unknown }>
}

/**
 * A webhook body from a fetched run: `values` from the thread's state when
 * they are an object (as the schema wants), `error` for a failed run, and
 * `webhook_sent_at` now.
 */
export function webhookBody (run: LanggraphRun, state: ThreadStateLike | undefined): RunWebhook<unknown> {
  const body: Record<string, unknown> = { ...run, webhook_sent_at: new Date().toISOString() }
  const values = state?.values
  if (values !== null && typeof values === 'object' && !Array.isArray(values)) body.values = values
  if (run.status === 'error') body.error = errorOf(state?.tasks) ?? 'the run failed; the LangGraph server did not say why'
  return body as unknown as RunWebhook<unknown>
}

/** A failed task's error: the JS server stores `{"message", "name"}` as JSON, Python a string. */
export function errorOf (tasks: ReadonlyArray<{ error?: unknown }> | undefined): string | undefined {
  for (const task of tasks ?? []) {
    if (typeof task.error !== 'string' || task.error === '') continue
    try {
      const parsed = JSON.parse(task.error)
      if (typeof parsed?.message === 'string') return parsed.message
    } catch {}
    return task.error
  }
  return undefined
}
