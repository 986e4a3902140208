import type { Queue } from 'bullmq'
import type { FastifyBaseLogger } from 'fastify'
import type { Redis } from 'ioredis'
import type { StoreRun } from '../receive.js'
import type { RunListeners } from '../listeners.js'
import type { RunWebhook } from '../schemas.js'
import type { Telemetry } from '../telemetry.js'
import type { ValuesValidator } from '../values-schema.js'
import { jobIdOf, runOf, type RunJobData } from './job.js'
import type { ResolvedQueue } from '../options.js'
import { loadBullmq, RedisClients } from '../redis.js'
import type { RunQueue } from './types.js'
import { createQueueStep } from './step.js'
import { processRunJobs, startRunWorker, type RunWorkerHandle } from './worker.js'

export interface StartedQueue {
  /** Stores a run as a job (the route then replies 202). */
  store: StoreRun
  admin: RunQueue
  /**
   * The queue's client, with a key prefix of this queue's own, for what the
   * plugin keeps beside the jobs (tracked runs, waiters' relay); `storedRun`
   * reads the run of a job, for waiters on other instances.
   */
  readonly redis: { client: Redis, prefix: string, timeoutMs: number, storedRun(jobId: string): Promise<RunWebhook<unknown> | undefined> }
  /** Starts this process's worker, if any (once listeners had their chance to subscribe). */
  start(): void
  /** Stops taking jobs, lets running listeners finish (up to lockMs), closes the connections made here. */
  close(): Promise<void>
}

/** What the queue asks of telemetry: the trace context for a job, the worker's span, the gauges. */
export type QueueTelemetry = Pick<Telemetry, 'carrier' | 'processing' | 'observeQueue' | 'timed'>

export async function startQueue (
  options: ResolvedQueue,
  listeners: Pick<RunListeners, 'dispatch'>,
  log: FastifyBaseLogger,
  telemetry: QueueTelemetry,
  values?: ValuesValidator
): Promise<StartedQueue> {
  const bullmq = await loadBullmq()
  const connection = await RedisClients.connect(options.connection)
  const queue: Queue<RunJobData> = new bullmq.Queue<RunJobData>(options.name, {
    connection: connection.client,
    defaultJobOptions: {
      attempts: options.attempts,
      backoff: { type: 'exponential', delay: options.backoffMs },
      // Kept so that the sender's retries are duplicates; then removed, so memory in Redis stays bounded.
      removeOnComplete: { age: Math.ceil(options.keepCompletedMs / 1000) },
      removeOnFail: { age: Math.ceil(options.keepFailedMs / 1000) }
    }
  })
  queue.on('error', (error) => log.error({ err: error }, 'run webhook queue error'))

  let worker: RunWorkerHandle | undefined
  if (options.worker) {
    worker = startRunWorker({
      bullmq,
      connection: connection.workerTemplate(),
      connected: () => connection.workersConnected(),
      name: options.name,
      concurrency: options.concurrency,
      lockMs: options.lockMs,
      // The jobs hold the values as sent (JSON): the worker applies the valuesSchema to them.
      processor: telemetry.processing(processRunJobs(telemetry.timed(listeners), log, async () => values)),
      log
    })
  }

  const admin: RunQueue = {
    async failed ({ offset = 0, limit = 100 } = {}) {
      const jobs = await queue.getFailed(offset, offset + limit - 1)
      return jobs.map((job) => ({
        run: runOf(job.data) as RunWebhook,
        attempts: job.attemptsMade,
        error: job.failedReason,
        failedAt: new Date(job.finishedOn!)
      }))
    },
    async retry (runId, status) {
      const job = await queue.getJob(jobIdOf(runId, status))
      if (job === undefined || !(await job.isFailed())) return false
      await job.retry('failed', { resetAttemptsMade: true, resetAttemptsStarted: true })
      return true
    },
    async counts () {
      const { waiting, active, delayed, failed, completed } = await queue.getJobCounts('waiting', 'active', 'delayed', 'failed', 'completed')
      return { waiting, active, delayed, failed, completed }
    }
  }
  const unobserve = telemetry.observeQueue(options.name, () => admin.counts())

  return {
    store: createQueueStep(queue, connection.client, options.addTimeoutMs, telemetry.carrier),
    admin,
    redis: {
      client: connection.client,
      prefix: `langgraph-webhooks:${options.name}:`,
      timeoutMs: options.addTimeoutMs,
      async storedRun (jobId) {
        const job = await queue.getJob(jobId)
        return job === undefined ? undefined : runOf(job.data)
      }
    },
    start () {
      worker?.start()
    },
    async close () {
      // A closed queue is no longer read at each collection.
      unobserve()
      const closed = await worker?.close() ?? true
      await queue.close()
      await connection.close(closed)
    }
  }
}
