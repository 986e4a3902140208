// Instances sharing one Redis (through a Redis dedupe store), against the real
// LangGraph JS server: a delivery received by one instance resolves waiters on
// every instance, and tracked runs are reconciled by whichever instance is up.
import t from 'tap'
import { randomBytes, randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import Fastify, { type FastifyInstance } from 'fastify'
import { Redis } from 'ioredis'
import langgraphWebhooks, { serializeRequest, type RunWebhook } from '../../lib/index.js'
import { createRedisDedupeStore } from '../../lib/dedupe/redis.js'
import { buildRunWebhook, deliverRun } from '../../lib/testing.js'
import { startRedisServer } from '../helpers/redis-server.js'
import { startLangGraphServer } from '../../examples/langgraph-server.js'
import { freePort } from '../helpers/redis-server.js'

const token = randomBytes(32).toString('hex')
const redis = await startRedisServer()
t.teardown(() => redis.stop())
const lg = await startLangGraphServer({ nWorkers: 3 })
t.teardown(() => lg.close())
const { client, graphId } = lg
const lines: string[] = []

interface Instance {
  app: FastifyInstance
  seen: Array<{ run: RunWebhook, reconciled: boolean }>
  url: string
  connection: Redis
}

/** One application instance: its own Fastify and Redis client; `webhookUrl` where its runs' webhooks go (itself by default). */
async function instance (prefix: string, options: { webhookUrl?: (own: string) => string, redactToken?: boolean, redisUser?: string } = {}): Promise<Instance> {
  const port = await freePort()
  const own = `http://127.0.0.1:${port}/webhooks/langgraph`
  const connection = new Redis(redis.port, '127.0.0.1', options.redisUser === undefined ? {} : { username: options.redisUser, password: 'x' })
  t.teardown(() => connection.disconnect())
  const app = Fastify({ logger: { level: 'info', serializers: { req: serializeRequest }, stream: { write: (line: string) => { lines.push(line) } } } })
  app.post('/nowhere', async (request, reply) => reply.code(404).send())
  await app.register(langgraphWebhooks, {
    token,
    redactToken: options.redactToken,
    dedupe: { store: createRedisDedupeStore(connection, { prefix }) },
    langgraph: { client, webhookUrl: options.webhookUrl?.(own) ?? own, reconcileAfterMs: 300, reconcileEveryMs: 150 }
  })
  const seen: Instance['seen'] = []
  app.langgraphWebhooks.onRun((run, { reconciled }) => { seen.push({ run: structuredClone(run), reconciled }) })
  await app.listen({ port, host: '127.0.0.1' })
  t.teardown(() => app.close())
  return { app, seen, url: own, connection }
}

t.test('waitForRun across two instances: a webhook received by one resolves the waiters of the other', async (t) => {
  const prefix = `test:${randomUUID()}:`
  const a = await instance(prefix)
  const b = await instance(prefix, { webhookUrl: () => a.url })
  const thread = await client.threads.create()
  const run = await b.app.langgraphWebhooks.runs.create(thread.thread_id, graphId, { input: { messages: ['across'] } })
  const [onA, onB] = await Promise.all([a.app.langgraphWebhooks.waitForRun(run.run_id), b.app.langgraphWebhooks.waitForRun(run.run_id)])
  t.same(onB, onA, 'B got the run that A received')
  t.same(onB.values, { messages: ['across', 'echo:1'] })
  t.notOk(JSON.stringify(onB).includes(token))
  // Waiters resolve as the delivery enters, before the listeners run. Its
  // webhook reaches A; on a slow machine B's reconciliation may come first,
  // and then the webhook is refused: either way one delivery is handled.
  while (a.seen.length + b.seen.length === 0) await sleep(10)
  const handled = [...a.seen, ...b.seen]
  t.same(handled.map((s) => s.run.run_id), [run.run_id], 'one instance\'s listeners handled it')
  t.same(handled[0]!.run, onA, 'the run both waiters got')
  t.equal((await b.app.langgraphWebhooks.waitForRun(run.run_id)).run_id, run.run_id, 'a late call on B resolves from B\'s memory of the last minute')
  // Once B's tracking of the run has ended, nothing delivers it again.
  while (await b.connection.exists(`${prefix}{runs}:run:${run.run_id}`) === 1) await sleep(20)
  await sleep(600)
  t.equal(a.seen.length + b.seen.length, 1, 'the run B tracked was handled once: B does not reconcile it again')
})

t.test('the relay masks the token even when redactToken is off; an instance ignores its own messages and junk', async (t) => {
  const prefix = `test:${randomUUID()}:`
  const a = await instance(prefix, { redactToken: false })
  const b = await instance(prefix)
  const body = buildRunWebhook({ kwargs: { webhook: `${a.url}?token=${token}` } })
  const publisher = new Redis(redis.port, '127.0.0.1')
  t.teardown(() => publisher.disconnect())
  await publisher.publish(`${prefix}{relay}:delivered`, 'not json')
  await publisher.publish(`${prefix}{relay}:delivered`, JSON.stringify({ from: 'x', run_id: body.run_id }))
  const waiting = b.app.langgraphWebhooks.waitForRun(body.run_id)
  let local: RunWebhook | undefined
  a.app.langgraphWebhooks.onRun((run) => { local = run })
  t.equal((await deliverRun(a.app, body, { token })).statusCode, 204)
  t.ok(local!.kwargs.webhook!.includes(token), 'A\'s listeners see the token, as redactToken: false asks')
  t.equal((await waiting).kwargs.webhook, `${a.url}?token=[REDACTED]`, 'B gets it masked')
})

t.test('a run started by an instance that then stops is reconciled by another, once', async (t) => {
  const prefix = `test:${randomUUID()}:`
  const nowhere = (own: string): string => own.replace('/webhooks/langgraph', '/nowhere')
  const starter = await instance(prefix, { webhookUrl: nowhere })
  const [b, c] = await Promise.all([instance(prefix, { webhookUrl: nowhere }), instance(prefix, { webhookUrl: nowhere })])
  const thread = await client.threads.create()
  const run = await starter.app.langgraphWebhooks.runs.create(thread.thread_id, graphId, { input: { messages: ['sleep:400'] } })
  await starter.app.close()
  const delivered = await b.app.langgraphWebhooks.waitForRun(run.run_id, { timeoutMs: 10_000 })
  t.equal(delivered.status, 'success')
  t.same(delivered.values, { messages: ['sleep:400', 'echo:1'] })
  await sleep(600)
  const reconciled = [...b.seen, ...c.seen].filter((s) => s.run.run_id === run.run_id)
  t.same(reconciled.map((s) => s.reconciled), [true], 'delivered once, by one of the two instances left')
  t.same(starter.seen, [])
})

t.test('Redis unreachable: a webhook is answered 503, and the instance works again once Redis is back', async (t) => {
  const prefix = `test:${randomUUID()}:`
  const a = await instance(prefix)
  const thread = await client.threads.create()
  await redis.stop()
  const started = await a.app.langgraphWebhooks.runs.create(thread.thread_id, graphId, { input: { messages: ['untracked'] } })
  t.ok(started.run_id, 'a run still starts')
  t.ok(lines.some((line) => line.includes(started.run_id) && line.includes('could not track a started run')), 'its tracking failed, and that is logged')
  const reply = await deliverRun(a.app, buildRunWebhook(), { token })
  t.equal(reply.statusCode, 503, 'the sender is asked to retry (a JS server does not: the run is then reconciled)')
  t.equal(reply.headers['retry-after'], '5')
  t.equal(reply.json().code, 'FST_LANGGRAPH_WEBHOOKS_TRACKER_UNAVAILABLE')
  await redis.start()
  await a.connection.ping()
  const run = await a.app.langgraphWebhooks.runs.create((await client.threads.create()).thread_id, graphId, { input: { messages: ['back'] } })
  t.equal((await a.app.langgraphWebhooks.waitForRun(run.run_id, { timeoutMs: 10_000 })).status, 'success')
  await sleep(100)
  t.ok(a.seen.some((s) => s.run.run_id === run.run_id && !s.reconciled), 'handled by its webhook')
})

t.test('the store of tracked runs failing during a check: logged, the loop goes on', async (t) => {
  const admin = new Redis(redis.port, '127.0.0.1')
  t.teardown(() => admin.disconnect())
  const user = `no-exists-${randomUUID()}`
  await admin.call('ACL', 'SETUSER', user, 'on', 'nopass', '~*', '&*', '+@all', '-exists')
  const a = await instance(`test:${randomUUID()}:`, { redisUser: user, webhookUrl: (own) => own.replace('/webhooks/langgraph', '/nowhere') })
  const thread = await client.threads.create()
  const run = await a.app.langgraphWebhooks.runs.create(thread.thread_id, graphId, { input: { messages: ['sleep:1000'] } })
  const deadline = Date.now() + 5000
  const failed = (): boolean => lines.some((line) => line.includes(run.run_id) && line.includes('failed during a reconciliation check'))
  while (!failed() && Date.now() < deadline) await sleep(20)
  t.ok(failed(), 'rescheduling the running run failed (Redis refused EXISTS), and that is logged')
})

t.test('the token is in no log line', async (t) => {
  t.ok(lines.length > 0)
  t.same(lines.filter((line) => line.includes(token)), [])
})
