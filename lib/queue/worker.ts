import type { Job, Worker } from 'bullmq'
import type { FastifyBaseLogger } from 'fastify'
import type { Redis } from 'ioredis'
import type { RunContext, RunListeners } from '../listeners.js'
import type { RunWebhook } from '../schemas.js'
import { checkValues, type ValuesValidator } from '../values-schema.js'
import { describeFailure, runOf, type RunJobData } from './job.js'
import { queuePrefix, type Bullmq } from '../redis.js'

/** Handles one job; telemetry wraps it (`job.data.trace` carries the delivery's context). */
export type RunJobProcessor = (job: Job<RunJobData>) => Promise<void>

/** A listener's context in a worker: no request; the attempt, from 1, counts runs taken over after a crash too. */
class JobContext implements RunContext {
  readonly request = undefined
  readonly attempt: number
  readonly reconciled: boolean
  readonly #run: RunWebhook<unknown>
  readonly #parent: FastifyBaseLogger
  #log: FastifyBaseLogger | undefined

  constructor (job: Job<RunJobData>, parent: FastifyBaseLogger) {
    this.#run = runOf(job.data)
    this.reconciled = job.data.reconciled
    this.attempt = Math.max(1, job.attemptsStarted)
    this.#parent = parent
  }

  get log (): FastifyBaseLogger {
    const run = this.#run
    this.#log ??= this.#parent.child({ run_id: run.run_id, thread_id: run.thread_id, status: run.status, attempt: this.attempt })
    return this.#log
  }
}

/**
 * Runs a job's run through the listeners; a failure is retried by BullMQ, or
 * ends in the failed set. With a `valuesSchema`, the listeners get its output
 * for the values the job holds as sent, as they would without a queue.
 */
export function processRunJobs (listeners: Pick<RunListeners, 'dispatch'>, log: FastifyBaseLogger, values: () => Promise<ValuesValidator | undefined>): RunJobProcessor {
  return async function processRun (job) {
    const context = new JobContext(job, log)
    const run = await applyValues(runOf(job.data), await values(), context)
    try {
      await listeners.dispatch(run, context)
    } catch (error) {
      // A job added without `attempts` (by another producer) has one attempt.
      const last = !(job.attemptsMade + 1 < (job.opts.attempts as number))
      context.log.error({ err: error }, last
        ? 'run webhook listeners failed for the last time: the run is in the failed set (queue.failed(), queue.retry())'
        : 'run webhook listeners failed: the run will be retried')
      throw describeFailure(error as AggregateError)
    }
  }
}

/**
 * The run with the schema's output as its values. Values that do not match
 * (this worker's schema is not the web process's) fail the attempt, and are
 * retried as a listener's failure is: during a deploy, another worker may
 * have the schema that matches.
 */
async function applyValues (run: RunWebhook<unknown>, validate: ValuesValidator | undefined, context: JobContext): Promise<RunWebhook<unknown>> {
  if (validate === undefined || run.values == null) return run
  try {
    return { ...run, values: await checkValues(validate, run.values) }
  } catch (error) {
    const failure = new Error(`run.values do not match the valuesSchema of this worker: ${(error as Error).message}`, { cause: error })
    context.log.error({ err: failure }, 'run webhook values do not match the valuesSchema of this worker: the listeners were not run')
    throw failure
  }
}

export interface RunWorkerSetup {
  bullmq: Bullmq
  /** A client for BullMQ to duplicate (see QueueConnection.workerTemplate). */
  connection: Redis
  /** Whether the worker's own clients are connected to Redis. */
  connected: () => boolean
  name: string
  concurrency: number
  lockMs: number
  processor: RunJobProcessor
  log: FastifyBaseLogger
}

export interface RunWorkerHandle {
  readonly worker: Worker<RunJobData>
  /** Starts taking jobs. */
  start(): void
  /**
   * Stops taking jobs and lets running listeners finish, for up to `lockMs`,
   * then closes the worker's connections; false when Redis did not let it
   * close within a second (its clients are then to be dropped, not quit).
   */
  close(): Promise<boolean>
}

// A run taken over from dead workers more than this many times (it likely
// kills them) goes to the failed set instead of taking workers down one after another.
const MAX_STALLED = 3

// How long closing the worker may take once its listeners are done or given up on.
const CLOSE_MS = 1000

// How long the worker waits before fetching again after losing Redis: also how long a close may leave it waiting.
const RETRY_MS = 1000

function noop (): void {}

export function startRunWorker ({ bullmq, connection, connected, name, concurrency, lockMs, processor, log }: RunWorkerSetup): RunWorkerHandle {
  // The runs in progress here, so that close() can wait for them for a bounded time.
  const active = new Set<Promise<void>>()
  const tracked: RunJobProcessor = (job) => {
    const processing = processor(job)
    const settled = processing.then(noop, noop)
    active.add(settled)
    settled.then(() => active.delete(settled), noop)
    return processing
  }
  const worker = new bullmq.Worker<RunJobData>(name, tracked, {
    connection,
    prefix: queuePrefix(connection, name),
    concurrency,
    lockDuration: lockMs,
    // A dead worker's runs are looked for as often as a claim lasts: taken
    // over between lockMs and twice that after the worker died.
    stalledInterval: lockMs,
    maxStalledCount: MAX_STALLED,
    runRetryDelay: RETRY_MS,
    autorun: false
  })
  worker.on('error', (error) => log.error({ err: error }, 'run webhook queue worker error'))
  let running: Promise<void> | undefined

  return {
    worker,
    start () {
      running = worker.run().catch((error: unknown) => log.error({ err: error }, 'run webhook queue worker stopped'))
    },
    async close () {
      // Take no new runs; the running ones keep their claims renewed meanwhile.
      await worker.pause(true)
      const late = !(await settledWithin(drained(active), lockMs))
      if (late) {
        // Claims no longer renewed expire: another worker takes these runs over.
        log.warn({ lockMs, running: active.size }, 'run webhook listeners still running at shutdown are left to other workers')
      }
      // Closing gracefully waits for Redis to record the last runs: only with Redis there, and not forever.
      const closing = late || !connected() ? worker.close(true) : worker.close().then(() => running)
      const closed = await settledWithin(closing, CLOSE_MS)
      if (!closed) log.warn({ closeMs: CLOSE_MS }, 'Redis did not answer while the run webhook worker closed: its connections are dropped')
      return closed
    }
  }
}

/** Settles once no run is in progress here. */
async function drained (active: Set<Promise<void>>): Promise<void> {
  while (active.size > 0) await Promise.all(active)
}

/** Whether `operation` settled within `ms`; the timer does not outlive it. */
async function settledWithin (operation: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<boolean>((resolve) => { timer = setTimeout(resolve, ms, false) })
  const settled = await Promise.race([operation.then(() => true), late])
  clearTimeout(timer)
  return settled
}
