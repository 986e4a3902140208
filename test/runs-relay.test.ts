// waitForRun across instances sharing one redis-server: what is relayed
// (accepted deliveries, by run id; with the queue, the jobs Redis has), that
// relaying large bodies does not slow deliveries down, and that a late caller
// on another instance finds a delivery of the last minute.
import t, { type Test } from 'tap'
import { spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { once } from 'node:events'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import Fastify, { type FastifyInstance } from 'fastify'
import { Redis } from 'ioredis'
import plugin, { type RunWebhook } from '../lib/index.js'
import { createRedisDedupeStore } from '../lib/dedupe/redis.js'
import { buildRunWebhook, deliverRun } from '../lib/testing.js'
import { jobIdOf } from '../lib/queue/index.js'
import { logSink } from './helpers/log.js'
import { connect, instance, nodeArgs, queueName, token, until } from './helpers/queue.js'
import { startRedisServer } from './helpers/redis-server.js'

// Forty 9 MiB bodies, sent and parsed on a loaded 2-core machine, take their time.
t.setTimeout(240_000)
const server = await startRedisServer()
t.teardown(() => server.stop())
const fixture = fileURLToPath(new URL('./fixtures/relay-instance.ts', import.meta.url))

interface DedupeInstance {
  app: FastifyInstance
  client: Redis
  lines: Array<Record<string, any>>
}

/** An instance with a Redis dedupe store under `prefix`, on a client of its own. */
async function dedupeInstance (t: Test, prefix: string, options: { redactToken?: boolean } = {}): Promise<DedupeInstance> {
  const client = await connect(t, server)
  const { lines, logger } = logSink('info')
  const app = Fastify({ logger })
  t.teardown(() => app.close())
  await app.register(plugin, { token, ...options, dedupe: { store: createRedisDedupeStore(client, { prefix }) } })
  await app.ready()
  return { app, client, lines }
}

function withToken (run: RunWebhook): RunWebhook {
  return { ...run, kwargs: { ...run.kwargs, webhook: `https://app.example/webhooks/langgraph?token=${token}` } }
}

t.test('40 concurrent 9 MiB deliveries with a Redis dedupe store: all 204, and a waiter on another instance gets its run', async (t) => {
  const prefix = `test:${randomUUID()}:`
  // The delivering instance in a process of its own, so that sending the bodies takes nothing from it.
  const child = spawn(process.execPath, nodeArgs(fixture), {
    env: { ...process.env, REDIS_URL: server.url, PREFIX: prefix, TOKEN: token },
    stdio: ['ignore', 'pipe', 'inherit']
  })
  t.teardown(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return
    const exited = once(child, 'exit')
    child.kill('SIGTERM')
    await exited
  })
  const [line] = await once(createInterface({ input: child.stdout! }), 'line') as [string]
  const base = `http://127.0.0.1:${(JSON.parse(line) as { port: number }).port}`
  const b = await dedupeInstance(t, prefix)
  const large = 'x'.repeat(9 * 2 ** 20)
  const runs = Array.from({ length: 40 }, () => buildRunWebhook({ values: { messages: [large] } }))
  const bodies = runs.map((run) => Buffer.from(JSON.stringify(run)))
  const awaited = runs[20]
  const waiting = b.app.langgraphWebhooks.waitForRun(awaited.run_id, { timeoutMs: 120_000 })
  const statuses = await Promise.all(bodies.map(async (body) => {
    const reply = await fetch(`${base}/webhooks/langgraph?token=${token}`, { method: 'POST', headers: { 'content-type': 'text/plain;charset=UTF-8' }, body })
    return reply.status
  }))
  t.same(statuses, runs.map(() => 204), 'every delivery answered 204')
  t.same(await (await fetch(`${base}/handled`)).json(), { handled: 40 })
  const got = await waiting
  t.equal(got.run_id, awaited.run_id)
  t.equal((got.values as { messages: string[] }).messages[0].length, large.length, 'with its values')
})

t.test('a late caller on another instance finds a delivery of the last minute; what is kept in Redis has the token masked', async (t) => {
  const prefix = `test:${randomUUID()}:`
  const a = await dedupeInstance(t, prefix, { redactToken: false })
  const run = withToken(buildRunWebhook())
  t.equal((await deliverRun(a.app, run, { token })).statusCode, 204)
  // Started after the delivery: it never heard of it.
  const b = await dedupeInstance(t, prefix)
  const got = await b.app.langgraphWebhooks.waitForRun(run.run_id, { timeoutMs: 5000 })
  t.equal(got.run_id, run.run_id)
  t.equal(got.kwargs.webhook, 'https://app.example/webhooks/langgraph?token=[REDACTED]')
  const keys = await a.client.keys(`${prefix}*`)
  t.ok(keys.length > 0)
  for (const key of keys) {
    const value = await a.client.type(key) === 'string' ? await a.client.get(key) : ''
    t.notOk(value!.includes(token), `${key} holds no token`)
  }
  t.notOk(b.lines.some((line) => JSON.stringify(line).includes(token)), 'no log line holds the token')
})

t.test('with the queue, a late caller on another instance finds a stored run in its job', async (t) => {
  const name = queueName()
  const a = await instance(t, server, { name, worker: false })
  await a.app.ready()
  const run = withToken(buildRunWebhook())
  t.equal((await deliverRun(a.app, run, { token })).statusCode, 202)
  const b = await instance(t, server, { name, worker: false })
  await b.app.ready()
  const got = await b.app.langgraphWebhooks.waitForRun(run.run_id, { timeoutMs: 5000 })
  t.equal(got.run_id, run.run_id)
  t.equal(got.kwargs.webhook, 'https://app.example/webhooks/langgraph?token=[REDACTED]')
})

t.test('with the queue, waiters on another instance resolve once Redis has the job: a delivery refused with 503 whose job still landed too, and its retry is a duplicate', async (t) => {
  const name = queueName()
  const a = await instance(t, server, { name, worker: false, addTimeoutMs: 300 })
  const b = await instance(t, server, { name, worker: false })
  await a.app.ready()
  await b.app.ready()
  const refused = withToken(buildRunWebhook())
  const accepted = withToken(buildRunWebhook())
  const onRefused = b.app.langgraphWebhooks.waitForRun(refused.run_id, { timeoutMs: 60_000 })
  server.pause()
  let reply
  try {
    reply = await deliverRun(a.app, refused, { token })
  } finally {
    server.resume()
  }
  t.equal(reply.statusCode, 503, 'Redis did not take the job in time')
  t.equal((await onRefused).run_id, refused.run_id, 'the job reached Redis once it answered again: the waiter resolves')
  t.equal((await deliverRun(a.app, refused, { token })).statusCode, 202)
  t.ok(a.lines.some((line) => line.msg === 'duplicate run webhook acknowledged: the run is already queued'), 'the sender\'s retry is a duplicate')
  const onAccepted = b.app.langgraphWebhooks.waitForRun(accepted.run_id, { timeoutMs: 10_000 })
  t.equal((await deliverRun(a.app, accepted, { token })).statusCode, 202)
  t.equal((await onAccepted).run_id, accepted.run_id)
})

t.test('with the queue, a run id holding the characters its job id escapes resolves a waiter on another instance', async (t) => {
  const name = queueName()
  const a = await instance(t, server, { name, worker: false })
  const b = await instance(t, server, { name, worker: false })
  await a.app.ready()
  await b.app.ready()
  const run = buildRunWebhook({ run_id: 'a:b{c}%d.e\uD800' })
  const waiting = b.app.langgraphWebhooks.waitForRun(run.run_id, { timeoutMs: 30_000 })
  t.equal((await deliverRun(a.app, run, { token })).statusCode, 202)
  t.equal((await waiting).run_id, run.run_id)
})

t.test('with the queue, an instance whose events stream cannot be read logs it, and reads it again once it can', async (t) => {
  const name = queueName()
  const admin = await connect(t, server)
  // Not a stream: every read of it fails.
  await admin.set(`bull:${name}:events`, 'not a stream')
  const b = await instance(t, server, { name, worker: false })
  await b.app.ready()
  await until(() => b.lines.some((line) => /could not read the queue's events/.test(line.msg)), 30_000, 'the failed read logged')
  await admin.del(`bull:${name}:events`)
  const a = await instance(t, server, { name, worker: false })
  await a.app.ready()
  const run = buildRunWebhook()
  const waiting = b.app.langgraphWebhooks.waitForRun(run.run_id, { timeoutMs: 30_000 })
  t.equal((await deliverRun(a.app, run, { token })).statusCode, 202)
  t.equal((await waiting).run_id, run.run_id, 'resolved from the stream once it is one again')
})

t.test('junk on the channel or under a run\'s key is ignored, and a run that cannot be read is logged', async (t) => {
  const prefix = `test:${randomUUID()}:`
  const b = await dedupeInstance(t, prefix)
  const admin = await connect(t, server)
  const junk = buildRunWebhook()
  await admin.set(`${prefix}{relay}:run:${junk.run_id}`, 'not json')
  for (const message of ['not json', 'null', '{"run_id":5}', JSON.stringify({ from: 'x', run_id: 'nobody-waits' }), JSON.stringify({ from: 'x', run_id: junk.run_id })]) {
    await admin.publish(`${prefix}{relay}:delivered`, message)
  }
  const waiting = b.app.langgraphWebhooks.waitForRun(junk.run_id, { timeoutMs: 60_000 })
  await until(() => b.lines.some((line) => line.msg.includes('could not read a run delivered to another instance') && line.run_id === junk.run_id), 30_000, 'the unreadable run logged')
  const a = await dedupeInstance(t, prefix)
  t.equal((await deliverRun(a.app, junk, { token })).statusCode, 204)
  t.equal((await waiting).run_id, junk.run_id, 'a real delivery still resolves it')
})

t.test('with the queue, an added event naming a job that is gone resolves nothing', async (t) => {
  const name = queueName()
  const b = await instance(t, server, { name, worker: false })
  await b.app.ready()
  const run = buildRunWebhook()
  const waiting = t.rejects(b.app.langgraphWebhooks.waitForRun(run.run_id, { timeoutMs: 2000 }), { code: 'FST_LANGGRAPH_WEBHOOKS_WAIT_TIMEOUT' })
  await b.client.xadd(`bull:${name}:events`, '*', 'event', 'added', 'jobId', jobIdOf(run.run_id, run.status), 'name', run.status)
  await waiting
})

t.test('with the queue, a job that cannot be read is logged, and resolves nothing', async (t) => {
  const name = queueName()
  const b = await instance(t, server, { name, worker: false })
  await b.app.ready()
  const run = buildRunWebhook()
  await b.client.hset(`bull:${name}:${jobIdOf(run.run_id, run.status)}`, { name: run.status, data: 'not json', opts: '{}', timestamp: Date.now() })
  const waiting = t.rejects(b.app.langgraphWebhooks.waitForRun(run.run_id, { timeoutMs: 2000 }), { code: 'FST_LANGGRAPH_WEBHOOKS_WAIT_TIMEOUT' })
  await until(() => b.lines.some((line) => line.msg.includes('could not read a run delivered to another instance') && line.run_id === run.run_id), 30_000, 'the unreadable job logged')
  await waiting
})

t.test('run ids are escaped in keys: one id cannot name another\'s key', async (t) => {
  const prefix = `test:${randomUUID()}:`
  const a = await dedupeInstance(t, prefix)
  const run = buildRunWebhook({ run_id: 'a:b{c}%d' })
  t.equal((await deliverRun(a.app, run, { token })).statusCode, 204)
  t.same(await a.client.keys(`${prefix}{relay}:*`), [`${prefix}{relay}:run:a%3Ab%7Bc%7D%25d`])
})
