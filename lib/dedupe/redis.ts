import type { Cluster, Redis } from 'ioredis'
import type { DedupeStore, ReserveResult } from './memory.js'
import { InvalidArgumentError, RedisDedupeStoreError } from '../errors.js'
import { bounded, DEFAULT_REDIS_PREFIX, DEFAULT_REDIS_TIMEOUT_MS, newOwner, type RedisConnection } from '../redis.js'

export interface RedisDedupeStoreOptions {
  /** Prepended to every key (`<prefix>{dedupe}:<run_id>:<status>`, both encoded). Default `langgraph-webhooks:`. */
  prefix?: string
  /**
   * The longest a store operation may take before it fails (the delivery is
   * then answered 503 and the sender retries). Default 1000 ms.
   */
  timeoutMs?: number
}

/** A dedupe store in Redis, and the Redis it lives in. */
export interface RedisDedupeStore extends DedupeStore {
  /**
   * The store's Redis: given as `dedupe.store` without the plugin's `redis`
   * option, the plugin tracks started runs and relays deliveries to waiters
   * of every instance on it too.
   */
  readonly redis: RedisConnection
}

export { RedisDedupeStoreError, DEFAULT_REDIS_PREFIX, DEFAULT_REDIS_TIMEOUT_MS }

const DONE = 'done'
const LEASE = 'lease:'

// KEYS[1] key, ARGV[1] lease value, ARGV[2] lease in ms. Atomic: one round-trip
// takes the key or says who has it.
const RESERVE = `if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 'reserved' end
if redis.call('GET', KEYS[1]) == '${DONE}' then return 'done' end
return 'in-flight'`

// KEYS[1] key, ARGV[1] lease value: deletes the key only while it still holds
// this very lease, so a release never erases a 'done' mark nor a newer
// holder's lease (one taken after this holder's lease expired).
const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`

/** The scripts, declared on the client with `defineCommand` (which handles EVALSHA and a flushed script cache). */
interface DedupeCommands {
  langgraphWebhooksReserve(key: string, lease: string, leaseMs: number): Promise<ReserveResult>
  langgraphWebhooksRelease(key: string, lease: string): Promise<number>
}

/**
 * A dedupe store in Redis, shared by every instance behind a load balancer.
 *
 * - `reserve`: one Lua script: `SET key lease:<owner> NX PX leaseMs`,
 *   else `GET` tells `done` from `in-flight`. A lease expires by itself, so a
 *   crashed instance's reservation does not block the run for longer than `leaseMs`.
 * - `complete`: `SET key done PX ttlMs`.
 * - `release`: a Lua script deleting the key only if it still holds the
 *   caller's lease.
 *
 * When Redis is unreachable the store fails fast (the delivery is answered
 * 503 so the sender retries; listeners never run unguarded): `reserve`
 * throws at once while the client is reconnecting, and every operation fails
 * after `timeoutMs`. A reservation that times out may still reach Redis
 * later (ioredis resends queued commands on reconnect): the store queues an
 * owner-checked release right behind it, on the same connection, to undo it.
 *
 * `client` is an ioredis client (`new Redis(url)`) or `Cluster`; the store does not own
 * it: quit it yourself on shutdown.
 */
export function createRedisDedupeStore (redisClient: Redis | Cluster, options: RedisDedupeStoreOptions = {}): RedisDedupeStore {
  // A Cluster runs these commands as a client does (each script's one key gives its node).
  const client = redisClient as Redis
  if (typeof client?.defineCommand !== 'function') throw new InvalidArgumentError('createRedisDedupeStore(client): client must be an ioredis client, e.g. new Redis(process.env.REDIS_URL)')
  const { prefix = DEFAULT_REDIS_PREFIX, timeoutMs = DEFAULT_REDIS_TIMEOUT_MS } = options
  if (typeof prefix !== 'string') throw new InvalidArgumentError('createRedisDedupeStore: prefix must be a string')
  if (!Number.isSafeInteger(timeoutMs) || timeoutMs <= 0) throw new InvalidArgumentError(`createRedisDedupeStore: timeoutMs must be a positive integer, got ${String(timeoutMs)}`)
  // The namespace of dedupe keys beside the prefix, hash-tagged: one Redis Cluster slot for them all.
  const keyPrefix = `${prefix}{dedupe}:`
  // The owner of reservations made without one (callers of the store's own API).
  const anonymous = newOwner()

  client.defineCommand('langgraphWebhooksReserve', { numberOfKeys: 1, lua: RESERVE })
  client.defineCommand('langgraphWebhooksRelease', { numberOfKeys: 1, lua: RELEASE })
  const scripts = client as unknown as DedupeCommands

  const run = <T> (what: string, operation: () => Promise<T>): Promise<T> => bounded(client, timeoutMs, what, operation, (message) => new RedisDedupeStoreError(message))

  return {
    redis: { client, prefix, timeoutMs },

    async reserve (key: string, leaseMs: number, owner: string = anonymous): Promise<ReserveResult> {
      const redisKey = keyPrefix + key
      const lease = LEASE + owner
      return await run('reserve', () => scripts.langgraphWebhooksReserve(redisKey, lease, leaseMs)).catch((error: unknown) => {
        // The reservation may still be applied later (a queued or resent
        // command): undo it, in order, behind it on the same connection.
        scripts.langgraphWebhooksRelease(redisKey, lease).catch(() => {})
        throw error
      })
    },

    async complete (key: string, ttlMs: number): Promise<void> {
      await run('complete', () => client.set(keyPrefix + key, DONE, 'PX', ttlMs))
    },

    async release (key: string, owner: string = anonymous): Promise<void> {
      await run('release', () => scripts.langgraphWebhooksRelease(keyPrefix + key, LEASE + owner))
    }
  }
}
