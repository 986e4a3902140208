import type { FastifyBaseLogger } from 'fastify'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Redis } from 'ioredis'
import { redactRun } from '../redact.js'
import { RUN_STATUSES, type RunWebhook } from '../schemas.js'
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

/** The queue's jobs, as the relay reads them: BullMQ's stream of the queue's events, and a job's run with when it was added. */
export interface QueuedJobs {
  readonly eventsKey: string
  read (jobId: string): Promise<{ run: RunWebhook<unknown>, addedAt: number } | undefined>
}

/** The relay's connection: with the queue, `jobs` are what it relays. */
export type RelayConnection = RedisConnection & { jobs?: QueuedJobs }

/**
 * Deliveries received by one instance resolve the waiters of all. An
 * accepted delivery leaves its run, token masked whatever `redactToken`
 * says (it leaves the process), under `<prefix>{relay}:run:<id>` for a
 * minute, and its run id is published on `<prefix>{relay}:delivered`. An
 * instance where someone waits for that run reads it; a late caller looks
 * the key up. Bodies travel on a connection of the relay's own, so that they
 * cannot delay a delivery's own Redis calls; messages arrive on another (a
 * subscribed connection can do nothing else).
 */
export async function createRedisRelay ({ client, prefix, timeoutMs }: RedisConnection, waiters: Pick<RunWaiters, 'waitingFor' | 'heard'>, log: FastifyBaseLogger): Promise<WaitRelay> {
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
  subscriber.on('error', relayFailed(log))

  /** Reads a run delivered elsewhere and hands it to the waiters. */
  async function read (runId: string): Promise<void> {
    try {
      const stored = await bounded(publisher, timeoutMs, 'relay lookup', () => publisher.get(runKey(runId)), unavailable)
      if (stored !== null) waiters.heard(JSON.parse(stored), stored.length)
    } catch (error) {
      notRead(log, runId, error)
    }
  }

  // JSON.stringify keeps key order: this instance's own messages start so, and are skipped unparsed.
  const own = `{"from":${JSON.stringify(self)},`
  subscriber.on('message', (_channel: string, message: string) => {
    if (message.startsWith(own)) return
    let parsed: { run_id?: unknown }
    try { parsed = JSON.parse(message) } catch { return }
    const runId = parsed?.run_id
    if (typeof runId === 'string' && waiters.waitingFor(runId)) read(runId)
  })
  try {
    await bounded(subscriber, timeoutMs, 'subscribe', () => subscriber.subscribe(channel), unavailable)
  } catch (error) {
    // Still queued: it is sent when Redis comes back.
    notSubscribed(error)
  }

  return {
    publish (run) {
      // Queued while disconnected, it would resolve waiters long after; they time out instead.
      if (DISCONNECTED.has(publisher.status)) return
      const masked = { ...run, kwargs: { ...run.kwargs } }
      redactRun(masked)
      let value
      try {
        value = JSON.stringify(masked)
      } catch (error) {
        log.warn({ err: error, run_id: run.run_id }, 'fastify-langgraph-webhooks: a run too deeply nested to serialize is not relayed to other instances; it is delivered here')
        return
      }
      const message = JSON.stringify({ from: self, run_id: run.run_id })
      // The key, kept as long as waitForRun's memory, is set before the message goes out: on a Cluster the two reach different nodes.
      publisher.set(runKey(run.run_id), value, 'PX', REMEMBER_MS).then(() => publisher.publish(channel, message)).catch((error: unknown) => {
        log.warn({ err: error, run_id: run.run_id }, 'fastify-langgraph-webhooks: could not tell other instances about a delivery')
      })
    },
    lookup: read,
    close: () => closeAll([subscriber, publisher], timeoutMs)
  }
}

/**
 * With the queue, the waiters of every instance learn of a run from BullMQ
 * itself: adding a job writes an `added` event to the queue's stream, which
 * each instance reads on a connection of its own, so that a delivery costs no
 * Redis call of the relay's. An instance where someone waits for that run
 * reads its job; a late caller looks for a job of the run, of any status,
 * added in the last minute.
 */
export function createJobRelay ({ client, timeoutMs, jobs }: RelayConnection & { jobs: QueuedJobs }, waiters: Pick<RunWaiters, 'waitingFor' | 'heard'>, log: FastifyBaseLogger): WaitRelay {
  // The events of the last minute first (stream ids start with a time): a job added as the relay starts is not missed.
  let last = `${Date.now() - REMEMBER_MS}-0`
  // Blocking reads wait out a reconnection rather than fail, and no timeout of the user's client cuts them short.
  const reader = duplicateClient(client, { maxRetriesPerRequest: null, commandTimeout: undefined, socketTimeout: undefined, blockingTimeout: undefined })
  reader.on('error', relayFailed(log))
  let closed = false

  /** Reads the newest run of those jobs added within a minute, and hands it to the waiters. */
  async function read (runId: string, jobIds: string[]): Promise<void> {
    try {
      const found = await bounded(client, timeoutMs, 'relay job lookup', () => Promise.all(jobIds.map(jobs.read)), unavailable)
      const recent = found.filter((job) => job !== undefined && job.addedAt > Date.now() - REMEMBER_MS).sort((a, b) => b!.addedAt - a!.addedAt)[0]
      // Not remembered here: its job keeps it.
      if (recent !== undefined) waiters.heard(recent.run, Number.POSITIVE_INFINITY)
    } catch (error) {
      notRead(log, runId, error)
    }
  }

  async function follow (): Promise<void> {
    for (;;) {
      try {
        // Blocks until there are events: it never answers empty.
        const [[, events]] = (await reader.xread('COUNT', 1000, 'BLOCK', 0, 'STREAMS', jobs.eventsKey, last))!
        for (const [id, fields] of events) {
          last = id
          // BullMQ's fields: event, added, jobId, <job id>, name, <name>.
          const jobId = fields[1] === 'added' ? fields[3] : undefined
          const runId = jobId === undefined ? undefined : decodeKeyPart(jobId.split('.', 1)[0])
          if (runId !== undefined && waiters.waitingFor(runId)) read(runId, [jobId!])
        }
      } catch (error) {
        if (closed) return
        log.warn({ err: error }, 'fastify-langgraph-webhooks: could not read the queue\'s events for the waiters of other instances; it reads again in a second')
        await sleep(1000, undefined, { ref: false })
      }
    }
  }
  follow().catch(() => undefined)

  return {
    // Adding the job told every instance already.
    publish () {},
    lookup: (runId) => read(runId, RUN_STATUSES.map((status) => jobIdOf(runId, status))),
    async close () {
      closed = true
      // A blocked read is ended, not answered: no QUIT.
      reader.disconnect()
    }
  }
}

/** The inverse of `encodeKeyPart`. */
function decodeKeyPart (part: string): string {
  return part.replace(/%u([0-9A-F]{4})|%([0-9A-F]{2})/g, (_match, wide: string | undefined, narrow: string) => String.fromCharCode(parseInt(wide ?? narrow, 16)))
}

function relayFailed (log: FastifyBaseLogger): (error: Error) => void {
  return (error) => { log.warn({ err: error }, 'fastify-langgraph-webhooks: the Redis connection that relays deliveries to waiters failed; it reconnects') }
}

function notRead (log: FastifyBaseLogger, runId: string, error: unknown): void {
  log.warn({ err: error, run_id: runId }, 'fastify-langgraph-webhooks: could not read a run delivered to another instance')
}

/** Closes the relay's connections: QUIT lets a command in flight be answered, within the bound (a stalled Redis never answers it). */
async function closeAll (connections: Redis[], timeoutMs: number): Promise<void> {
  await Promise.all(connections.map(async (connection) => {
    if (connection.status === 'ready') await withTimeout(connection.quit(), timeoutMs, () => new Error('QUIT timed out')).catch(() => undefined)
    connection.disconnect()
  }))
}
