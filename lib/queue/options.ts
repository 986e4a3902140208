import { InvalidOptionError } from '../errors.js'
import { ACCEPTED_VALUES_SCHEMAS, valuesSchemaKind } from '../values-schema.js'

/**
 * An ioredis client (`new Redis(url)`), described by what the queue uses of
 * it so that the plugin's types do not need ioredis installed.
 */
export interface RedisClientLike {
  readonly status: string
  duplicate(...args: any[]): RedisClientLike
  defineCommand(...args: any[]): unknown
  quit(...args: any[]): Promise<unknown>
  disconnect(...args: any[]): unknown
}

/** Durable delivery on BullMQ: the route stores each run as a job, workers run the listeners. */
export interface QueueOptions {
  /**
   * The Redis of the queue: an ioredis client (it stays yours: quit it
   * yourself), ioredis options, or a `redis://` URL (the plugin then makes
   * and closes its own clients).
   */
  connection: RedisClientLike | object | string
  /** The BullMQ queue's name; web and worker processes must agree on it. Default `langgraph-webhooks`. */
  name?: string
  /** How many times the listeners are run before the run goes to the failed set. Default 10. */
  attempts?: number
  /** The first retry's delay; each further retry waits twice as long. Default 1000 ms. */
  backoffMs?: number
  /** How many runs this process's worker handles at a time. Default 8. */
  concurrency?: number
  /** Run the listeners in a worker of this process (default), or only enqueue (`false`). */
  worker?: boolean
  /** How long a worker's claim on a run lasts without renewal: a dead worker's runs are taken over after it. Default 30 000 ms. */
  lockMs?: number
  /** The longest the route waits for Redis to store a run before it replies 503. Default 2000 ms. */
  addTimeoutMs?: number
  /** How long handled runs are kept, so that the sender's retries are recognised as duplicates. Default 1 hour. */
  keepCompletedMs?: number
  /** How long runs that exhausted their attempts stay in the failed set. Default 7 days. */
  keepFailedMs?: number
}

/** How the queue reaches Redis: the user's client, or options for clients of our own. */
export type QueueConnectionSpec =
  | { readonly client: RedisClientLike }
  | { readonly options: Record<string, unknown> | string }

export interface ResolvedQueue {
  connection: QueueConnectionSpec
  name: string
  attempts: number
  backoffMs: number
  concurrency: number
  worker: boolean
  lockMs: number
  addTimeoutMs: number
  keepCompletedMs: number
  keepFailedMs: number
}

export const DEFAULT_QUEUE_NAME = 'langgraph-webhooks'
const HOUR = 60 * 60 * 1000
const KEYS = [
  'connection', 'name', 'attempts', 'backoffMs', 'concurrency', 'worker', 'lockMs',
  'addTimeoutMs', 'keepCompletedMs', 'keepFailedMs'
]

function fail (message: string): never {
  throw new InvalidOptionError(message)
}

function positiveInteger (given: Record<string, unknown>, key: string, fallback: number, prefix = 'queue'): number {
  const value = given[key]
  if (value === undefined) return fallback
  if (typeof value === 'string') fail(`${prefix}.${key} must be a number, got the string ${JSON.stringify(value)} (convert it, e.g. Number(process.env.X))`)
  if (!Number.isSafeInteger(value) || (value as number) <= 0) fail(`${prefix}.${key} must be a positive integer, got ${String(value)}`)
  return value as number
}

export function isRedisClient (value: unknown): value is RedisClientLike {
  const client = value as Partial<RedisClientLike> | null
  return typeof client === 'object' && client !== null && typeof client.status === 'string' &&
    typeof client.duplicate === 'function' && typeof client.defineCommand === 'function'
}

/** Resolves the connection given to the queue or to `createRunWorker`. */
export function resolveConnection (connection: unknown, prefix = 'queue'): QueueConnectionSpec {
  const hint = `${prefix}.connection must be an ioredis client (new Redis(process.env.REDIS_URL)), ioredis options ({ host, port }) or a redis:// URL`
  if (typeof connection === 'string') {
    if (!/^rediss?:\/\//.test(connection)) fail(`${hint}, got a string that is not a redis:// URL`)
    return { options: connection }
  }
  if (isRedisClient(connection)) return { client: connection }
  if (connection === null || typeof connection !== 'object' || Array.isArray(connection)) fail(hint)
  const proto = Object.getPrototypeOf(connection)
  if (proto !== Object.prototype && proto !== null) fail(`${hint}; got an object that is neither`)
  // BullMQ keeps its keys apart with its own prefix and refuses ioredis's.
  if ('keyPrefix' in connection) fail(`${prefix}.connection: ioredis keyPrefix is not supported by BullMQ; give each deployment its own queue name instead`)
  return { options: { ...connection } }
}

/**
 * Validates the `queue` option strictly, without touching the caller's
 * object; `others` are the rest of the plugin's options, some of which do
 * not combine with a queue.
 */
export function resolveQueueOptions (queue: unknown, others: Record<string, unknown> = {}): ResolvedQueue | undefined {
  if (queue === undefined) return undefined
  if (others.dedupe !== undefined && others.dedupe !== false) {
    fail('dedupe and queue do not combine: with queue, the job key (run_id and status) already makes a duplicate a no-op; remove dedupe')
  }
  if (others.ack !== undefined) {
    fail('ack does not apply with queue: the route replies 202 once Redis stored the run, and workers run the listeners; remove ack')
  }
  if (others.redactToken === false) {
    fail('redactToken: false does not combine with queue: jobs in Redis (and queue.failed()) must never hold the token')
  }
  if (queue === null || typeof queue !== 'object' || Array.isArray(queue)) {
    fail('queue must be an object: { connection, name?, attempts?, backoffMs?, concurrency?, worker?, lockMs? }')
  }
  const given = queue as Record<string, unknown>
  for (const key of Object.keys(given)) {
    if (!KEYS.includes(key)) fail(`unknown option "queue.${key}"; the queue options are: ${KEYS.join(', ')}`)
  }
  if (given.connection === undefined) fail('queue.connection is required: an ioredis client, ioredis options or a redis:// URL')
  const name = given.name ?? DEFAULT_QUEUE_NAME
  if (typeof name !== 'string' || name.length === 0 || name.includes(':')) {
    fail(`queue.name must be a non-empty string without ":" (BullMQ uses it in its keys), got ${JSON.stringify(name)}`)
  }
  const worker = given.worker ?? true
  if (typeof worker !== 'boolean') fail(`queue.worker must be a boolean, got ${JSON.stringify(worker)}`)
  const addTimeoutMs = positiveInteger(given, 'addTimeoutMs', 2000)
  return {
    connection: resolveConnection(given.connection),
    name,
    attempts: positiveInteger(given, 'attempts', 10),
    backoffMs: positiveInteger(given, 'backoffMs', 1000),
    concurrency: positiveInteger(given, 'concurrency', 8),
    worker,
    lockMs: positiveInteger(given, 'lockMs', 30_000),
    addTimeoutMs,
    keepCompletedMs: positiveInteger(given, 'keepCompletedMs', HOUR),
    keepFailedMs: positiveInteger(given, 'keepFailedMs', 7 * 24 * HOUR)
  }
}

/** The options of `createRunWorker`, validated as strictly. */
export function resolveWorkerOptions (given: unknown): { connection: QueueConnectionSpec, name: string, concurrency: number, lockMs: number } {
  if (given === null || typeof given !== 'object' || Array.isArray(given)) fail('createRunWorker(options): options must be an object with at least { connection }')
  const options = given as Record<string, unknown>
  const keys = ['connection', 'name', 'concurrency', 'lockMs', 'logger', 'valuesSchema', 'onRun']
  for (const key of Object.keys(options)) {
    if (!keys.includes(key)) fail(`unknown option "${key}" of createRunWorker; its options are: ${keys.join(', ')}`)
  }
  const name = options.name ?? DEFAULT_QUEUE_NAME
  if (typeof name !== 'string' || name.length === 0 || name.includes(':')) {
    fail(`createRunWorker: name must be a non-empty string without ":", got ${JSON.stringify(name)}`)
  }
  if (options.valuesSchema !== undefined && valuesSchemaKind(options.valuesSchema) === undefined) {
    fail(`createRunWorker: valuesSchema must be ${ACCEPTED_VALUES_SCHEMAS}`)
  }
  if (options.connection === undefined) fail('createRunWorker: connection is required: an ioredis client, ioredis options or a redis:// URL')
  return {
    connection: resolveConnection(options.connection, 'createRunWorker'),
    name,
    concurrency: positiveInteger(options, 'concurrency', 8, 'createRunWorker'),
    lockMs: positiveInteger(options, 'lockMs', 30_000, 'createRunWorker')
  }
}
