import type { FastifyBaseLogger } from 'fastify'
import { redactRun } from '../redact.js'
import type { RunWebhook } from '../schemas.js'
import { HANDLED_MS, MAX_TRACKED_MS, RECONCILED_MS, type RunTracker, type TrackedRun, type TrackerLimits } from './tracker.js'
import type { WaitRelay } from './waiters.js'
import { jobIdOf } from '../queue/job.js'
import { RedisUnavailableError } from '../errors.js'
import { bounded, DISCONNECTED, encodeKeyPart, newOwner, withTimeout, type RedisConnection } from '../redis.js'

// Claims (KEYS[1] claim key): `w:<n>` n webhooks in flight, `r:<owner>` a
// reconciliation in flight, `done:w` / `done:r` handled by either path.

// KEYS[1] claim, KEYS[2] run, KEYS[3] due; ARGV[1] run JSON, ARGV[2] due at, ARGV[3] ttl, ARGV[4] encoded run id.
const TRACK = `local c = redis.call('GET', KEYS[1])
if c == 'done:w' or c == 'done:r' then return 0 end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[4])
return 1`

// KEYS[1] claim, KEYS[2] run; ARGV[1] path, ARGV[2] owner, ARGV[3] lease.
const CLAIM = `local c = redis.call('GET', KEYS[1])
if ARGV[1] == 'webhook' then
  if c == 'done:w' then return 'passed' end
  if c == 'done:r' or (c and string.sub(c, 1, 2) == 'r:') then return 'refused' end
  local n = 1
  if c then n = tonumber(string.sub(c, 3)) + 1 end
  redis.call('SET', KEYS[1], 'w:' .. n, 'PX', ARGV[3])
  return 'claimed'
end
if c or redis.call('EXISTS', KEYS[2]) == 0 then return 'refused' end
redis.call('SET', KEYS[1], 'r:' .. ARGV[2], 'PX', ARGV[3])
return 'claimed'`

// KEYS[1] claim; ARGV[1] path, ARGV[2] owner.
const RELEASE = `local c = redis.call('GET', KEYS[1])
if not c then return 0 end
if ARGV[1] == 'webhook' then
  if string.sub(c, 1, 2) ~= 'w:' then return 0 end
  local n = tonumber(string.sub(c, 3)) - 1
  if n <= 0 then return redis.call('DEL', KEYS[1]) end
  redis.call('SET', KEYS[1], 'w:' .. n, 'KEEPTTL')
  return 1
end
if c == 'r:' .. ARGV[2] then return redis.call('DEL', KEYS[1]) end
return 0`

// KEYS[1] claim, KEYS[2] run, KEYS[3] due; ARGV[1] mark, ARGV[2] its ttl, ARGV[3] encoded run id.
const HANDLED = `redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[3])
return 1`

// KEYS[1] due; ARGV[1] now, ARGV[2] limit, ARGV[3] lease end.
// Leases the due runs' ids; their runs are read after, by keys the client builds (Redis Cluster wants every key in KEYS).
const DUE = `local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, id in ipairs(ids) do redis.call('ZADD', KEYS[1], ARGV[3], id) end
return ids`

// KEYS[1] run, KEYS[2] due; ARGV[1] run JSON, ARGV[2] due at, ARGV[3] encoded run id.
const RESCHEDULE = `if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'KEEPTTL')
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
return 1`

interface TrackerCommands {
  langgraphRunsTrack (claim: string, run: string, due: string, json: string, dueAt: number, ttlMs: number, runId: string): Promise<number>
  langgraphRunsClaim (claim: string, run: string, path: string, owner: string, leaseMs: number): Promise<'claimed' | 'refused' | 'passed'>
  langgraphRunsRelease (claim: string, path: string, owner: string): Promise<number>
  langgraphRunsHandled (claim: string, run: string, due: string, mark: string, ttlMs: number, runId: string): Promise<number>
  langgraphRunsDue (due: string, now: number, limit: number, leaseEnd: number): Promise<string[]>
  langgraphRunsReschedule (run: string, due: string, json: string, dueAt: number, runId: string): Promise<number>
}

const unavailable = (message: string): Error => new RedisUnavailableError(message)

/**
 * Tracked runs in Redis, shared by every instance and kept across restarts:
 * `<prefix>{runs}:run:<id>` (the run, expiring `MAX_TRACKED_MS` after it was
 * tracked), `<prefix>{runs}:due` (a sorted set of check times, of encoded
 * ids), and `<prefix>{runs}:claim:<id>` (who is delivering it, or that it
 * was handled); `<id>` is the encoded run id, so no run id reaches another
 * run's keys nor another feature's. Every key a command or script touches
 * is given by the client (in KEYS for a script) and in the `{runs}` slot; a
 * claim is one script, so that a webhook and a reconciliation on two
 * instances cannot both take a run.
 */
export function createRedisRunTracker ({ client, prefix, timeoutMs }: RedisConnection, { leaseMs }: TrackerLimits): RunTracker {
  client.defineCommand('langgraphRunsTrack', { numberOfKeys: 3, lua: TRACK })
  client.defineCommand('langgraphRunsClaim', { numberOfKeys: 2, lua: CLAIM })
  client.defineCommand('langgraphRunsRelease', { numberOfKeys: 1, lua: RELEASE })
  client.defineCommand('langgraphRunsHandled', { numberOfKeys: 3, lua: HANDLED })
  client.defineCommand('langgraphRunsDue', { numberOfKeys: 1, lua: DUE })
  client.defineCommand('langgraphRunsReschedule', { numberOfKeys: 2, lua: RESCHEDULE })
  const redis = client as unknown as TrackerCommands
  const runPrefix = `${prefix}{runs}:run:`
  const dueKey = `${prefix}{runs}:due`
  const claimKey = (runId: string): string => `${prefix}{runs}:claim:${encodeKeyPart(runId)}`
  const runKey = (runId: string): string => runPrefix + encodeKeyPart(runId)
  const run = <T> (what: string, operation: () => Promise<T>): Promise<T> => bounded(client, timeoutMs, what, operation, unavailable)

  return {
    async track (tracked, dueAt) {
      const ttlMs = Math.max(1, tracked.createdAt + MAX_TRACKED_MS - Date.now())
      const json = JSON.stringify(tracked)
      return await run('track', () => redis.langgraphRunsTrack(claimKey(tracked.runId), runKey(tracked.runId), dueKey, json, dueAt, ttlMs, encodeKeyPart(tracked.runId))) === 1
    },
    claim (runId, path, owner) {
      return run('claim', () => redis.langgraphRunsClaim(claimKey(runId), runKey(runId), path, owner, leaseMs))
    },
    async release (runId, path, owner) {
      await run('release', () => redis.langgraphRunsRelease(claimKey(runId), path, owner))
    },
    async handled (runId, path) {
      const [mark, ttlMs] = path === 'webhook' ? ['done:w', HANDLED_MS] : ['done:r', RECONCILED_MS]
      await run('handled', () => redis.langgraphRunsHandled(claimKey(runId), runKey(runId), dueKey, mark, ttlMs, encodeKeyPart(runId)))
    },
    async due (now, limit) {
      const ids = await run('due', () => redis.langgraphRunsDue(dueKey, now, limit, now + leaseMs))
      if (ids.length === 0) return []
      const found = await run('due', () => client.mget(ids.map((id) => runPrefix + id)))
      const expired = ids.filter((_, i) => found[i] === null)
      // Tracked longer than MAX_TRACKED_MS: their run keys expired.
      if (expired.length > 0) await run('due', () => client.zrem(dueKey, ...expired))
      return found.flatMap((json) => json === null ? [] : [JSON.parse(json) as TrackedRun])
    },
    async reschedule (tracked, dueAt) {
      await run('reschedule', () => redis.langgraphRunsReschedule(runKey(tracked.runId), dueKey, JSON.stringify(tracked), dueAt, encodeKeyPart(tracked.runId)))
    },
    async drop (runId) {
      await run('drop', () => client.multi().del(runKey(runId)).zrem(dueKey, encodeKeyPart(runId)).exec())
    }
  }
}

/** How long a delivery stays findable by a late caller on another instance (waitForRun's memory). */
const RELAYED_MS = 60_000

/** The relay's connection: with the queue, `storedRun` reads a run from its job. */
export interface RelayConnection extends RedisConnection {
  storedRun?: (jobId: string) => Promise<RunWebhook<unknown> | undefined>
}

/** What the relay asks of the waiters here. */
export interface RelayWaiters {
  waitingFor (runId: string): boolean
  /** `bytes` is the run's serialized size, when known. */
  heard (run: RunWebhook<unknown>, bytes?: number): void
}

/**
 * Deliveries received by one instance resolve the waiters of all. An
 * accepted delivery leaves its run where other instances can read it for a
 * minute — with the queue, in its job, named under
 * `<prefix>{relay}:run:<id>`; without, under that key itself, token masked
 * whatever `redactToken` says (it leaves the process) — and its run id is
 * published on `<prefix>{relay}:delivered`. An instance where someone waits
 * for that run reads it; a late caller looks the key up. Bodies travel on a
 * connection of the relay's own, so that they cannot delay a delivery's own
 * Redis calls; messages arrive on another (a subscribed connection can do
 * nothing else).
 */
export async function createRedisRelay (
  { client, prefix, timeoutMs, storedRun }: RelayConnection,
  waiters: RelayWaiters,
  log: FastifyBaseLogger
): Promise<WaitRelay> {
  const channel = `${prefix}{relay}:delivered`
  const runKey = (runId: string): string => `${prefix}{relay}:run:${encodeKeyPart(runId)}`
  const self = newOwner()
  const publisher = client.duplicate()
  publisher.on('error', (error: Error) => { log.warn({ err: error }, 'fastify-langgraph-webhooks: the Redis connection that relays deliveries to other instances failed; it reconnects') })
  // Resubscribed here after a reconnect rather than by ioredis, whose own
  // resubscription rejects unhandled when the client is closed under it.
  const subscriber = client.duplicate({ autoResubscribe: false })
  const notSubscribed = (error: unknown): void => {
    log.warn({ err: error }, 'fastify-langgraph-webhooks: could not subscribe to the deliveries of other instances yet; it subscribes again once Redis is back')
  }
  let connections = 0
  subscriber.on('ready', () => {
    // The first subscription is the one made below.
    if (connections++ > 0) subscriber.subscribe(channel).catch(notSubscribed)
  })
  subscriber.on('error', (error: Error) => { log.warn({ err: error }, 'fastify-langgraph-webhooks: the Redis connection that relays deliveries to waiters failed; it reconnects') })

  /** Reads a run delivered elsewhere and hands it to the waiters; `stored` is its key's value when known. */
  async function fetch (runId: string, stored?: string): Promise<void> {
    try {
      stored ??= await bounded(publisher, timeoutMs, 'relay lookup', () => publisher.get(runKey(runId)), unavailable) ?? undefined
      if (stored === undefined) return
      if (storedRun === undefined) {
        waiters.heard(JSON.parse(stored), stored.length)
        return
      }
      const run = await bounded(publisher, timeoutMs, 'relay job lookup', () => storedRun(stored!), unavailable)
      // Not remembered here: its job keeps it.
      if (run !== undefined) waiters.heard(run, Number.POSITIVE_INFINITY)
    } catch (error) {
      log.warn({ err: error, run_id: runId }, 'fastify-langgraph-webhooks: could not read a run delivered to another instance')
    }
  }

  // JSON.stringify keeps key order: this instance's own messages start so, and are skipped unparsed.
  const own = `{"from":${JSON.stringify(self)},`
  subscriber.on('message', (_channel: string, message: string) => {
    if (message.startsWith(own)) return
    let parsed: { run_id?: unknown, job?: unknown }
    try {
      parsed = JSON.parse(message)
    } catch {
      return
    }
    const runId = parsed?.run_id
    if (typeof runId !== 'string' || !waiters.waitingFor(runId)) return
    fetch(runId, typeof parsed.job === 'string' ? parsed.job : undefined)
  })
  try {
    await bounded(subscriber, timeoutMs, 'subscribe', () => subscriber.subscribe(channel), unavailable)
  } catch (error) {
    // Still queued: it is sent when Redis comes back.
    notSubscribed(error)
  }

  /** What the run's key holds: the job's id with the queue, else the masked run; undefined when it cannot be serialized. */
  function storedValue (run: RunWebhook<unknown>): string | undefined {
    if (storedRun !== undefined) return jobIdOf(run.run_id, run.status)
    const masked = { ...run, kwargs: { ...run.kwargs } }
    redactRun(masked)
    try {
      return JSON.stringify(masked)
    } catch (error) {
      log.warn({ err: error, run_id: run.run_id }, 'fastify-langgraph-webhooks: a run too deeply nested to serialize is not relayed to other instances; it is delivered here')
      return undefined
    }
  }

  return {
    publish (run) {
      // Queued while disconnected, it would resolve waiters long after; they time out instead.
      if (DISCONNECTED.has(publisher.status)) return
      const value = storedValue(run)
      if (value === undefined) return
      const message = JSON.stringify(storedRun === undefined ? { from: self, run_id: run.run_id } : { from: self, run_id: run.run_id, job: value })
      // One connection: the key is set before the message goes out.
      Promise.all([publisher.set(runKey(run.run_id), value, 'PX', RELAYED_MS), publisher.publish(channel, message)]).catch((error: unknown) => {
        log.warn({ err: error, run_id: run.run_id }, 'fastify-langgraph-webhooks: could not tell other instances about a delivery')
      })
    },
    lookup (runId) {
      fetch(runId)
    },
    async close () {
      await Promise.all([subscriber, publisher].map(async (connection) => {
        // QUIT lets a command in flight be answered, within the bound: a stalled Redis never answers it.
        if (connection.status === 'ready') await withTimeout(connection.quit(), timeoutMs, () => new Error('QUIT timed out')).catch(() => undefined)
        connection.disconnect()
      }))
    }
  }
}
