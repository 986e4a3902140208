/**
 * Runs as BullMQ jobs: the route stores each run as a job (`startQueue`),
 * workers run the listeners on it (`startRunWorker`, in this process or in
 * `createRunWorker` processes), and runs that exhaust their attempts are
 * dead letters, listed, replayed and alerted on here.
 */
import type { Job, Queue } from 'bullmq'
import type { Redis } from 'ioredis'
import type { FastifyBaseLogger } from 'fastify'
import { AddTimeoutError, describeError, InvalidArgumentError, QueueNotConfiguredError, QueueUnavailableError } from '../errors.js'
import type { RunContext, RunListeners, Unsubscribe } from '../listeners.js'
import type { ResolvedQueue } from '../options.js'
import type { RunStatus, RunWebhook } from '../schemas.js'
import type { QueuedJobs } from '../runs/redis.js'
import type { Telemetry } from '../telemetry.js'
import { checkValues, type ValuesValidator } from '../values-schema.js'
import { bounded, DISCONNECTED, encodeKeyPart, jobIdOf, loadBullmq, queuePrefix, RedisClients, withTimeout, type Bullmq } from '../redis.js'

/** What a job holds: the run as listeners see it (token masked), never the token. */
export interface RunJobData {
  /** The run; only its top-level scalar fields when `json` holds it. */
  run: RunWebhook<unknown>
  /** The run, serialized by the plugin when it nests too deep for JSON.stringify (which BullMQ uses). */
  json?: string
  reconciled: boolean
  /** The delivery's trace context, for a worker span linked to it (set by telemetry when enabled). */
  trace?: Record<string, string>
}

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

/** Told of a run that just exhausted its attempts; what it throws is logged, never retried. */
export type DeadLetterListener = (failedRun: FailedRun, context: { log: FastifyBaseLogger }) => unknown

export type QueueCounts = Record<'waiting' | 'active' | 'delayed' | 'failed' | 'completed', number>

export interface RetryFailedOptions {
  /** Only the runs of this status. Default: every status. */
  status?: RunStatus | (string & {})
  /** Only the runs that failed at or after this instant (a Date, or epoch milliseconds). Default: all. */
  since?: Date | number
  /** The most runs queued again, oldest failure first. Default 1000. */
  limit?: number
}

/** `app.langgraphWebhooks.queue`: the dead letters and the sizes of the queue's sets. */
export interface RunQueue {
  /** Runs that exhausted their attempts, newest first (`limit` default 100). */
  failed(options?: { offset?: number, limit?: number }): Promise<FailedRun[]>
  /** Queues a failed run again, with its attempts reset; `false` when it is not in the failed set. */
  retry(runId: string, status: RunStatus | (string & {})): Promise<boolean>
  /** Queues again, with their attempts reset, the failed runs that match; resolves with how many. */
  retryFailed(options?: RetryFailedOptions): Promise<number>
  /** Calls `listener` once for each run whose last attempt fails in this process's worker; returns the unsubscribe function. */
  onDeadLetter(listener: DeadLetterListener): Unsubscribe
  counts(): Promise<QueueCounts>
  /** The BullMQ queue, for its own API or bull-board's `BullMQAdapter` (see docs/operations.md). */
  readonly bullmq: Queue
}

const notConfigured = async (): Promise<never> => { throw new QueueNotConfiguredError() }
/** `app.langgraphWebhooks.queue` without the `queue` option: every method says how to set it; a class, so that its `bullmq` getter lives on the prototype and printing the decorator does not throw. */
class NoQueue implements RunQueue {
  failed = notConfigured
  retry = notConfigured
  retryFailed = notConfigured
  counts = notConfigured
  onDeadLetter (): never { throw new QueueNotConfiguredError() }
  get bullmq (): never { throw new QueueNotConfiguredError() }
}
export const NO_QUEUE: RunQueue = new NoQueue()

export async function startQueue (options: ResolvedQueue, listeners: Pick<RunListeners, 'dispatch'>, log: FastifyBaseLogger, telemetry: Telemetry, values?: ValuesValidator) {
  const bullmq = await loadBullmq()
  const clients = await RedisClients.connect(options.connection)
  const { client } = clients
  const jobOptions = {
    attempts: options.attempts,
    backoff: { type: 'exponential', delay: options.backoffMs },
    // Kept so that the sender's retries are duplicates; then removed, so memory in Redis stays bounded.
    removeOnComplete: { age: Math.ceil(options.keepCompletedMs / 1000) },
    removeOnFail: { age: Math.ceil(options.keepFailedMs / 1000) }
  }
  const producer = clients.producer()
  const queue: Queue<RunJobData> = new bullmq.Queue<RunJobData>(options.name, { connection: producer, prefix: queuePrefix(client, options.name), defaultJobOptions: jobOptions })
  queue.on('error', (error) => log.error({ err: error }, 'run webhook queue error'))
  const worker = options.worker ? startRunWorker(bullmq, clients, options, listeners, log, telemetry, Promise.resolve(values)) : undefined

  async function retry (jobId: string): Promise<boolean> {
    // BullMQ checks that the job is in the failed set and moves it in one script.
    const retried = (await queue.getJob(jobId))?.retry('failed', { resetAttemptsMade: true, resetAttemptsStarted: true })
    return retried !== undefined && await retried.then(() => true, (error: { code?: number }) => {
      // BullMQ's codes for a job removed meanwhile, or no longer in the failed set.
      if (error.code === -1 || error.code === -3) return false
      throw error
    })
  }

  /**
   * Whether the job exists already (a duplicate), and BullMQ's add (a no-op
   * then): sent in one write on the producer's connection, the check first;
   * with `waitForReplicas`, a second round-trip waits for the replicas.
   */
  async function add (jobId: string, data: RunJobData): Promise<boolean> {
    const [found] = await Promise.all([
      producer.exists(queue.toKey(jobId)),
      // BullMQ serializes with JSON.stringify before it sends anything: a run nested too deep for it is serialized here instead.
      queue.add(data.run.status, data, { jobId }).catch((error: unknown) => {
        if (!(error instanceof RangeError)) throw error
        return queue.add(data.run.status, serializedJobData(data), { jobId })
      })
    ])
    await replicated(producer, queue.toKey(jobId), options.waitForReplicas, Math.ceil(options.addTimeoutMs / 2))
    return found === 1
  }

  const admin: RunQueue = {
    failed: async ({ offset = 0, limit = 100 } = {}) => (await queue.getFailed(offset, offset + limit - 1)).map(failedRunOf),
    retry: (runId, status) => retry(jobIdOf(runId, status)),
    async retryFailed (filter) {
      const { status, since, limit } = retryFilter(filter)
      // The failed set is scored by the time each job failed.
      const ids = await client.zrangebyscore(queue.toKey('failed'), since, '+inf')
      const suffix = status === undefined ? '' : `.${encodeKeyPart(status)}`
      const retried = await Promise.all(ids.filter((id) => id.endsWith(suffix)).slice(0, limit).map(retry))
      return retried.filter(Boolean).length
    },
    // Without a worker here, no last attempt fails in this process: the listener is checked, never called.
    onDeadLetter: (listener) => worker?.onDeadLetter(listener) ?? onDeadLetter(new Set(), listener),
    counts: async () => await queue.getJobCounts('waiting', 'active', 'delayed', 'failed', 'completed') as QueueCounts,
    bullmq: queue
  }
  const unobserve = telemetry.observeQueue(options.name, () => admin.counts())

  return {
    /**
     * "Store the run, reply 202": adds the run as a job keyed by run id and
     * status, and answers once Redis has it. A run already stored (a sender's
     * retry) is a no-op in Redis and a `duplicate` here. When Redis cannot take
     * it — down, reconnecting, or not answering within `addTimeoutMs` — the
     * delivery fails with a 503, so the sender retries; a job that still lands
     * after such a timeout makes that retry a duplicate, and is handled once.
     */
    async store (run: RunWebhook<unknown>, reconciled: boolean, log: FastifyBaseLogger): Promise<'queued' | 'duplicate'> {
      const jobId = jobIdOf(run.run_id, run.status)
      // The delivery's trace context, so that the worker's span links to it.
      const data: RunJobData = { run, reconciled, trace: telemetry.carrier() }
      // Refused at once while the client is disconnected; otherwise bounded by addTimeoutMs.
      const found = await bounded(producer, options.addTimeoutMs, 'storing the job', () => add(jobId, data), (message) => new AddTimeoutError(message)).catch((error: unknown) => {
        log.error({ err: error }, DISCONNECTED.has(producer.status) ? 'the queue cannot store a run webhook: Redis is unreachable' : 'the queue failed to store a run webhook')
        throw new QueueUnavailableError({ cause: error })
      })
      if (!found) return 'queued'
      log.info('duplicate run webhook acknowledged: the run is already queued')
      return 'duplicate'
    },
    admin,
    /** The queue's client and a key prefix of its own, for what the plugin keeps beside the jobs; `jobs`, for the waiters of every instance. */
    redis: {
      client,
      prefix: `langgraph-webhooks:${options.name}:`,
      timeoutMs: options.addTimeoutMs,
      jobs: {
        eventsKey: queue.toKey('events'),
        async read (jobId) {
          const job = await queue.getJob(jobId)
          return job && { run: runOf(job.data), addedAt: job.timestamp }
        }
      } satisfies QueuedJobs
    },
    /** Starts this process's worker, if any (once listeners had their chance to subscribe). */
    start: () => worker?.start(),
    /** Stops taking jobs, lets running listeners finish (up to lockMs), closes the connections made here. */
    async close () {
      // A closed queue is no longer read at each collection.
      unobserve()
      const closed = await worker?.close() ?? true
      await queue.close()
      await clients.close(closed)
    }
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

/** `retryFailed`'s options, checked: a misspelt one would otherwise retry every dead letter. */
function retryFilter (given: RetryFailedOptions = {}): { status?: string, since: number, limit: number } {
  const invalid = (why: string): never => { throw new InvalidArgumentError(`retryFailed({ status?, since?, limit? }): ${why}`) }
  if (given === null || typeof given !== 'object') invalid('give an object, or nothing')
  const { status, since = 0, limit = 1000, ...rest } = given
  if (Object.keys(rest).length > 0) invalid(`unknown option "${Object.keys(rest)[0]}"`)
  if (status !== undefined && (typeof status !== 'string' || status === '')) invalid('status must be a run status such as "error"')
  const from = since instanceof Date ? since.getTime() : since
  if (typeof from !== 'number' || !Number.isFinite(from)) invalid('since must be a Date or a time in epoch milliseconds')
  if (!Number.isSafeInteger(limit) || limit <= 0) invalid('limit must be a positive integer')
  return { status, since: from, limit }
}

/** The run a job holds, as it was delivered. */
const runOf = (data: RunJobData): RunWebhook<unknown> => data.json === undefined ? data.run : JSON.parse(data.json)

const failedRunOf = (job: Job<RunJobData>): FailedRun => ({ run: runOf(job.data) as RunWebhook, attempts: job.attemptsMade, error: job.failedReason, failedAt: new Date(job.finishedOn!) })

/** Adds a dead-letter listener to `listeners`; one subscription per call, as `onRun`. */
function onDeadLetter (listeners: Set<DeadLetterListener>, listener: DeadLetterListener): Unsubscribe {
  if (typeof listener !== 'function') throw new InvalidArgumentError('onDeadLetter(listener): the listener must be a function')
  const subscription: DeadLetterListener = (failedRun, context) => listener(failedRun, context)
  listeners.add(subscription)
  return () => { listeners.delete(subscription) }
}

// How long closing the worker may take once its listeners are done or given up on.
const CLOSE_MS = 1000

/** Whether `operation` settled within `ms`. */
function settledWithin (operation: Promise<unknown>, ms: number): Promise<boolean> {
  return withTimeout(operation, ms, () => new Error('late')).then(() => true, () => false)
}

/**
 * A BullMQ worker running the listeners on each job: a failure is retried,
 * or ends in the failed set and the dead-letter listeners are told. With a
 * `valuesSchema`, listeners get its output for the values the job holds as
 * sent, as they would without a queue.
 */
export function startRunWorker (bullmq: Bullmq, clients: RedisClients, { name, concurrency, lockMs }: { name: string, concurrency: number, lockMs: number },
  listeners: Pick<RunListeners, 'dispatch'>, log: FastifyBaseLogger, telemetry: Telemetry, values: Promise<ValuesValidator | undefined>) {
  const deadLetters = new Set<DeadLetterListener>()
  // The work in progress here (listeners, dead-letter listeners), so that close() can wait for it for a bounded time.
  const active = new Set<Promise<void>>()
  const track = (work: Promise<void>): Promise<void> => {
    const settled: Promise<void> = work.then(() => { active.delete(settled) }, () => { active.delete(settled) })
    active.add(settled)
    return work
  }
  const dispatch = telemetry.timed(listeners)
  // With an OpenTelemetry SDK registered, each run is a span linked to its delivery's, its listeners timed.
  const processRun = telemetry.processing(async (job: Job<RunJobData>) => {
    const run = runOf(job.data)
    // From 1; a run taken over after a crash counts as an attempt too.
    const attempt = Math.max(1, job.attemptsStarted)
    // The bound logger is made on first use, as most listeners never log.
    let child: FastifyBaseLogger | undefined
    const context: RunContext = { attempt, reconciled: job.data.reconciled, get log () { return (child ??= log.child({ run_id: run.run_id, thread_id: run.thread_id, status: run.status, attempt })) } }
    const checked = await applyValues(run, await values, context)
    try {
      await dispatch.dispatch(checked, context)
    } catch (error) {
      // A job added without `attempts` (by another producer) has one attempt.
      const last = !(job.attemptsMade + 1 < (job.opts.attempts as number))
      context.log.error({ err: error }, last
        ? 'run webhook listeners failed for the last time: the run is in the failed set (queue.failed(), queue.retry())'
        : 'run webhook listeners failed: the run will be retried')
      throw describeFailure(error as AggregateError)
    }
  })
  const worker = new bullmq.Worker<RunJobData>(name, (job) => track(processRun(job)), {
    connection: clients.workerTemplate(),
    prefix: queuePrefix(clients.client, name),
    concurrency,
    lockDuration: lockMs,
    // A dead worker's runs are looked for as often as a claim lasts: taken over between lockMs and twice that after it died.
    stalledInterval: lockMs,
    // A run taken over from dead workers more than 3 times (it likely kills them) goes to the failed set.
    maxStalledCount: 3,
    // How long the worker waits before fetching again after losing Redis: also how long a close may leave it waiting.
    runRetryDelay: 1000,
    autorun: false
  })
  worker.on('error', (error) => log.error({ err: error }, 'run webhook queue worker error'))
  worker.on('failed', (job) => {
    // Finished only once it exhausted its attempts: a failure to be retried is delayed instead.
    if (job!.finishedOn === undefined) return
    const failedRun = failedRunOf(job!)
    const { run_id: runId, thread_id: threadId, status } = failedRun.run
    telemetry.deadLetter(name, status)
    const context = { log: log.child({ run_id: runId, thread_id: threadId, status }) }
    const failed = (error: unknown): void => { context.log.error({ err: describeError(error) }, 'a dead-letter listener failed (it is not called again for this run)') }
    // Each listener once, whatever it throws or returns.
    for (const listener of deadLetters) track((async () => { await listener(failedRun, context) })().catch(failed))
  })
  let running: Promise<void> | undefined

  return {
    worker,
    onDeadLetter: (listener: DeadLetterListener) => onDeadLetter(deadLetters, listener),
    start: () => { running = worker.run().catch((error: unknown) => log.error({ err: error }, 'run webhook queue worker stopped')) },
    /** Lets running listeners finish for up to `lockMs`, then closes; false when Redis did not let it close within a second (drop its clients). */
    async close () {
      // Take no new runs; the running ones keep their claims renewed meanwhile.
      await worker.pause(true)
      const late = !(await settledWithin(drained(active), lockMs))
      // Claims no longer renewed expire: another worker takes these runs over.
      if (late) log.warn({ lockMs, running: active.size }, 'run webhook listeners still running at shutdown are left to other workers')
      // Closing gracefully waits for Redis to record the last runs: only with Redis there, and not forever.
      const closed = await settledWithin(late || !clients.workersConnected() ? worker.close(true) : worker.close().then(() => running), CLOSE_MS)
      if (!closed) log.warn({ closeMs: CLOSE_MS }, 'Redis did not answer while the run webhook worker closed: its connections are dropped')
      return closed
    }
  }
}

/** The listeners' errors in one, for BullMQ's failed set: what each threw, not only how many failed. */
function describeFailure ({ message, errors }: AggregateError): Error {
  const described = new Error(`${message}: ${errors.map((error: Error) => error.message).join('; ')}`)
  return Object.assign(described, { stack: `${described.message}\n${errors.map((error: Error) => error.stack).join('\n')}` })
}

/** The run with the schema's output as its values; values that do not match fail the attempt (another worker may have the matching schema during a deploy). */
async function applyValues (run: RunWebhook<unknown>, validate: ValuesValidator | undefined, context: RunContext): Promise<RunWebhook<unknown>> {
  if (validate === undefined || run.values == null) return run
  try {
    return { ...run, values: await checkValues(validate, run.values) }
  } catch (error) {
    const failure = new Error(`run.values do not match the valuesSchema of this worker: ${(error as Error).message}`, { cause: error })
    context.log.error({ err: failure }, 'run webhook values do not match the valuesSchema of this worker: the listeners were not run')
    throw failure
  }
}

/** Settles once no work is in progress here. */
async function drained (active: Set<Promise<void>>): Promise<void> {
  while (active.size > 0) await Promise.all(active)
}

/** The job data of a run too deep for JSON.stringify: the run serialized without recursion, beside its scalar fields (for telemetry and logs). */
function serializedJobData (data: RunJobData): RunJobData {
  const scalars = Object.fromEntries(Object.entries(data.run).filter(([, value]) => value === null || typeof value !== 'object'))
  return { ...data, run: scalars as RunWebhook<unknown>, json: stringifyIteratively(data.run) }
}

/** JSON.stringify for JSON data (what JSON.parse gives) of any depth: a stack of what is left to write instead of recursion. */
export function stringifyIteratively (root: unknown): string {
  let out = ''
  // Last first: text to write as is (separators, keys, closing brackets), and values in a box.
  const pending: Array<string | [unknown]> = [[root]]
  while (pending.length > 0) {
    const item = pending.pop()!
    if (typeof item === 'string') out += item
    else if (item[0] === null || typeof item[0] !== 'object') out += JSON.stringify(item[0]) ?? 'null'
    else {
      const array = Array.isArray(item[0])
      // Entries JSON.stringify skips in an object; in an array it writes them as null.
      const entries = Object.entries(item[0]).filter(([, value]) => array || (value !== undefined && typeof value !== 'function'))
      out += array ? '[' : '{'
      pending.push(array ? ']' : '}')
      for (let i = entries.length - 1; i >= 0; i--) pending.push([entries[i][1]], `${i > 0 ? ',' : ''}${array ? '' : `${JSON.stringify(entries[i][0])}:`}`)
    }
  }
  return out
}
