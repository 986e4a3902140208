// Bodies whose `values` nest deeper than JSON.stringify can recurse (JSON.parse
// takes them): validated, they are delivered as is, on every delivery path.
import t from 'tap'
import { Readable } from 'node:stream'
import { randomUUID } from 'node:crypto'
import Fastify from 'fastify'
import plugin, { type RunWebhook } from '../lib/index.js'
import { createRedisDedupeStore } from '../lib/dedupe/redis.js'
import { stringifyIteratively } from '../lib/queue/queue.js'
import { buildRunWebhook } from '../lib/testing.js'
import { buildApp, TOKEN } from './helpers/app.js'
import { logSink } from './helpers/log.js'
import { connect, instance, queueName, token as queueToken, until } from './helpers/queue.js'
import { startRedisServer } from './helpers/redis-server.js'

const DEPTH = 20_000

const server = await startRedisServer()
t.teardown(() => server.stop())

/** A run whose `values` nest `DEPTH` objects, as the body's JSON text. */
function deepBody (token: string): { runId: string, body: string } {
  const run = buildRunWebhook({ kwargs: { webhook: `http://127.0.0.1/webhooks/langgraph?token=${token}` } })
  const shallow = JSON.stringify({ ...run, values: 0 })
  const values = '{"a":'.repeat(DEPTH) + '1' + '}'.repeat(DEPTH)
  return { runId: run.run_id, body: shallow.replace('"values":0', `"values":${values}`) }
}

/** How deep `values` nests, counted without recursion. */
function depthOf (values: unknown): number {
  let depth = 0
  let node = values as { a?: unknown }
  while (typeof node === 'object' && node !== null) {
    depth++
    node = node.a as { a?: unknown }
  }
  return depth
}

function post (app: ReturnType<typeof Fastify>, body: string, token: string, chunked = false) {
  return app.inject({
    method: 'POST',
    url: '/webhooks/langgraph',
    query: { token },
    headers: { 'content-type': 'application/json' },
    // A stream is sent without Content-Length, as a chunked body is.
    payload: chunked ? Readable.from([body]) : body
  })
}

t.test('sent chunked (no Content-Length), waited for: 204, the listener and the waiter get the whole depth', async (t) => {
  const { app } = await buildApp()
  t.teardown(() => app.close())
  const depths: number[] = []
  app.langgraphWebhooks.onRun((run) => { depths.push(depthOf(run.values)) })
  const { runId, body } = deepBody(TOKEN)
  const waiting = app.langgraphWebhooks.waitForRun(runId, { timeoutMs: 10_000 })
  const reply = await post(app, body, TOKEN, true)
  t.equal(reply.raw.req.headers['content-length'], undefined, 'no Content-Length was sent')
  t.equal(reply.statusCode, 204)
  t.same(depths, [DEPTH])
  t.equal(depthOf((await waiting).values), DEPTH)
  const late = await app.langgraphWebhooks.waitForRun(runId, { timeoutMs: 10_000 })
  t.equal(late.run_id, runId, 'a late caller finds it too (its body is small enough to remember)')
})

t.test('with a Redis dedupe store: 204, the listener gets the whole depth; the run is not relayed, and that is logged without the body', async (t) => {
  const client = await connect(t, server)
  const sink = logSink('info')
  const app = Fastify({ logger: sink.logger })
  t.teardown(() => app.close())
  await app.register(plugin, { token: TOKEN, dedupe: { store: createRedisDedupeStore(client, { prefix: `test:${randomUUID()}:` }) } })
  const depths: number[] = []
  app.langgraphWebhooks.onRun((run) => { depths.push(depthOf(run.values)) })
  await app.ready()
  const { runId, body } = deepBody(TOKEN)
  t.equal((await post(app, body, TOKEN)).statusCode, 204)
  t.equal((await post(app, body, TOKEN, true)).statusCode, 204, 'a retry, chunked, is a duplicate')
  t.same(depths, [DEPTH], 'the listener ran once, with the whole depth')
  const warned = sink.lines.filter((line) => /not relayed to other instances/.test(line.msg))
  t.equal(warned.length, 2, 'each delivery of the run that could not be relayed is logged')
  t.ok(warned.every((line) => line.run_id === runId && line.level === 40))
  t.notOk(sink.lines.some((line) => JSON.stringify(line).includes('{"a":{"a":')), 'no log line holds the body')
})

t.test('with the queue: 202, and the worker\'s listener gets the whole depth, token masked', async (t) => {
  const { app } = await instance(t, server, { name: queueName() })
  const seen: RunWebhook[] = []
  app.langgraphWebhooks.onRun((run) => { seen.push(run) })
  await app.ready()
  const { runId, body } = deepBody(queueToken)
  t.equal((await post(app, body, queueToken)).statusCode, 202)
  t.equal((await post(app, body, queueToken)).statusCode, 202, 'a retry is a duplicate')
  await until(() => seen.length > 0, 30_000, 'the worker ran the listener')
  t.equal(seen.length, 1)
  t.equal(seen[0].run_id, runId)
  t.equal(depthOf(seen[0].values), DEPTH)
  t.equal(seen[0].kwargs.webhook, 'http://127.0.0.1/webhooks/langgraph?token=[REDACTED]')
})

t.test('the serializer without recursion writes what JSON.stringify writes', async (t) => {
  const values = [
    { a: [1, 'two', null, true, undefined, () => 3, { b: {} }], c: undefined, d: () => 4, e: [], 'f"g': 'h\n' },
    [],
    'text',
    null
  ]
  for (const value of values) t.equal(stringifyIteratively(value), JSON.stringify(value))
})
