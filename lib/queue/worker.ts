import type { Job, Worker } from 'bullmq'
import type { FastifyBaseLogger } from 'fastify'
import type { Redis } from 'ioredis'
import type { RunContext, RunListeners } from '../listeners.js'
import type { RunWebhook } from '../schemas.js'
import { describeFailure, runOf, type RunJobData } from './job.js'
import type { Bullmq } from '../redis.js'

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

/** Runs a job's run through the listeners; a failure is retried by BullMQ, or ends in the failed set. */
export function processRunJobs (listeners: Pick<RunListeners, 'receive'>, log: FastifyBaseLogger): RunJobProcessor {
  return async function processRun (job) {
    const context = new JobContext(job, log)
    try {
      await listeners.receive(runOf(job.data), context)
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

export interface RunWorkerSetup {
  bullmq: Bullmq
  /** A client for BullMQ to duplicate (see QueueConnection.workerTemplate). */
  connection: Redis
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
  /** Stops taking jobs and lets running listeners finish, for up to `lockMs`. */
  close(): Promise<void>
}

// A run taken over from dead workers more than this many times (it likely
// kills them) goes to the failed set instead of taking workers down one after another.
const MAX_STALLED = 3

function noop (): void {}

export function startRunWorker ({ bullmq, connection, name, concurrency, lockMs, processor, log }: RunWorkerSetup): RunWorkerHandle {
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
    concurrency,
    lockDuration: lockMs,
    // A dead worker's runs are looked for as often as a claim lasts: taken
    // over between lockMs and twice that after the worker died.
    stalledInterval: lockMs,
    maxStalledCount: MAX_STALLED,
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
      let timer: NodeJS.Timeout | undefined
      const finished = (async () => { while (active.size > 0) await Promise.all(active) })()
      const late = new Promise<'late'>((resolve) => { timer = setTimeout(resolve, lockMs, 'late') })
      const outcome = await Promise.race([finished, late])
      clearTimeout(timer)
      if (outcome === 'late') {
        // Claims no longer renewed expire: another worker takes these runs over.
        log.warn({ lockMs, running: active.size }, 'run webhook listeners still running at shutdown are left to other workers')
        await worker.close(true)
        return
      }
      await worker.close()
      await running
    }
  }
}
