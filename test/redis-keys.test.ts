// Redis keys hold values from webhook bodies (run ids, statuses): each
// feature has a namespace of its own, and every value is encoded, so a
// forged body reaches no key of another feature nor of another run.
import t from 'tap'
import { randomUUID } from 'node:crypto'
import fc from 'fast-check'
import Fastify from 'fastify'
import type { Redis } from 'ioredis'
import plugin, { type LanggraphClient, type RunWebhook } from '../lib/index.js'
import { createRedisDedupeStore } from '../lib/dedupe/redis.js'
import type { DedupeStore } from '../lib/dedupe/memory.js'
import { jobIdOf } from '../lib/queue/index.js'
import { buildRunWebhook, deliverRun } from '../lib/testing.js'
import { connect, instance, queueName, token, until } from './helpers/queue.js'
import { logSink } from './helpers/log.js'
import { startRedisServer } from './helpers/redis-server.js'

const server = await startRedisServer()
t.teardown(() => server.stop())

const HOUR = 3_600_000

/** A LangGraph client whose `runs.create` starts the run ids given to it, in order. */
function stubClient (runIds: string[]): LanggraphClient {
  const refuse = (): never => { throw new Error('not called in these tests') }
  return {
    runs: {
      create: async (threadId, assistantId) => {
        const now = new Date().toISOString()
        return { run_id: runIds.shift()!, thread_id: threadId!, assistant_id: assistantId, created_at: now, updated_at: now, status: 'pending' }
      },
      stream: refuse,
      get: refuse
    },
    threads: { getState: refuse }
  }
}

/** Every key matching `pattern`, with its type and value: what a forged body must leave alone. */
async function snapshot (client: Redis, pattern: string): Promise<Record<string, string>> {
  const found: Record<string, string> = {}
  for (const key of (await client.keys(pattern)).sort()) {
    const type = await client.type(key)
    const value = type === 'string'
      ? await client.get(key)
      : type === 'zset' ? await client.zrange(key, '0', '-1', 'WITHSCORES') : await client.hgetall(key)
    found[key] = `${type} ${JSON.stringify(value)}`
  }
  return found
}

/** The snapshot without the keys of `gone`, for comparing what is left. */
function without (found: Record<string, string>, gone: string[]): Record<string, string> {
  return Object.fromEntries(Object.entries(found).filter(([key]) => !gone.includes(key)))
}

/** Bodies aimed at other features' keys and at other runs', with the keys each owns: its dedupe key, and its claim. */
function forgeries (prefix: string, victim: string): Array<{ run: Pick<RunWebhook, 'run_id' | 'status'>, own: string[] }> {
  // A delivered run's dedupe key, its claim, and what the relay keeps of it for waiters on other instances.
  const own = (dedupe: string, claim: string): string[] => [`${prefix}{dedupe}:${dedupe}`, `${prefix}{runs}:claim:${claim}`, `${prefix}{relay}:run:${claim}`]
  return [
    { run: { run_id: 'runs', status: 'due' }, own: own('runs:due', 'runs') },
    { run: { run_id: 'runs:claim', status: victim }, own: own(`runs%3Aclaim:${victim}`, 'runs%3Aclaim') },
    { run: { run_id: 'runs:run', status: victim }, own: own(`runs%3Arun:${victim}`, 'runs%3Arun') },
    { run: { run_id: '{runs}:claim', status: victim }, own: own(`%7Bruns%7D%3Aclaim:${victim}`, '%7Bruns%7D%3Aclaim') },
    { run: { run_id: `{runs}:claim:${victim}`, status: 'x' }, own: own(`%7Bruns%7D%3Aclaim%3A${victim}:x`, `%7Bruns%7D%3Aclaim%3A${victim}`) },
    { run: { run_id: `${victim}:success`, status: '%}.{' }, own: own(`${victim}%3Asuccess:%25%7D%2E%7B`, `${victim}%3Asuccess`) },
    { run: { run_id: 'a\uD800', status: 'b\uDC00c' }, own: own('a%uD800:b%uDC00c', 'a%uD800') },
    { run: { run_id: 'a\uFFFD', status: 'b\uFFFDc' }, own: own('a\uFFFD:b\uFFFDc', 'a\uFFFD') }
  ]
}

t.test('with a Redis dedupe store and run tracking, forged run ids and statuses only add their own keys', async (t) => {
  const client = await connect(t, server)
  const prefix = `test:${randomUUID()}:`
  const victim = randomUUID()
  const sink = logSink('warn')
  const app = Fastify({ logger: sink.logger })
  t.teardown(() => app.close())
  await app.register(plugin, {
    token,
    dedupe: { store: createRedisDedupeStore(client, { prefix }) },
    langgraph: { client: stubClient([randomUUID(), victim]), webhookUrl: 'https://api.example.com/webhooks/langgraph', reconcileAfterMs: HOUR, reconcileEveryMs: HOUR }
  })
  const handled: string[] = []
  app.langgraphWebhooks.onRun((run) => { handled.push(`${run.run_id} ${run.status}`) })
  await app.ready()
  const forged = forgeries(prefix, victim)

  // Forged before any run is tracked, then the tracker still tracks runs.
  const first = forged[0]!
  t.equal((await deliverRun(app, buildRunWebhook(first.run), { token })).statusCode, 204)
  t.same(Object.keys(await snapshot(client, `${prefix}*`)), first.own.sort(), 'only the forged run\'s own keys')
  const other = await app.langgraphWebhooks.runs.create(randomUUID(), 'agent')
  await app.langgraphWebhooks.runs.create(randomUUID(), 'agent')
  const tracked = await snapshot(client, `${prefix}*`)
  t.match(tracked[`${prefix}{runs}:due`], /^zset /, 'the schedule is still a sorted set')
  t.same(Object.keys(tracked).sort(), [...first.own, `${prefix}{runs}:due`, `${prefix}{runs}:run:${other.run_id}`, `${prefix}{runs}:run:${victim}`].sort())

  // Forged against the tracked runs: what was there stays as it was.
  for (const { run } of forged.slice(1)) {
    t.equal((await deliverRun(app, buildRunWebhook(run), { token })).statusCode, 204, `${JSON.stringify(run)} is delivered`)
  }
  const after = await snapshot(client, `${prefix}*`)
  const added = forged.slice(1).flatMap(({ own }) => own)
  t.same(Object.keys(after).sort(), [...Object.keys(tracked), ...added].sort(), 'only the forged runs\' own keys appeared')
  t.same(without(after, added), tracked, 'every other key kept its type and value')
  t.same(new Set(added.filter((key) => !key.includes('{relay}')).map((key) => after[key])), new Set(['string "done"', 'string "done:w"']))

  // The victim's own webhook is handled as if nothing had been forged.
  t.equal((await deliverRun(app, buildRunWebhook({ run_id: victim, status: 'success' }), { token })).statusCode, 204)
  t.equal((await deliverRun(app, buildRunWebhook({ run_id: victim, status: 'success' }), { token })).statusCode, 204)
  t.same(handled, [...forged.map(({ run }) => `${run.run_id} ${run.status}`), `${victim} success`], 'every delivery reached the listeners once')
  const end = await snapshot(client, `${prefix}*`)
  t.equal(end[`${prefix}{runs}:claim:${victim}`], 'string "done:w"')
  t.equal(end[`${prefix}{runs}:run:${victim}`], undefined, 'handled: no longer tracked')
  t.same(sink.lines, [], 'nothing failed')
})

t.test('with the queue, forged run ids and statuses each get a job of their own, and touch no other run\'s keys', async (t) => {
  const name = queueName()
  const victim = randomUUID()
  const { app, client, lines } = await instance(t, server, { name }, {
    langgraph: { client: stubClient([victim]), webhookUrl: 'https://api.example.com/webhooks/langgraph', reconcileAfterMs: HOUR, reconcileEveryMs: HOUR }
  })
  const handled: string[] = []
  app.langgraphWebhooks.onRun((run) => { handled.push(`${run.run_id} ${run.status}`) })
  await app.ready()
  await app.langgraphWebhooks.runs.create(randomUUID(), 'agent')
  const prefix = `langgraph-webhooks:${name}:`
  const tracked = await snapshot(client, `${prefix}*`)
  t.same(Object.keys(tracked).sort(), [`${prefix}{runs}:due`, `${prefix}{runs}:run:${victim}`])

  const forged = forgeries(prefix, victim)
  const runs = [
    { run: { run_id: 'x.y', status: 'z' }, claim: 'x%2Ey' },
    { run: { run_id: 'x', status: 'y.z' }, claim: 'x' },
    { run: { run_id: 'u', status: 'custom:status' }, claim: 'u' },
    { run: { run_id: '12', status: '3' }, claim: '12' },
    ...forged.map(({ run, own }) => ({ run, claim: own[1]!.slice(`${prefix}{runs}:claim:`.length) }))
  ]
  for (const { run } of runs) {
    t.equal((await deliverRun(app, buildRunWebhook(run), { token })).statusCode, 202, `${JSON.stringify(run)} is queued`)
  }
  await until(() => handled.length === runs.length, 30_000, 'every job handled')
  t.same(handled.sort(), runs.map(({ run }) => `${run.run_id} ${run.status}`).sort(), 'each reached a listener')
  const jobs = ['x%2Ey.z', 'x.y%2Ez', 'u.custom%3Astatus', '12.3'].map((id) => `bull:${name}:${id}`)
  t.same(await Promise.all(jobs.map((key) => client.exists(key))), [1, 1, 1, 1], 'each has a job of its own')

  const after = await snapshot(client, `${prefix}*`)
  // Each run's claim (waiters on other instances read the job itself).
  const own = [...new Set(runs.map(({ claim }) => `${prefix}{runs}:claim:${claim}`))]
  t.same(Object.keys(after).sort(), [...Object.keys(tracked), ...own].sort(), 'only the forged runs\' own keys appeared')
  t.same(without(after, own), tracked, 'the tracked run\'s keys kept their values')
  t.same(lines.filter((line) => line.level >= 40), [], 'nothing failed')
})

/** Strings made mostly of the characters an encoding must tell apart. */
function parts (minLength: number): fc.Arbitrary<string> {
  return fc.string({
    minLength,
    maxLength: 3,
    unit: fc.oneof(
      { weight: 8, arbitrary: fc.constantFrom('%', ':', '.', '{', '}', 'a', '3', 'A', '\uD800', '\uDC00', '\uFFFD') },
      { weight: 1, arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }) }
    )
  })
}

/** Every (run id, status) pair of a few such strings: distinct pairs, made of the same pieces. */
function pairs (minLength: number): fc.Arbitrary<Array<[string, string]>> {
  return fc.uniqueArray(parts(minLength), { minLength: 2, maxLength: 6 })
    .map((pool) => pool.flatMap((runId) => pool.map((status): [string, string] => [runId, status])))
}

/** What Redis and BullMQ see of a string: its UTF-8 bytes. */
function bytes (value: string): string {
  return Buffer.from(value, 'utf8').toString('hex')
}

t.test('job ids: no two distinct (run id, status) pairs share one, and BullMQ takes each', async (t) => {
  fc.assert(fc.property(pairs(0), (given) => {
    const ids = given.map(([runId, status]) => jobIdOf(runId, status))
    return new Set(ids.map(bytes)).size === given.length && ids.every((id) => !id.includes(':') && `${parseInt(id, 10)}` !== id)
  }), { numRuns: 2000 })
  t.equal(jobIdOf('', ''), '.', 'empty strings too')
})

t.test('dedupe keys: no two distinct deliveries share one', async (t) => {
  const keys: string[] = []
  const store: DedupeStore = {
    reserve (key) {
      keys.push(bytes(key))
      return 'reserved'
    },
    complete () {},
    release () {}
  }
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(plugin, { token, dedupe: { store } })
  await fc.assert(fc.asyncProperty(pairs(1), async (given) => {
    keys.length = 0
    for (const [runId, status] of given) {
      if ((await deliverRun(app, buildRunWebhook({ run_id: runId, status }), { token })).statusCode !== 204) return false
    }
    return new Set(keys).size === given.length
  }), { numRuns: 200 })
})
