// The plugin's `redis` option: one Redis for dedupe, the queue, tracked runs
// and waitForRun across instances, given as a client or as a URL.
import t, { type Test } from 'tap'
import { createRequire } from 'node:module'
import Fastify, { type FastifyInstance } from 'fastify'
import type { Redis } from 'ioredis'
import plugin, { type DedupeStore, type LanggraphWebhooksOptions } from '../lib/index.js'
import { createMemoryDedupeStore } from '../lib/dedupe/memory.js'
import { createRedisDedupeStore } from '../lib/dedupe/redis.js'
import { buildRunWebhook, deliverRun } from '../lib/testing.js'
import { logSink } from './helpers/log.js'
import { connect, queueName, token, until } from './helpers/queue.js'
import { freePort, startRedisServer } from './helpers/redis-server.js'

const server = await startRedisServer()
t.teardown(() => server.stop())

// The SDK's CommonJS build (see examples/langgraph-server.ts for why); no call reaches a server here.
const { Client } = createRequire(import.meta.url)('@langchain/langgraph-sdk') as typeof import('@langchain/langgraph-sdk')
const webhookUrl = 'https://api.example.com/webhooks/langgraph'

/** A LangGraph client whose runs.create answers without a server. */
function sdk (runId: string) {
  const client = new Client({ apiUrl: 'http://127.0.0.1:9' })
  client.runs.create = (async (threadId: string, assistantId: string) => {
    const now = new Date().toISOString()
    return { run_id: runId, thread_id: threadId, assistant_id: assistantId, created_at: now, updated_at: now, status: 'pending' }
  }) as never
  return client
}

async function app (t: Test, options: Partial<LanggraphWebhooksOptions>): Promise<{ app: FastifyInstance, handled: string[], lines: Array<Record<string, any>> }> {
  const { lines, logger } = logSink('info')
  const instance = Fastify({ logger })
  t.teardown(() => instance.close())
  await instance.register(plugin, { token, ...options })
  const handled: string[] = []
  instance.langgraphWebhooks.onRun((run) => { handled.push(run.run_id) })
  await instance.ready()
  return { app: instance, handled, lines }
}

async function flushed (t: Test): Promise<Redis> {
  const client = await connect(t, server)
  await client.flushall()
  return client
}

t.test('redis as a client, dedupe: true: a delivery handled by one instance is a duplicate on the other', async (t) => {
  const client = await flushed(t)
  const a = await app(t, { redis: client, dedupe: true })
  const b = await app(t, { redis: client, dedupe: true })
  const run = buildRunWebhook()
  t.equal((await deliverRun(a.app, run, { token })).statusCode, 204)
  t.equal((await deliverRun(b.app, run, { token })).statusCode, 204)
  t.same([a.handled, b.handled], [[run.run_id], []], 'the listeners ran once, on the first instance')
  t.same(await client.keys('langgraph-webhooks:{dedupe}:*'), [`langgraph-webhooks:{dedupe}:${run.run_id}:success`], 'the key in the dedupe namespace')
  await a.app.close()
  t.equal(client.status, 'ready', 'the client stays the application\'s')
})

t.test('redis as a URL: the plugin makes its own client for dedupe, and closes it with the app', async (t) => {
  const client = await flushed(t)
  const a = await app(t, { redis: server.url, dedupe: { ttlMs: 60_000 } })
  const b = await app(t, { redis: server.url, dedupe: true })
  const run = buildRunWebhook()
  t.equal((await deliverRun(a.app, run, { token })).statusCode, 204)
  t.equal((await deliverRun(b.app, run, { token })).statusCode, 204)
  t.same([a.handled, b.handled], [[run.run_id], []])
  const clients = async (): Promise<number> => (await client.call('CLIENT', 'LIST') as string).trim().split('\n').length
  const before = await clients()
  await a.app.close()
  await b.app.close()
  t.ok(await clients() < before, 'their clients are gone')
})

t.test('redis with queue: the queue needs no connection of its own', async (t) => {
  const client = await flushed(t)
  const a = await app(t, { redis: client, queue: { name: queueName(), worker: false } })
  t.equal((await deliverRun(a.app, buildRunWebhook(), { token })).statusCode, 202)
  t.match(await a.app.langgraphWebhooks.queue.counts(), { waiting: 1 }, 'stored in the redis option\'s Redis')
  const same = await app(t, { redis: client, queue: { connection: client, name: queueName(), worker: false } })
  t.ok(same.app.langgraphWebhooks, 'the same client given twice is fine')
})

t.test('redis and another queue.connection are refused; queue without either says what to give', async (t) => {
  const client = await connect(t, server)
  await t.rejects(async () => { await Fastify().register(plugin, { token, redis: client, queue: { connection: server.url } }) }, {
    code: 'FST_LANGGRAPH_WEBHOOKS_INVALID_OPTION',
    message: 'redis and queue.connection are both given: give Redis once, as redis, and leave queue.connection out'
  })
  await t.rejects(async () => { await Fastify().register(plugin, { token, queue: {} }) }, { message: /^queue.connection is required: .* \(or give it as the plugin's redis option\)$/ })
  await t.rejects(async () => { await Fastify().register(plugin, { token, redis: 'localhost:6379' }) }, { message: /^redis must be an ioredis client .*, got a string that is not a redis:\/\/ URL$/ })
  await t.rejects(async () => { await Fastify().register(plugin, { token, redis: 6379 as never }) }, { message: /^redis must be an ioredis client/ })
})

t.test('redis with langgraph: started runs are tracked in Redis, and a waiter on one instance gets a delivery to the other', async (t) => {
  const client = await flushed(t)
  const runId = buildRunWebhook().run_id
  const a = await app(t, { redis: server.url, langgraph: { client: sdk(runId), webhookUrl } })
  const b = await app(t, { redis: client })
  await a.app.langgraphWebhooks.runs.create('thread-1', 'agent')
  t.same(await client.zrange('langgraph-webhooks:{runs}:due', '0', '-1'), [runId], 'tracked in Redis')
  const waiting = a.app.langgraphWebhooks.waitForRun(runId, { timeoutMs: 20_000 })
  t.equal((await deliverRun(b.app, buildRunWebhook({ run_id: runId }), { token })).statusCode, 204)
  t.equal((await waiting).run_id, runId, 'resolved by the other instance\'s delivery')
})

t.test('a Redis dedupe store tells its Redis explicitly (store.redis): waitForRun works across instances without the redis option', async (t) => {
  const client = await flushed(t)
  const store = createRedisDedupeStore(client, { prefix: 'app:' })
  t.equal(store.redis.client, client)
  t.equal(store.redis.prefix, 'app:')
  const a = await app(t, { dedupe: { store } })
  const b = await app(t, { dedupe: { store: createRedisDedupeStore(client, { prefix: 'app:' }) } })
  const run = buildRunWebhook()
  const waiting = a.app.langgraphWebhooks.waitForRun(run.run_id, { timeoutMs: 20_000 })
  t.equal((await deliverRun(b.app, run, { token })).statusCode, 204)
  t.equal((await waiting).run_id, run.run_id)
})

t.test('a custom store that tells no Redis, with langgraph: tracking in this process, said once at registration', async (t) => {
  const custom: DedupeStore = { ...createMemoryDedupeStore() }
  const { lines } = await app(t, { dedupe: { store: custom }, langgraph: { client: sdk('r'), webhookUrl } })
  t.match(lines.filter((line) => /tracked in this process only/.test(line.msg)), [{ level: 30 }])
  t.equal(lines.filter((line) => /tracked in this process only/.test(line.msg)).length, 1)
  const withRedis = await app(t, { redis: await connect(t, server), dedupe: { store: custom }, langgraph: { client: sdk('r'), webhookUrl } })
  t.notOk(withRedis.lines.some((line) => /tracked in this process only/.test(line.msg)), 'not with redis: the custom store dedupes, Redis tracks')
})

t.test('redis as a URL nobody answers: deliveries are 503 with Retry-After, the failing client is reported by its users, and close does not hang', async (t) => {
  const down = `redis://127.0.0.1:${await freePort()}`
  const a = await app(t, { redis: down, dedupe: true })
  // Once the client is reconnecting (its connection error was handled), deliveries fail at once.
  await until(async () => {
    const reply = await deliverRun(a.app, buildRunWebhook(), { token })
    t.equal(reply.statusCode, 503)
    t.ok(reply.headers['retry-after'])
    return a.lines.some((line) => /client reconnecting/.test(JSON.stringify(line)))
  }, 20_000, 'a delivery refused while reconnecting')
  t.same(a.handled, [], 'no listener ran unguarded')
  await a.app.close()
})
