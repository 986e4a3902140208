// A valuesSchema with a queue: the job holds the values as sent (JSON), and
// the worker — in the web process or one of its own — applies the schema, so
// listeners get its output as they would without a queue.
import t from 'tap'
import Fastify from 'fastify'
import { z } from 'zod'
import plugin, { type RunWebhook } from '../lib/index.js'
import { createRunWorker } from '../lib/queue/index.js'
import { jobIdOf } from '../lib/queue/index.js'
import { buildRunWebhook, deliverRun } from '../lib/testing.js'
import { startRedisServer } from './helpers/redis-server.js'
import { connect, instance, queueName, token, until } from './helpers/queue.js'

const server = await startRedisServer()
t.teardown(() => server.stop())

const State = z.object({ at: z.string().transform((at) => new Date(at)) })
const at = '2026-01-02T03:04:05.000Z'

function stateRun (values: Record<string, unknown> = { at }): RunWebhook {
  return buildRunWebhook({ values })
}

/** A listener that keeps what it gets as `values.at`. */
function recorder () {
  const seen: unknown[] = []
  return { seen, listener: (run: RunWebhook<z.output<typeof State>>) => { seen.push(run.values?.at) } }
}

t.test('without a queue, the listener gets the transform\'s output: a Date', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(plugin, { token, valuesSchema: State })
  const { seen, listener } = recorder()
  app.langgraphWebhooks.withValues(State).onRun(listener)
  t.equal((await deliverRun(app, stateRun(), { token })).statusCode, 204)
  t.ok(seen[0] instanceof Date)
  t.equal((seen[0] as Date).toISOString(), at)
})

t.test('with the in-process worker, the same listener gets the same Date; the job holds the values as sent', async (t) => {
  const name = queueName()
  const observer = await connect(t, server)
  const { app } = await instance(t, server, { name }, { valuesSchema: State })
  const { seen, listener } = recorder()
  app.langgraphWebhooks.withValues(State).onRun(listener)
  await app.ready()
  const run = stateRun()
  t.equal((await deliverRun(app, run, { token })).statusCode, 202)
  await until(() => seen.length === 1)
  t.ok(seen[0] instanceof Date, 'a Date, not the string that went through Redis')
  t.equal((seen[0] as Date).toISOString(), at)
  const data = JSON.parse((await observer.hget(`bull:${name}:${jobIdOf(run.run_id, run.status)}`, 'data'))!)
  t.same(data.run.values, { at }, 'stored as sent')
})

t.test('with a queue, values that fail the schema are a 400 and never stored', async (t) => {
  const name = queueName()
  const { app } = await instance(t, server, { name, worker: false }, { valuesSchema: State })
  await app.ready()
  const reply = await deliverRun(app, stateRun({ at: 42 }), { token })
  t.equal(reply.statusCode, 400)
  t.match(reply.json().message, /values\.at/)
  t.same(await app.langgraphWebhooks.queue.counts(), { waiting: 0, active: 0, delayed: 0, failed: 0, completed: 0 })
})

t.test('createRunWorker({ valuesSchema }) in a process without HTTP: the listener gets the Date', async (t) => {
  const name = queueName()
  const { app, client } = await instance(t, server, { name, worker: false }, { valuesSchema: State })
  await app.ready()
  const { seen, listener } = recorder()
  const worker = createRunWorker({ connection: client, name, valuesSchema: State, logger: Fastify().log })
  worker.onRun(listener)
  t.teardown(() => worker.close())
  t.equal((await deliverRun(app, stateRun(), { token })).statusCode, 202)
  await until(() => seen.length === 1)
  t.ok(seen[0] instanceof Date)
  t.equal((seen[0] as Date).toISOString(), at)
})

t.test('a worker whose valuesSchema the stored values fail: the listeners are not run, the run ends in the failed set saying why', async (t) => {
  const name = queueName()
  const { app, client } = await instance(t, server, { name, worker: false, attempts: 1 }, { valuesSchema: State })
  await app.ready()
  const Stricter = z.object({ at: z.string(), step: z.number() })
  const { lines, logger } = (await import('./helpers/log.js')).logSink('info')
  let called = 0
  const worker = createRunWorker({ connection: client, name, valuesSchema: Stricter, logger: Fastify({ logger }).log, onRun: () => { called++ } })
  t.teardown(() => worker.close())
  const run = stateRun()
  t.equal((await deliverRun(app, run, { token })).statusCode, 202)
  await until(async () => (await app.langgraphWebhooks.queue.counts()).failed === 1)
  const [failed] = await app.langgraphWebhooks.queue.failed()
  t.equal(failed!.run.run_id, run.run_id)
  t.match(failed!.error, /^run\.values do not match the valuesSchema of this worker: .*values\.step: /)
  t.equal(called, 0, 'no listener ran')
  t.ok(lines.some((l) => l.msg === 'run webhook values do not match the valuesSchema of this worker: the listeners were not run'))
})

t.test('createRunWorker refuses a valuesSchema that is no schema it knows', async (t) => {
  t.throws(() => createRunWorker({ connection: server.url, valuesSchema: { type: 'object' } as never }), { code: 'FST_LANGGRAPH_WEBHOOKS_INVALID_OPTION', message: /createRunWorker.valuesSchema must be a TypeBox schema/ })
})
