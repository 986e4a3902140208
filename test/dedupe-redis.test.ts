// The Redis dedupe store against a real redis-server (never a mock): see
// test/helpers/redis-server.ts. Fails, does not skip, without redis-server.
import { randomUUID } from 'node:crypto'
import { once } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import t, { type Test } from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import { Redis } from 'ioredis'
import plugin, { RETRY_AFTER_SECONDS, type LanggraphWebhooksOptions } from '../lib/index.js'
import {
  createRedisDedupeStore, DEFAULT_REDIS_PREFIX, RedisDedupeStoreError, type RedisDedupeStoreOptions
} from '../lib/dedupe/redis.js'
import { buildRunWebhook, deliverRun } from '../lib/testing.js'
import { startRedisServer } from './helpers/redis-server.js'
import { logSink } from './helpers/log.js'

const token = 'x'.repeat(32)
const server = await startRedisServer()
t.teardown(() => server.stop())

function noop (): void {}

/** An ioredis client as an application would make one, reconnecting quickly for the tests. */
async function connect (test: Test): Promise<Redis> {
  const client = new Redis(server.port, '127.0.0.1', { retryStrategy: () => 50 })
  client.on('error', noop) // connection errors while Redis is stopped
  test.teardown(() => client.disconnect())
  await client.ping()
  return client
}

function prefix (): string {
  return `test:${randomUUID()}:`
}

interface Instance {
  app: FastifyInstance
  client: Redis
}

/** One application instance: its own Fastify and its own Redis client, sharing the Redis server. */
async function instance (
  test: Test,
  options: Partial<LanggraphWebhooksOptions> & { prefix: string, timeoutMs?: number, leaseMs?: number },
  logger?: object
): Promise<Instance> {
  const { prefix, timeoutMs = 300, leaseMs, ...rest } = options
  const client = await connect(test)
  const app = Fastify(logger === undefined ? {} : { logger })
  await app.register(plugin, {
    token,
    dedupe: { store: createRedisDedupeStore(client, { prefix, timeoutMs }), leaseMs, ttlMs: 60_000 },
    ...rest
  })
  test.teardown(() => app.close())
  return { app, client }
}

async function until (condition: () => boolean | Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('condition not reached in time')
    await sleep(10)
  }
}

t.test('two instances sharing one Redis: the same payload delivered to both concurrently, 100 times', async (t) => {
  const shared = prefix()
  const calls = new Map<string, number>()
  let running = 0
  let maxRunning = 0
  const onRun = async (run: { run_id: string }) => {
    calls.set(run.run_id, (calls.get(run.run_id) ?? 0) + 1)
    maxRunning = Math.max(maxRunning, ++running)
    await sleep(5)
    running--
  }
  const a = await instance(t, { prefix: shared, onRun })
  const b = await instance(t, { prefix: shared, onRun })

  const runs = Array.from({ length: 100 }, () => buildRunWebhook())
  const codes = new Map<number, number>()
  // Like the Python sender: a 503 is retried (here at once, after the first try settled) until acknowledged.
  await Promise.all(runs.map(async (run) => {
    const payload = JSON.stringify(run)
    const first = await Promise.all([a.app, b.app].map((app) => deliverRun(app, payload, { token })))
    for (let attempt = 0, replies = first; ; attempt++) {
      for (const reply of replies) codes.set(reply.statusCode, (codes.get(reply.statusCode) ?? 0) + 1)
      const retry = replies.filter((reply) => reply.statusCode !== 204)
      if (retry.length === 0) return
      t.ok(retry.every((reply) => reply.statusCode === 503 && reply.headers['retry-after'] === String(RETRY_AFTER_SECONDS)))
      if (attempt === 50) throw new Error(`run ${run.run_id} never acknowledged`)
      await sleep(10)
      replies = await Promise.all(retry.map((_, i) => deliverRun(i % 2 === 0 ? b.app : a.app, payload, { token })))
    }
  }))

  t.equal(calls.size, 100)
  t.ok([...calls.values()].every((count) => count === 1), 'listeners called exactly once per run')
  t.ok(maxRunning <= 100)
  t.same([...codes.keys()].filter((code) => code !== 204 && code !== 503), [], 'only 204 and 503 replies')
  t.ok((codes.get(503) ?? 0) > 0, 'some duplicates arrived while the first was in flight')

  // Every key is marked done, under the prefix, for ttlMs (the relay's keys for waitForRun sit beside them).
  const keys = (await a.client.keys(`${shared}*`)).filter((key) => !key.startsWith(`${shared}{relay}:`))
  t.equal(keys.length, 100)
  t.same(new Set(await a.client.mget(keys)), new Set(['done']))
  const ttl = await a.client.pttl(keys[0]!)
  t.ok(ttl > 50_000 && ttl <= 60_000, `done mark kept for ttlMs (pttl ${ttl})`)
})

t.test('a failing listener, then a retry on the other instance that succeeds', async (t) => {
  const shared = prefix()
  let calls = 0
  const onRun = async () => {
    calls++
    if (calls === 1) throw new Error('downstream API failed')
  }
  const a = await instance(t, { prefix: shared, onRun })
  const b = await instance(t, { prefix: shared, onRun })
  const run = buildRunWebhook({ status: 'error', error: 'graph failed' })
  const key = `${shared}{dedupe}:${run.run_id}:error`

  const first = await deliverRun(a.app, run, { token })
  t.equal(first.statusCode, 500)
  t.equal(await a.client.exists(key), 0, 'a failure leaves no mark: the key is released')
  const retry = await deliverRun(b.app, run, { token })
  t.equal(retry.statusCode, 204)
  t.equal(calls, 2)
  t.equal(await a.client.get(key), 'done')
  t.equal((await deliverRun(a.app, run, { token })).statusCode, 204)
  t.equal((await deliverRun(b.app, run, { token })).statusCode, 204)
  t.equal(calls, 2, 'handled: later duplicates do not run the listeners')
})

t.test("a crashed instance's lease expires, and its late release touches nothing", async (t) => {
  const shared = prefix()
  let calls = 0
  let gate = Promise.resolve()
  const b = await instance(t, { prefix: shared, onRun: async () => { calls++; await gate } })
  const run = buildRunWebhook()
  const key = `${run.run_id}:success`

  // Instance "crashed" reserved the key, then died before completing or releasing.
  const crashedClient = await connect(t)
  const crashed = createRedisDedupeStore(crashedClient, { prefix: shared })
  t.equal(await crashed.reserve(key, 400, 'crashed-owner'), 'reserved')
  crashedClient.disconnect()

  const blocked = await deliverRun(b.app, run, { token })
  t.equal(blocked.statusCode, 503, 'the lease is held: the sender is asked to retry')
  t.equal(blocked.headers['retry-after'], String(RETRY_AFTER_SECONDS))
  t.equal(calls, 0)
  const pttl = await b.client.pttl(`${shared}{dedupe}:${key}`)
  t.ok(pttl > 0 && pttl <= 400, `the lease has a TTL (pttl ${pttl})`)

  await until(async () => (await b.client.exists(`${shared}{dedupe}:${key}`)) === 0)
  let open!: () => void
  gate = new Promise((resolve) => { open = resolve })
  const taken = deliverRun(b.app, run, { token })
  await until(() => calls === 1)

  // The crashed holder comes back and releases "its" reservation: it is not its own any more.
  const late = createRedisDedupeStore(await connect(t), { prefix: shared })
  await late.release(key, 'crashed-owner')
  t.equal((await deliverRun(b.app, run, { token })).statusCode, 503, "the new holder's lease is intact")
  open()
  t.equal((await taken).statusCode, 204)
  await late.release(key, 'crashed-owner')
  t.equal((await deliverRun(b.app, run, { token })).statusCode, 204)
  t.equal(calls, 1, 'a release never erases a done mark')
})

t.test('the store API', async (t) => {
  const client = await connect(t)
  const p = prefix()
  const store = createRedisDedupeStore(client, { prefix: p })

  t.equal(await store.reserve('k', 1000), 'reserved', 'without an owner: the store is the owner')
  t.equal(await store.reserve('k', 1000), 'in-flight')
  t.match(await client.get(`${p}{dedupe}:k`), /^lease:/)
  await store.release('k', 'someone-else')
  t.equal(await store.reserve('k', 1000, 'x'), 'in-flight')
  await store.release('k')
  t.equal(await store.reserve('k', 1000, 'x'), 'reserved')
  await store.complete('k', 5000)
  t.equal(await store.reserve('k', 1000, 'y'), 'done')
  await store.release('k', 'x')
  t.equal(await client.get(`${p}{dedupe}:k`), 'done', 'release leaves a done mark alone')

  // Scripts live in Redis' cache only: after SCRIPT FLUSH (or a restart) the store sends them again.
  await client.script('FLUSH')
  t.equal(await store.reserve('fresh', 1000, 'z'), 'reserved')
  await client.script('FLUSH')
  await store.release('fresh', 'z')
  t.equal(await client.exists(`${p}{dedupe}:fresh`), 0)

  // A Redis error (here: the key holds another type) rejects; the delivery would get 503.
  await client.hset(`${p}{dedupe}:wrong`, 'field', 'value')
  await t.rejects(Promise.resolve(store.reserve('wrong', 1000, 'o')), /WRONGTYPE/)

  // Default prefix.
  const plain = createRedisDedupeStore(client)
  const id = randomUUID()
  t.equal(await plain.reserve(id, 1000), 'reserved')
  t.equal(await client.exists(`${DEFAULT_REDIS_PREFIX}{dedupe}:${id}`), 1)
  await plain.release(id)
  t.equal(await client.exists(`${DEFAULT_REDIS_PREFIX}{dedupe}:${id}`), 0)
})

t.test('options are checked', async (t) => {
  const client = await connect(t)
  t.throws(() => createRedisDedupeStore(null as unknown as Redis), /ioredis client/)
  t.throws(() => createRedisDedupeStore({} as Redis), /ioredis client/)
  t.throws(() => createRedisDedupeStore(client, { prefix: 1 } as unknown as RedisDedupeStoreOptions), /prefix must be a string/)
  for (const timeoutMs of [0, -1, 1.5, Infinity]) {
    t.throws(() => createRedisDedupeStore(client, { timeoutMs }), /timeoutMs must be a positive integer/)
  }
})

t.test('Redis unresponsive: operations time out (503), and a late reservation is undone', async (t) => {
  const shared = prefix()
  let calls = 0
  const sink = logSink('error')
  const { app, client } = await instance(t, { prefix: shared, timeoutMs: 150, onRun: () => { calls++ } }, sink.logger)
  const admin = await connect(t)
  const run = buildRunWebhook()
  const key = `${shared}{dedupe}:${run.run_id}:success`

  await admin.client('PAUSE', 700, 'ALL')
  const started = Date.now()
  const reply = await deliverRun(app, run, { token })
  t.equal(reply.statusCode, 503)
  t.equal(reply.json().code, 'FST_LANGGRAPH_WEBHOOKS_DEDUPE_UNAVAILABLE')
  t.ok(Date.now() - started < 600, 'answered after timeoutMs, not after the pause')
  t.equal(calls, 0, 'listeners never run unguarded')
  const logged = sink.lines.find((line) => line.msg === 'dedupe store failed to reserve a run webhook')
  t.match(logged?.err.message, /reserve took longer than 150 ms/)
  t.equal(logged?.err.code, new RedisDedupeStoreError('').code)

  // When Redis answers again, the queued reservation runs and the release queued behind it undoes it.
  await client.ping()
  t.equal(await admin.exists(key), 0, 'no stale lease left behind')
  t.equal((await deliverRun(app, run, { token })).statusCode, 204)
  t.equal(calls, 1)

  // complete timing out: the listeners ran, so 204 (logged); the late SET still marks the run done.
  const next = buildRunWebhook()
  app.langgraphWebhooks.onRun(async (r) => { if (r.run_id === next.run_id) await admin.client('PAUSE', 500, 'ALL') })
  t.equal((await deliverRun(app, next, { token })).statusCode, 204)
  t.ok(sink.lines.some((line) => line.msg === 'dedupe store failed to complete a run webhook' && /complete took longer/.test(line.err.message)))
  await client.ping()
  t.equal(await admin.get(`${shared}{dedupe}:${next.run_id}:success`), 'done')
})

t.test('Redis stopped mid-test: 503 while it is down, listeners never run, deliveries succeed once it is back', async (t) => {
  const shared = prefix()
  const calls = new Map<string, number>()
  const sink = logSink('error')
  const onRun = async (run: { run_id: string }) => { calls.set(run.run_id, (calls.get(run.run_id) ?? 0) + 1) }
  const a = await instance(t, { prefix: shared, onRun }, sink.logger)
  const b = await instance(t, { prefix: shared, onRun })
  const before = buildRunWebhook()
  t.equal((await deliverRun(a.app, before, { token })).statusCode, 204)

  await server.stop()
  await Promise.all([a, b].map(({ client }) => client.status === 'reconnecting' ? undefined : once(client, 'reconnecting')))

  const during = buildRunWebhook()
  for (let i = 0; i < 3; i++) {
    for (const { app } of [a, b]) {
      const reply = await deliverRun(app, during, { token })
      t.equal(reply.statusCode, 503)
      t.equal(reply.json().code, 'FST_LANGGRAPH_WEBHOOKS_DEDUPE_UNAVAILABLE')
    }
    await sleep(30)
  }
  t.equal(calls.get(during.run_id), undefined, 'listeners never ran while Redis was down')
  t.ok(sink.lines.some((line) => /Redis is unreachable/.test(line.err?.message)), 'the cause is logged')

  await server.start()
  await until(() => a.client.status === 'ready' && b.client.status === 'ready')
  // Redis restarted empty (no persistence): scripts are sent again, keys are gone.
  const replies = await Promise.all([a.app, b.app].map((app) => deliverRun(app, during, { token })))
  t.ok(replies.some((reply) => reply.statusCode === 204))
  t.ok(replies.every((reply) => reply.statusCode === 204 || reply.statusCode === 503))
  t.equal((await deliverRun(b.app, during, { token })).statusCode, 204)
  t.equal(calls.get(during.run_id), 1)
  t.equal(calls.get(before.run_id), 1)
})
