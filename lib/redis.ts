/**
 * Redis, in one place: the clients, the bounded command, the key layout.
 *
 * Every key starts with a prefix (default `langgraph-webhooks:`; with the
 * queue, `langgraph-webhooks:<queue name>:` for what sits beside the jobs),
 * then a namespace per feature, hash-tagged so that each feature's keys
 * share one Redis Cluster slot:
 *
 * - `<prefix>{dedupe}:<run_id>:<status>`: a delivery's lease or its `done` mark.
 * - `<prefix>{runs}:run:<run_id>`, `{runs}:due`, `{runs}:claim:<run_id>`: tracked runs.
 * - `<prefix>{relay}:run:<run_id>` and the channel `<prefix>{relay}:delivered`: waiters' relay.
 * - `bull:<queue name>:<run_id>.<status>` and BullMQ's other keys: the queue's jobs; on a Redis
 *   Cluster `{<queue name>}:<queue name>:…`, one slot for them all.
 *
 * Values from a body (`<run_id>`, `<status>`) are encoded with `encodeKeyPart`.
 */
import { randomUUID } from 'node:crypto'
import type { Cluster, Redis, RedisOptions } from 'ioredis'
import { MissingPeerError } from './errors.js'

export type Bullmq = typeof import('bullmq')
interface Ioredis { Redis: typeof import('ioredis').Redis }

export const DEFAULT_REDIS_PREFIX = 'langgraph-webhooks:'
export const DEFAULT_REDIS_TIMEOUT_MS = 1000

/** A Redis the plugin uses: the client, the prefix of its keys, and how long a command may take. */
export interface RedisConnection {
  client: Redis
  /** Prepended to every key and channel. */
  prefix: string
  /** The longest an operation may take before it fails. */
  timeoutMs: number
}

/** An ioredis client (`new Redis(url)`), described by what the plugin uses of it, so that its types need no ioredis. */
export interface RedisClientLike {
  readonly status: string
  duplicate(...args: any[]): RedisClientLike
  defineCommand(...args: any[]): unknown
  quit(...args: any[]): Promise<unknown>
  disconnect(...args: any[]): unknown
}

/** How the plugin reaches Redis: the user's client, or options for clients of its own. */
export type RedisSpec = { readonly client: RedisClientLike } | { readonly options: Record<string, unknown> | string }

// '%' (the escape itself), ':' (the separator of key parts), '.' (the
// separator of job ids), '{' and '}' (Redis Cluster hash tags), and lone
// surrogates, which UTF-8 would turn into U+FFFD on their way to Redis.
const RESERVED = /[%:.{}]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g

/**
 * A value from a webhook (a run id, a status) as one part of a Redis key or
 * a BullMQ job id: injective, and never holding ':', '.', '{' or '}', so no
 * value can reach into another part, another run's key or another feature's.
 */
export function encodeKeyPart (value: string): string {
  // Lone surrogates get four digits behind a 'u', the rest two: decodable either way.
  return value.replace(RESERVED, (char) => `%${char.charCodeAt(0) > 0xff ? 'u' : ''}${char.charCodeAt(0).toString(16).toUpperCase()}`)
}

/** The job id of a run: one per run and status, so that a duplicate is a no-op; holding a '.', it never looks like an integer (which BullMQ refuses). */
export function jobIdOf (runId: string, status: string): string {
  return `${encodeKeyPart(runId)}.${encodeKeyPart(status)}`
}

/** Settles as `operation` does, or rejects with `timedOut()` after `timeoutMs`: Redis calls fail fast rather than hang. */
export function withTimeout<T> (operation: Promise<T>, timeoutMs: number, timedOut: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  // After the I/O of this turn of the event loop: a reply that arrived while the process was busy still counts.
  const late = new Promise<never>((_resolve, reject) => { timer = setTimeout(() => setImmediate(() => reject(timedOut())), timeoutMs) })
  return Promise.race([operation, late]).finally(() => clearTimeout(timer))
}

/** Statuses in which ioredis would only queue a command: fail at once instead. */
export const DISCONNECTED: ReadonlySet<string> = new Set(['reconnecting', 'close', 'end'])

/** A Redis command that fails at once while the client is disconnected, and after `timeoutMs` otherwise. */
export function bounded<T> (client: Redis, timeoutMs: number, what: string, operation: () => Promise<T>, failed: (message: string) => Error): Promise<T> {
  if (DISCONNECTED.has(client.status)) return Promise.reject(failed(`Redis is unreachable (client ${client.status})`))
  return withTimeout(operation(), timeoutMs, () => failed(`${what} took longer than ${timeoutMs} ms (is Redis reachable?)`))
}

// A random prefix for this process and a counter: unique across instances, and cheap enough for every delivery.
const OWNER_PREFIX = randomUUID()
let owners = 0

/** A new owner id (of a lease, a claim, a relay), unique across processes and instances. */
export const newOwner = (): string => `${OWNER_PREFIX}.${++owners}`

/** Loads an optional peer; a missing package becomes a registration error that says what to install. */
export async function loadPeer<T> (name: string, option: string, importer: () => Promise<T>): Promise<T> {
  return await importer().catch((error: { code?: unknown }) => {
    throw error.code === 'ERR_MODULE_NOT_FOUND' || error.code === 'MODULE_NOT_FOUND' ? new MissingPeerError(option, name, name) : error
  })
}

export const loadBullmq = (): Promise<Bullmq> => loadPeer('bullmq', 'queue', () => import('bullmq'))
const loadIoredis = (): Promise<Ioredis> => loadPeer('ioredis', 'redis or queue.connection (options or a URL)', () => import('ioredis'))

function noop (): void {}

/**
 * BullMQ's key prefix for a queue: its default, except on a Redis Cluster,
 * where every key of a queue must share one slot (a hash tag), unless the
 * queue's name carries a hash tag of its own (as Redis reads one: the first
 * '{', then something before the next '}').
 */
export function queuePrefix (client: Redis, name: string): string | undefined {
  return client.isCluster && !/^[^{]*\{[^}]+\}/.test(name) ? `{${name}}` : undefined
}

/** A new client to the same Redis: a `Cluster` takes the options of its node connections apart, as `redisOptions`. */
export function duplicateClient (client: Redis, options: RedisOptions): Redis {
  if (!client.isCluster) return client.duplicate(options)
  const { lazyConnect = false, enableAutoPipelining = false, ...redisOptions } = options
  // Merged here: ioredis 5 would replace the user's node options (password, TLS) with these.
  const cluster = client as unknown as Cluster
  return cluster.duplicate([], { lazyConnect, enableAutoPipelining, redisOptions: { ...cluster.options.redisOptions, ...redisOptions } }) as unknown as Redis
}

/** The Redis clients of one user of Redis: the user's client (which stays theirs), or clients made from options (closed by `close`). */
export class RedisClients {
  /** The client that runs commands. */
  readonly client: Redis
  readonly #owned: Redis[] = []
  /** The clients BullMQ's workers made for themselves: they close them, unless Redis stopped answering. */
  readonly #borrowed: Redis[] = []

  constructor (spec: RedisSpec, ioredis?: Ioredis) {
    const options = 'options' in spec ? spec.options : undefined
    this.client = options === undefined ? (spec as { client: Redis }).client : this.#own(typeof options === 'string' ? new ioredis!.Redis(options) : new ioredis!.Redis(options))
  }

  /** Clients for `spec`, loading ioredis when the plugin makes them. */
  static async connect (spec: RedisSpec): Promise<RedisClients> {
    return new RedisClients(spec, 'client' in spec ? undefined : await loadIoredis())
  }

  #own (client: Redis): Redis {
    client.on('error', noop) // reported by those who use it, which listen too
    this.#owned.push(client)
    return client
  }

  /** A connection of its own whose commands of one tick go out in one write (ioredis autopipelining): a run's duplicate check and its add, and those of concurrent deliveries. */
  producer (): Redis {
    return this.#own(duplicateClient(this.client, { enableAutoPipelining: true }))
  }

  /** A client that never connects itself, for BullMQ's Worker to duplicate: blocking commands need `maxRetriesPerRequest: null`. */
  workerTemplate (): Redis {
    const template = this.#own(duplicateClient(this.client, { maxRetriesPerRequest: null, lazyConnect: true }))
    const duplicate = template.duplicate.bind(template)
    template.duplicate = (...args: Parameters<Redis['duplicate']>) => {
      const client = duplicate(...args)
      this.#borrowed.push(client)
      return client
    }
    return template
  }

  /** Whether the workers' clients are connected: closing them gracefully waits for Redis, which a lost connection never ends. */
  workersConnected (): boolean {
    return this.#borrowed.every((client) => client.status === 'ready')
  }

  /** Closes the clients made here (the user's stays open); `answering` false (Redis did not let a worker close) drops them without a QUIT. */
  async close (answering = true): Promise<void> {
    // A worker that could not close waits for its clients' end, which a stalled Redis never sends: end them here.
    this.#borrowed.splice(0).forEach((client) => { client.disconnect(); client.stream?.destroy() })
    await Promise.all(this.#owned.splice(0).map(async (client) => {
      // QUIT lets replies in flight arrive; a client that is not connected (never used, or Redis down) is just dropped.
      if (client.status === 'ready' && answering) await withTimeout(client.quit(), 1000, () => new Error('QUIT took longer than 1000 ms')).catch(noop)
      client.disconnect()
    }))
  }
}

/**
 * The plugin's Redis without a queue: the `redis` option, else the Redis a
 * dedupe store tells (`createRedisDedupeStore`'s `store.redis`); none means
 * tracked runs and waiters stay in this process. `close` closes what the plugin made.
 */
export async function connectRedis (spec: RedisSpec | undefined, store: object | undefined): Promise<(RedisConnection & { close(): Promise<void> }) | undefined> {
  if (spec !== undefined) {
    const clients = await RedisClients.connect(spec)
    return { client: clients.client, prefix: DEFAULT_REDIS_PREFIX, timeoutMs: DEFAULT_REDIS_TIMEOUT_MS, close: () => clients.close() }
  }
  const redis = (store as { redis?: Partial<RedisConnection> } | undefined)?.redis
  if (typeof redis?.client?.defineCommand !== 'function') return undefined
  return { ...redis as RedisConnection, close: async () => {} }
}
