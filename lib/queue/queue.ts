import type { Queue } from 'bullmq'
import type { FastifyBaseLogger } from 'fastify'
import type { Redis } from 'ioredis'
import type { StoreRun } from '../receive.js'
import type { RunListeners } from '../listeners.js'
import type { RunStatus, RunWebhook } from '../schemas.js'
import type { Telemetry } from '../telemetry.js'
import type { ValuesValidator } from '../values-schema.js'
import { AddTimeoutError, QueueUnavailableError } from '../errors.js'
import { jobIdOf, runOf, serializedJobData, type RunJobData } from './job.js'
import type { ResolvedQueue } from '../options.js'
import { DISCONNECTED, loadBullmq, queuePrefix, RedisClients, withTimeout } from '../redis.js'
import { processRunJobs, startRunWorker, type RunWorkerHandle } from './worker.js'

/** A run that exhausted its attempts, as `queue.failed()` lists it. */
export interface FailedRun {
  /** The run as listeners saw it (token masked). */
  run: RunWebhook
  /** How many times the listeners ran. */
  attempts: number
  /** What the listeners threw, on their last attempt. */
  error: string
  failedAt: Date
}

export interface QueueCounts {
  waiting: number
  active: number
  delayed: number
  failed: number
  completed: number
}

/** `app.langgraphWebhooks.queue`: the dead letters and the sizes of the queue's sets. */
export interface RunQueue {
  /** Runs that exhausted their attempts, newest first (`limit` default 100). */
  failed(options?: { offset?: number, limit?: number }): Promise<FailedRun[]>
  /** Queues a failed run again, with its attempts reset; `false` when it is not in the failed set. */
  retry(runId: string, status: RunStatus | (string & {})): Promise<boolean>
  counts(): Promise<QueueCounts>
  /** The BullMQ queue, for its own API or bull-board's `BullMQAdapter` (see docs/operations.md). */
  readonly bullmq: Queue
}

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
    prefix: queuePrefix(connection.client, options.name),
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
    },
    bullmq: queue
  }
  const unobserve = telemetry.observeQueue(options.name, () => admin.counts())

  return {
    store: createQueueStep(queue, connection.client, options.addTimeoutMs, telemetry.carrier, options.waitForReplicas),
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

/**
 * "Store the run, reply 202": adds the run as a job keyed by run id and
 * status, and answers once Redis has it. A run already stored (a sender's
 * retry) is a no-op in Redis and a `duplicate` here. When Redis cannot take
 * it — down, reconnecting, or not answering within `timeoutMs` — the
 * delivery fails with a 503, so the sender retries; a job that still lands
 * after such a timeout makes that retry a duplicate, and is handled once.
 * `carrier` gives the delivery's trace context to store with the job.
 */
export function createQueueStep (
  queue: Queue<RunJobData>,
  client: Redis,
  timeoutMs: number,
  carrier: () => Record<string, string> | undefined,
  replicas = 0
): StoreRun {
  return async function enqueue (run: RunWebhook<unknown>, reconciled: boolean, log: FastifyBaseLogger) {
    if (DISCONNECTED.has(client.status)) {
      log.error({ redis: client.status }, 'the queue cannot store a run webhook: Redis is unreachable')
      throw new QueueUnavailableError()
    }
    const jobId = jobIdOf(run.run_id, run.status)
    // Sent first on the connection that adds the job, so it sees the state
    // just before the add: whether this is a duplicate, in one round-trip.
    const existed = client.exists(queue.toKey(jobId))
    // The delivery's trace context, so that the worker's span links to it.
    const trace = carrier()
    const data: RunJobData = trace === undefined ? { run, reconciled } : { run, reconciled, trace }
    // BullMQ serializes job data with JSON.stringify, before it sends anything:
    // a run nested too deep for it is stored serialized by the plugin instead.
    const added = queue.add(run.status, data, { jobId }).catch((error: unknown) => {
      if (!(error instanceof RangeError)) throw error
      return queue.add(run.status, serializedJobData(data), { jobId })
    }).then(() => replicated(client, queue.toKey(jobId), replicas, Math.ceil(timeoutMs / 2)))
    let found: number
    try {
      [found] = await withTimeout(Promise.all([existed, added]), timeoutMs, () => new AddTimeoutError(`Redis did not store the job within ${timeoutMs} ms (is it reachable?)`))
    } catch (error) {
      log.error({ err: error }, 'the queue failed to store a run webhook')
      throw new QueueUnavailableError({ cause: error })
    }
    if (found === 1) {
      log.info('duplicate run webhook acknowledged: the run is already queued')
      return 'duplicate'
    }
    return 'queued'
  }
}

/**
 * Waits until `replicas` replicas hold what the client's connection wrote
 * (`WAIT`): the job then outlives its master. Pipelined beside a key of the
 * queue, so that on a Redis Cluster it reaches the master that stored the job.
 */
async function replicated (client: Redis, key: string, replicas: number, timeoutMs: number): Promise<void> {
  if (replicas === 0) return
  const [, [error, acknowledged]] = (await client.pipeline().exists(key).wait(replicas, timeoutMs).exec())!
  // A WAIT that failed acknowledges nothing either.
  if (!((acknowledged as number) >= replicas)) throw new Error(`fewer than ${replicas} replicas acknowledged the run within ${timeoutMs} ms`, { cause: error })
}
