import type { FastifyBaseLogger } from 'fastify'
import { InvalidRunError } from '../errors.js'
import type { RunWebhook } from '../schemas.js'
import type { RunTracker, TrackedRun } from './tracker.js'

// The parts of @langchain/langgraph-sdk's `Client` the plugin calls, declared
// structurally: the SDK is an optional peer, and a TypeScript user without it
// must still compile against these declarations. Its `Client` fits them.

/** A run as `client.runs.create` and `client.runs.get` return it (the SDK's `Run`). */
export interface LanggraphRun {
  run_id: string
  thread_id: string
  assistant_id: string
  created_at: string
  updated_at: string
  status: string
  metadata?: Record<string, unknown> | null
  multitask_strategy?: string | null
}

/** A chunk of `client.runs.stream`; the first is `{ event: 'metadata', data: { run_id } }`. */
export interface LanggraphStreamChunk { id?: string, event: string, data: any }

/** The SDK's `RunsCreatePayload` / `RunsStreamPayload` (input, config, metadata, ...) without `webhook`, which the plugin sets. */
export type RunPayload = Record<string, unknown> & { webhook?: never }

/** The state a webhook body takes `values` and `error` from. */
export interface ThreadState { values: unknown, tasks?: ReadonlyArray<{ error?: unknown }> }

/** The SDK's `Client`, as far as the plugin uses it. */
export interface LanggraphClient {
  runs: {
    create (threadId: string | null, assistantId: string, payload?: any): Promise<LanggraphRun>
    stream (threadId: any, assistantId: string, payload?: any): AsyncIterable<LanggraphStreamChunk>
    get (threadId: string, runId: string, options?: any): Promise<LanggraphRun>
    /** Optional: clients declared before `runs.createBatch` was wrapped still fit. */
    createBatch? (payloads: any[], options?: any): Promise<LanggraphRun[]>
  }
  threads: { getState (threadId: string, checkpoint?: any, options?: any): Promise<ThreadState> }
}

/** The delivery path, as a webhook goes through it. */
type Receive = (body: RunWebhook<unknown>, source: { reconciled: true }) => Promise<unknown>
/** The `langgraph` option, resolved. */
interface Langgraph { client: LanggraphClient, reconcileAfterMs: number, reconcileEveryMs: number }

/** Checks in a row that fail (fetch or delivery) before a run is dropped. */
export const MAX_FAILURES = 5
/** Runs taken per look, and checked at once. */
const BATCH = 100
const CONCURRENCY = 4
const ACTIVE = new Set(['pending', 'running'])

/**
 * Starts the loop that recovers webhooks that never came (or whose handling
 * failed): a due tracked run is fetched from the LangGraph server; still
 * pending or running, it is checked again `reconcileEveryMs` later; terminal,
 * it is delivered as its webhook would have been, with `reconciled: true`.
 * Due runs are found within half a period of being due. Returns `stop`,
 * which waits for the checks under way.
 */
export function startReconciler (tracker: RunTracker, { client, reconcileAfterMs, reconcileEveryMs }: Langgraph, receive: Receive, log: FastifyBaseLogger): () => Promise<void> {
  const tickMs = Math.max(10, Math.round(Math.min(reconcileAfterMs, reconcileEveryMs) / 2))
  let looking: Promise<void> | undefined
  const later = (run: TrackedRun, failures = 0): Promise<void> => tracker.reschedule({ ...run, failures }, Date.now() + reconcileEveryMs)

  async function failed (run: TrackedRun, error: unknown, runLog: FastifyBaseLogger, what: string): Promise<void> {
    const failures = run.failures + 1
    if (failures < MAX_FAILURES) {
      runLog.warn({ err: error, failures }, `fastify-langgraph-webhooks: a tracked run ${what}; it is checked again later`)
      return await later(run, failures)
    }
    runLog.error({ err: error, failures }, `fastify-langgraph-webhooks: a tracked run ${what}, ${failures} times; it is dropped`)
    await tracker.drop(run.runId)
  }

  async function check (tracked: TrackedRun): Promise<void> {
    const runLog = log.child({ run_id: tracked.runId, thread_id: tracked.threadId })
    let body: RunWebhook<unknown>
    try {
      const run = await client.runs.get(tracked.threadId, tracked.runId)
      if (ACTIVE.has(run.status)) {
        runLog.debug({ status: run.status }, 'tracked run not finished yet; checked again later')
        return await later(tracked)
      }
      // Like the JS server: no values for a stateless run (its thread is gone) nor a cancelled one.
      const withState = !tracked.stateless && run.status !== 'interrupted'
      body = webhookBody(run, withState ? await client.threads.getState(tracked.threadId) : undefined)
    } catch (error) {
      return await failed(tracked, error, runLog, 'could not be fetched from the LangGraph server')
    }
    runLog.info({ status: body.status }, 'tracked run had no handled delivery: delivering it from the LangGraph server')
    try {
      await receive(body, { reconciled: true })
    } catch (error) {
      if (!(error instanceof InvalidRunError)) return await failed(tracked, error, runLog, 'could not be delivered')
      // Not a run, or its values failing the valuesSchema: no later check makes it pass.
      runLog.error({ reason: error.message }, 'fastify-langgraph-webhooks: a reconciled run is not a valid run webhook; it is dropped')
      return await tracker.drop(tracked.runId)
    }
    // Refused when its webhook is in flight: checked again in case that fails.
    await later(tracked)
  }

  async function look (): Promise<void> {
    const due = await tracker.due(Date.now(), BATCH).catch((error: unknown) => {
      log.error({ err: error }, 'fastify-langgraph-webhooks: could not read the tracked runs due for reconciliation')
      return []
    })
    for (let i = 0; i < due.length; i += CONCURRENCY) {
      await Promise.all(due.slice(i, i + CONCURRENCY).map((run) => check(run).catch((error: unknown) => {
        log.error({ err: error, run_id: run.runId }, 'fastify-langgraph-webhooks: the store of tracked runs failed during a reconciliation check; the run is checked again once its lease ends')
      })))
    }
  }

  // One look at a time; the loop alone is no reason to keep the process alive.
  const timer = setInterval(() => { looking ??= look().finally(() => { looking = undefined }) }, tickMs).unref()
  return async () => {
    clearInterval(timer)
    await looking
  }
}

/**
 * A webhook body from a fetched run: `values` from the thread's state when
 * they are an object (as the schema wants), `error` for a failed run, and
 * `webhook_sent_at` now.
 */
export function webhookBody (run: LanggraphRun, state: ThreadState | undefined): RunWebhook<unknown> {
  const body: Record<string, unknown> = { ...run, webhook_sent_at: new Date().toISOString() }
  const values = state?.values
  if (values !== null && typeof values === 'object' && !Array.isArray(values)) body.values = values
  if (run.status === 'error') body.error = errorOf(state?.tasks) ?? 'the run failed; the LangGraph server did not say why'
  return body as unknown as RunWebhook<unknown>
}

/** A failed task's error: the JS server stores `{"message", "name"}` as JSON, Python a string. */
export function errorOf (tasks: ThreadState['tasks']): string | undefined {
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
