import type { FastifyBaseLogger } from 'fastify'
import { InvalidArgumentError, LanggraphNotConfiguredError } from '../errors.js'
import type { ResolvedOptions } from '../options.js'
import type { RunWebhook } from '../schemas.js'
import type { Receiver, RunTracking } from '../receive.js'
import { startReconciler, type LanggraphRun, type LanggraphStreamChunk, type RunPayload } from './reconcile.js'
import { createJobRelay, createRedisRelay, createRedisRunTracker, type RelayConnection } from './redis.js'
import { createMemoryRunTracker, type TrackedRun } from './tracker.js'
import { RunWaiters, type WaitForRunOptions } from './waiters.js'

/** `app.langgraphWebhooks.runs`: runs started with the webhook set, and tracked until a delivery of them is handled. */
export interface LanggraphRuns {
  /** `client.runs.create` with `webhook` set; `threadId` null for a stateless run. */
  create (threadId: string | null, assistantId: string, payload?: RunPayload): Promise<LanggraphRun>
  /** `client.runs.stream` with `webhook` set, yielding the SDK's chunks; a thread run is tracked from its metadata event. */
  stream (threadId: string | null, assistantId: string, payload?: RunPayload): AsyncGenerator<LanggraphStreamChunk, void, undefined>
  /** `client.runs.createBatch` with `webhook` set in every payload: stateless runs, each tracked. */
  createBatch (payloads: Array<RunPayload & { assistantId: string }>): Promise<LanggraphRun[]>
}

/** Everything of the runs the application starts and waits for, tracked in Redis when the plugin has a connection. */
// `connection` is the plugin's Redis (the queue's, or its own), typed loosely so that the declarations need no ioredis.
export async function createRuns (options: ResolvedOptions, log: FastifyBaseLogger, connection?: object) {
  const redis = connection as RelayConnection | undefined
  const langgraph = options.langgraph
  if (redis === undefined && langgraph !== undefined && options.dedupe?.inMemory === false) {
    log.info('fastify-langgraph-webhooks: started runs are tracked in this process only (the dedupe store tells no Redis): give the redis option to track them, and resolve waitForRun, across instances')
  }
  const waiters = new RunWaiters()
  if (redis !== undefined) waiters.relayTo(await (redis.jobs === undefined ? createRedisRelay(redis, waiters, log) : createJobRelay({ ...redis, jobs: redis.jobs }, waiters, log)))
  // A check or delivery holds a run for as long as its listeners may take, and some.
  const limits = { leaseMs: options.listenerTimeoutMs + 30_000 }
  const dropped = (run: TrackedRun): void => log.warn({ run_id: run.runId }, 'fastify-langgraph-webhooks: too many tracked runs, or tracked too long; the oldest is no longer reconciled')
  const tracker = langgraph === undefined ? undefined : redis !== undefined ? createRedisRunTracker(redis, limits) : createMemoryRunTracker(limits, dropped)
  let stop: (() => Promise<void>) | undefined

  async function track (runId: string, threadId: string, stateless: boolean): Promise<void> {
    const now = Date.now()
    // The run is started and its webhook set: only its reconciliation is lost.
    await tracker!.track({ runId, threadId, stateless, createdAt: now, failures: 0 }, now + langgraph!.reconcileAfterMs).catch((error: unknown) => {
      log.error({ err: error, run_id: runId }, 'fastify-langgraph-webhooks: could not track a started run; it is not reconciled if its webhook never comes')
    })
  }

  function configured (what: string): NonNullable<typeof langgraph> {
    if (langgraph === undefined) throw new LanggraphNotConfiguredError(what)
    return langgraph
  }

  function withWebhook (what: string, payload: RunPayload | undefined): Record<string, unknown> {
    if (payload !== undefined && (payload === null || typeof payload !== 'object')) throw new InvalidArgumentError(`${what}: payload must be an object`)
    if (payload?.webhook !== undefined) throw new InvalidArgumentError(`${what}: payload.webhook is set by the plugin (app.langgraphWebhooks.webhookUrl); leave it out`)
    return { ...payload, webhook: configured(what).webhookUrl }
  }

  const runs: LanggraphRuns = {
    async create (threadId, assistantId, payload) {
      const run = await configured('runs.create').client.runs.create(threadId, assistantId, withWebhook('runs.create', payload))
      await track(run.run_id, run.thread_id, threadId === null)
      return run
    },
    async * stream (threadId, assistantId, payload) {
      const { client } = configured('runs.stream')
      // A stateless stream does not say which temporary thread runs it: nothing to fetch later.
      let tracked = threadId === null
      for await (const chunk of client.runs.stream(threadId, assistantId, withWebhook('runs.stream', payload))) {
        if (!tracked && chunk.event === 'metadata' && typeof chunk.data?.run_id === 'string') {
          tracked = true
          await track(chunk.data.run_id, threadId!, false)
        }
        yield chunk
      }
    },
    async createBatch (payloads) {
      const { client } = configured('runs.createBatch')
      if (!Array.isArray(payloads)) throw new InvalidArgumentError('runs.createBatch: payloads must be an array')
      const started = await client.runs.createBatch!(payloads.map((payload) => withWebhook('runs.createBatch', payload)))
      await Promise.all(started.map((run) => track(run.run_id, run.thread_id, true)))
      return started
    }
  }

  return {
    /** What `receive` asks of tracking: one path per run, and the waiters. */
    tracking: {
      claim: (runId, reconciled, owner) => tracker?.claim(runId, reconciled ? 'reconcile' : 'webhook', owner),
      async settle (runId, reconciled, owner, handled) {
        const path = reconciled ? 'reconcile' : 'webhook'
        // release: the claim expires by itself. handled: the listeners did run; a later reconciliation finds the run handled by dedupe.
        await (handled ? tracker!.handled(runId, path) : tracker!.release(runId, path, owner)).catch((error: unknown) => {
          log.error({ err: error, run_id: runId }, `the store of tracked runs failed to ${handled ? 'mark a run handled' : 'release a run'}`)
        })
      },
      arrived: (run, bytes) => waiters.arrived(run, bytes)
    } satisfies RunTracking,
    /** Starts the reconciliation loop, which delivers through `receive` as a webhook would. */
    start (receive: Receiver['receive']): void {
      if (tracker !== undefined) stop = startReconciler(tracker, langgraph!, receive, log)
    },
    waitForRun: (runId: string, waitOptions?: WaitForRunOptions): Promise<RunWebhook<any>> => waiters.wait(runId, waitOptions),
    runs,
    /** The webhook URL with its token. */
    webhookUrl: (): string => configured('webhookUrl').webhookUrl,
    /** Stops the loop (before the server stops answering). */
    stop: async (): Promise<void> => { await stop?.() },
    /** Rejects the waiters left and closes the connections of its own. */
    close: (): Promise<void> => waiters.close()
  }
}
