import type { FastifyBaseLogger } from 'fastify'
import { redactRun } from '../redact.js'
import type { RunWebhook } from '../schemas.js'
import { HANDLED_MS, MAX_TRACKED_MS, RECONCILED_MS, type RunTracker, type TrackedRun, type TrackerLimits } from './tracker.js'
import { REMEMBER_MS, type RunWaiters, type WaitRelay } from './waiters.js'
import { RedisUnavailableError } from '../errors.js'
import { bounded, DISCONNECTED, duplicateClient, encodeKeyPart, jobIdOf, newOwner, withTimeout, type RedisConnection } from '../redis.js'

// Every script but DUE takes KEYS claim, run and due of one run, and ARGV[1] its encoded id (the due set's member).
// A claim is `w:<n>` (n webhooks in flight), `r:<owner>` (a reconciliation in flight), or `done:w` / `done:r` (handled by either path).

// ARGV[2] run JSON, ARGV[3] due at, ARGV[4] ttl.
const TRACK = `if string.sub(redis.call('GET', KEYS[1]) or '', 1, 5) == 'done:' then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[4])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
return 1`

// ARGV[2] path, ARGV[3] owner, ARGV[4] lease.
const CLAIM = `local c = redis.call('GET', KEYS[1])
if ARGV[2] == 'webhook' then
  if c == 'done:w' then return 'passed' end
  if c and string.sub(c, 1, 2) ~= 'w:' then return 'refused' end
  redis.call('SET', KEYS[1], 'w:' .. ((c and tonumber(string.sub(c, 3)) or 0) + 1), 'PX', ARGV[4])
  return 'claimed'
end
if c or redis.call('EXISTS', KEYS[2]) == 0 then return 'refused' end
redis.call('SET', KEYS[1], 'r:' .. ARGV[3], 'PX', ARGV[4])
return 'claimed'`

// ARGV[2] path, ARGV[3] owner.
const RELEASE = `local c = redis.call('GET', KEYS[1]) or ''
local webhook = ARGV[2] == 'webhook'
if webhook and c == 'w:1' or not webhook and c == 'r:' .. ARGV[3] then redis.call('DEL', KEYS[1])
elseif webhook and string.sub(c, 1, 2) == 'w:' then redis.call('SET', KEYS[1], 'w:' .. (tonumber(string.sub(c, 3)) - 1), 'KEEPTTL') end`

// ARGV[2] mark, ARGV[3] its ttl.
const HANDLED = `redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[1])`

// ARGV[2] run JSON, ARGV[3] due at: only while the run is tracked.
const RESCHEDULE = `if redis.call('EXISTS', KEYS[2]) == 0 then return end
redis.call('SET', KEYS[2], ARGV[2], 'KEEPTTL')
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])`

// KEYS[1] due; ARGV[1] now, ARGV[2] limit, ARGV[3] lease end.
// Leases the due runs' ids; their runs are read after, by keys the client builds (Redis Cluster wants every key in KEYS).
const DUE = `local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, id in ipairs(ids) do redis.call('ZADD', KEYS[1], ARGV[3], id) end
return ids`

const SCRIPTS = { track: TRACK, claim: CLAIM, release: RELEASE, handled: HANDLED, reschedule: RESCHEDULE }
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
  for (const [name, lua] of Object.entries(SCRIPTS)) client.defineCommand(`langgraphRuns:${name}`, { numberOfKeys: 3, lua })
  client.defineCommand('langgraphRuns:due', { numberOfKeys: 1, lua: DUE })
  const commands = client as unknown as Record<string, (...args: Array<string | number>) => Promise<any>>
  const key = `${prefix}{runs}:`
  const bound = <T> (what: string, operation: () => Promise<T>): Promise<T> => bounded(client, timeoutMs, what, operation, unavailable)
  /** Runs a script on the keys of one run. */
  const script = (name: keyof typeof SCRIPTS, runId: string, ...args: Array<string | number>): Promise<any> => {
    const id = encodeKeyPart(runId)
    return bound(name, () => commands[`langgraphRuns:${name}`](`${key}claim:${id}`, `${key}run:${id}`, `${key}due`, id, ...args))
  }

  return {
    async track (run, dueAt) {
      return await script('track', run.runId, JSON.stringify(run), dueAt, Math.max(1, run.createdAt + MAX_TRACKED_MS - Date.now())) === 1
    },
    claim: (runId, path, owner) => script('claim', runId, path, owner, leaseMs),
    release: (runId, path, owner) => script('release', runId, path, owner),
    handled: (runId, path) => script('handled', runId, ...(path === 'webhook' ? ['done:w', HANDLED_MS] : ['done:r', RECONCILED_MS])),
    reschedule: (run, dueAt) => script('reschedule', run.runId, JSON.stringify(run), dueAt),
    async due (now, limit) {
      const ids: string[] = await bound('due', () => commands['langgraphRuns:due'](`${key}due`, now, limit, now + leaseMs))
      if (ids.length === 0) return []
      const found = await bound('due', () => client.mget(ids.map((id) => `${key}run:${id}`)))
      const expired = ids.filter((_, i) => found[i] === null)
      // Tracked longer than MAX_TRACKED_MS: their run keys expired.
      if (expired.length > 0) await bound('due', () => client.zrem(`${key}due`, ...expired))
      return found.flatMap((json) => json === null ? [] : [JSON.parse(json) as TrackedRun])
    },
    async drop (runId) {
      await bound('drop', () => client.multi().del(`${key}run:${encodeKeyPart(runId)}`).zrem(`${key}due`, encodeKeyPart(runId)).exec())
    }
  }
}

/** The relay's connection: with the queue, `storedRun` reads a run from its job. */
export type RelayConnection = RedisConnection & { storedRun?: (jobId: string) => Promise<RunWebhook<unknown> | undefined> }

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
export async function createRedisRelay ({ client, prefix, timeoutMs, storedRun }: RelayConnection, waiters: Pick<RunWaiters, 'waitingFor' | 'heard'>, log: FastifyBaseLogger): Promise<WaitRelay> {
  const channel = `${prefix}{relay}:delivered`
  const runKey = (runId: string): string => `${prefix}{relay}:run:${encodeKeyPart(runId)}`
  const self = newOwner()
  const publisher = client.duplicate()
  publisher.on('error', (error: Error) => { log.warn({ err: error }, 'fastify-langgraph-webhooks: the Redis connection that relays deliveries to other instances failed; it reconnects') })
  // Resubscribed here after a reconnect rather than by ioredis, whose own
  // resubscription rejects unhandled when the client is closed under it.
  const subscriber = duplicateClient(client, { autoResubscribe: false })
  const notSubscribed = (error: unknown): void => log.warn({ err: error }, 'fastify-langgraph-webhooks: could not subscribe to the deliveries of other instances yet; it subscribes again once Redis is back')
  let connections = 0
  // The first subscription is the one made below.
  subscriber.on('ready', () => { if (connections++ > 0) subscriber.subscribe(channel).catch(notSubscribed) })
  subscriber.on('error', (error: Error) => { log.warn({ err: error }, 'fastify-langgraph-webhooks: the Redis connection that relays deliveries to waiters failed; it reconnects') })

  /** Reads a run delivered elsewhere and hands it to the waiters; `stored` is its key's value when known. */
  async function read (runId: string, stored?: string): Promise<void> {
    try {
      stored ??= await bounded(publisher, timeoutMs, 'relay lookup', () => publisher.get(runKey(runId)), unavailable) ?? undefined
      if (stored === undefined) return
      if (storedRun === undefined) return waiters.heard(JSON.parse(stored), stored.length)
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
    try { parsed = JSON.parse(message) } catch { return }
    const runId = parsed?.run_id
    if (typeof runId === 'string' && waiters.waitingFor(runId)) read(runId, typeof parsed.job === 'string' ? parsed.job : undefined)
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
    }
  }

  return {
    publish (run) {
      // Queued while disconnected, it would resolve waiters long after; they time out instead.
      if (DISCONNECTED.has(publisher.status)) return
      const value = storedValue(run)
      if (value === undefined) return
      const message = JSON.stringify({ from: self, run_id: run.run_id, job: storedRun === undefined ? undefined : value })
      // The key, kept as long as waitForRun's memory, is set before the message goes out: on a Cluster the two reach different nodes.
      publisher.set(runKey(run.run_id), value, 'PX', REMEMBER_MS).then(() => publisher.publish(channel, message)).catch((error: unknown) => {
        log.warn({ err: error, run_id: run.run_id }, 'fastify-langgraph-webhooks: could not tell other instances about a delivery')
      })
    },
    lookup: read,
    async close () {
      await Promise.all([subscriber, publisher].map(async (connection) => {
        // QUIT lets a command in flight be answered, within the bound: a stalled Redis never answers it.
        if (connection.status === 'ready') await withTimeout(connection.quit(), timeoutMs, () => new Error('QUIT timed out')).catch(() => undefined)
        connection.disconnect()
      }))
    }
  }
}
