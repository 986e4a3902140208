// The queue option's validation, its combinations with other options, a
// missing bullmq, and the parts of the queue module with no Redis behind them.
import { spawnSync } from 'node:child_process'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'
import Fastify from 'fastify'
import { Redis } from 'ioredis'
import plugin, { type LanggraphWebhooksOptions } from '../lib/index.js'
import { RunListeners } from '../lib/listeners.js'
import { createRunWorker } from '../lib/queue/index.js'
import { loadPeer } from '../lib/queue/load.js'
import { jsonLineLogger } from '../lib/queue/log.js'
import { resolveOptions } from '../lib/options.js'
import { startQueue } from '../lib/queue/queue.js'
import { createTelemetry } from '../lib/telemetry.js'
import { startRedisServer } from './helpers/redis-server.js'
import { nodeArgs } from './helpers/queue.js'

const token = 'q'.repeat(32)
const lazy = { host: '127.0.0.1', port: 1, lazyConnect: true }
const resolveQueueOptions = (queue: unknown, others: Record<string, unknown> = {}) => resolveOptions({ token, ...others, queue }).queue

async function refused (t: Test, options: Partial<LanggraphWebhooksOptions> | Record<string, unknown>, message: RegExp | string) {
  const app = Fastify()
  await t.rejects(async () => { await app.register(plugin, { token, ...options } as LanggraphWebhooksOptions) }, { code: 'FST_LANGGRAPH_WEBHOOKS_INVALID_OPTION', message })
}

t.test('the queue option is validated strictly, with messages that say what to do', async (t) => {
  await refused(t, { queue: 'redis://x' }, /queue must be an object/)
  await refused(t, { queue: null }, /queue must be an object/)
  await refused(t, { queue: [] }, /queue must be an object/)
  await refused(t, { queue: {} }, /queue.connection is required/)
  await refused(t, { queue: { connection: lazy, attempt: 3 } }, /unknown option "queue.attempt"; the options of queue are: connection, name, attempts/)
  await refused(t, { queue: { connection: lazy, attempts: '3' } }, 'queue.attempts must be a positive integer, got the string "3" (convert it first, e.g. Number(process.env.X))')
  await refused(t, { queue: { connection: lazy, lockMs: 0 } }, 'queue.lockMs must be a positive integer of milliseconds, got 0')
  await refused(t, { queue: { connection: lazy, backoffMs: 1.5 } }, /queue.backoffMs must be a positive integer/)
  await refused(t, { queue: { connection: lazy, name: 'a:b' } }, /queue.name must be a non-empty string without ":"/)
  await refused(t, { queue: { connection: lazy, name: '' } }, /queue.name must be/)
  await refused(t, { queue: { connection: lazy, worker: 'no' } }, 'queue.worker must be a boolean, got the string "no"')
  await refused(t, { queue: { connection: 'localhost:6379' } }, /got a string that is not a redis:\/\/ URL/)
  await refused(t, { queue: { connection: 6379 } }, /queue.connection must be an ioredis client \(new Redis\(process.env.REDIS_URL\)\), ioredis options \(\{ host, port \}\) or a redis:\/\/ URL$/)
  await refused(t, { queue: { connection: [lazy] } }, /queue.connection must be an ioredis client/)
  await refused(t, { queue: { connection: new Map() } }, /got an object that is neither/)
  await refused(t, { queue: { connection: { ...lazy, keyPrefix: 'app:' } } }, /keyPrefix is not supported by BullMQ/)
})

t.test('options that do not combine with a queue are refused', async (t) => {
  await refused(t, { dedupe: true, queue: { connection: lazy } }, /dedupe and queue do not combine: with queue, the job key \(run_id and status\) already makes a duplicate a no-op/)
  await refused(t, { ack: 'received', queue: { connection: lazy } }, /ack does not apply with queue/)
  await refused(t, { redactToken: false, queue: { connection: lazy } }, /redactToken: false does not combine with queue/)
  await refused(t, { allowedFields: ['run_id', 'values'], queue: { connection: lazy } }, /queue reads run_id and status from every webhook body, but allowedFields does not list status/)
  t.ok(resolveQueueOptions({ connection: lazy }, { dedupe: false, redactToken: true }), 'dedupe: false and redactToken: true are fine')
  t.match(resolveQueueOptions({ connection: 'rediss://cache:6380' }), {
    connection: { options: 'rediss://cache:6380' }, name: 'langgraph-webhooks', attempts: 10, backoffMs: 1000, concurrency: 8, worker: true, lockMs: 30_000, addTimeoutMs: 2000, keepCompletedMs: 3_600_000, keepFailedMs: 604_800_000
  }, 'the defaults')
  const given = { connection: { ...lazy } }
  resolveQueueOptions(given)
  t.same(given, { connection: lazy }, "the caller's object is not touched")
})

t.test("createRunWorker's options are validated as strictly", async (t) => {
  t.throws(() => createRunWorker(null as never), { code: 'FST_LANGGRAPH_WEBHOOKS_INVALID_OPTION', message: /options must be an object/ })
  t.throws(() => createRunWorker({ connection: lazy, lock: 5 } as never), { message: /unknown option "createRunWorker.lock"; the options of createRunWorker are: connection, name, concurrency, lockMs, logger, onRun, valuesSchema/ })
  t.throws(() => createRunWorker({ connection: lazy, name: 'x:y' }), { message: /createRunWorker.name must be a non-empty string without ":"/ })
  t.throws(() => createRunWorker({} as never), { message: /createRunWorker.connection is required/ })
  t.throws(() => createRunWorker({ connection: 'nope' }), { message: /^createRunWorker.connection must be/ })
  t.throws(() => createRunWorker({ connection: lazy, concurrency: '4' } as never), { message: /^createRunWorker.concurrency must be a positive integer, got the string "4"/ })
  t.throws(() => createRunWorker({ connection: lazy, logger: console.log } as never), { message: /^createRunWorker.logger must be a pino or Fastify logger, got a function$/ })
  t.throws(() => createRunWorker({ connection: lazy, onRun: 'log' } as never), { message: /^createRunWorker.onRun must be a function/ })
  t.throws(() => createRunWorker({ connection: lazy, valuesSchema: { type: 'object' } } as never), { message: /^createRunWorker.valuesSchema must be a TypeBox schema/ })
})

t.test('without bullmq installed, registration says to install it', async (t) => {
  const fixtures = fileURLToPath(new URL('./fixtures/', import.meta.url))
  const child = spawnSync(process.execPath, nodeArgs('--import', `${fixtures}without-bullmq.mjs`, `${fixtures}register-queue.ts`), { encoding: 'utf8', timeout: 20_000 })
  t.same(JSON.parse(child.stdout), {
    code: 'FST_LANGGRAPH_WEBHOOKS_MISSING_PEER',
    message: 'The queue option needs the bullmq package, an optional peer dependency: npm install bullmq'
  }, child.stderr)

  // The same path in this process, with the loader swapped.
  const missing = Object.assign(new Error("Cannot find module 'bullmq'"), { code: 'MODULE_NOT_FOUND' })
  await t.rejects(loadPeer('bullmq', 'queue', async () => { throw missing }), { code: 'FST_LANGGRAPH_WEBHOOKS_MISSING_PEER', message: /npm install bullmq$/ })
  const broken = new SyntaxError('bullmq is broken')
  await t.rejects(loadPeer('bullmq', 'queue', async () => { throw broken }), broken, 'another failure is passed on as it is')
  const peers = { bullmq: () => loadPeer('bullmq', 'queue', async () => { throw missing }), ioredis: async () => { throw new Error('not reached') } }
  await t.rejects(startQueue(resolveQueueOptions({ connection: lazy })!, new RunListeners(), Fastify().log, createTelemetry(), undefined, peers), { code: 'FST_LANGGRAPH_WEBHOOKS_MISSING_PEER' })
})

t.test('duplicateConnection gives a client to the queue\'s Redis, closed with the queue', async (t) => {
  const server = await startRedisServer()
  t.teardown(() => server.stop())
  const queue = await startQueue(resolveQueueOptions({ connection: server.url, worker: false })!, new RunListeners(), Fastify().log, createTelemetry())
  const subscriber = queue.duplicateConnection()
  t.equal(subscriber.status, 'wait', 'connects on first use')
  t.equal(await subscriber.ping(), 'PONG')
  const unused = queue.duplicateConnection()
  // Closing while Redis is down does not hang.
  const refused = new Promise((resolve) => subscriber.once('error', resolve))
  await server.stop()
  await refused // the error the queue's own listener swallows, so none goes unhandled
  await queue.close()
  t.equal(unused.status, 'end', 'a client never used is ended')
  // ioredis leaves a client dropped while reconnecting in that status, without timers: it never comes back.
  await server.start()
  await sleep(300)
  t.not(subscriber.status, 'ready', 'a closed client does not reconnect')
  t.ok(subscriber instanceof Redis)
})

t.test('a worker created without a logger, closed before it took anything', async (t) => {
  const worker = createRunWorker({ connection: lazy, onRun: () => {} })
  await worker.close()
  t.equal(worker.bullmq.closing !== undefined, true)
})

t.test('the worker processes\' default logger writes JSON lines at info and above', async (t) => {
  const lines: string[] = []
  const log = jsonLineLogger({ write: (line) => lines.push(line) }).child({ run_id: 'r1' })
  log.debug('not written')
  log.info('plain message')
  log.error({ err: new TypeError('bad'), attempt: 2 }, 'with fields')
  log.warn({ only: 'fields' })
  log.fatal({ err: new AggregateError([new Error('inner'), 'text'], '2 failed') })
  log.silent('never written')
  const parsed = lines.map((line) => JSON.parse(line))
  t.equal(parsed.length, 4)
  t.match(parsed[3], { level: 60, err: { type: 'AggregateError', message: '2 failed', errors: [{ message: 'inner' }, 'text'] } })
  t.match(parsed[0], { level: 30, run_id: 'r1', msg: 'plain message' })
  t.match(parsed[1], { level: 50, run_id: 'r1', attempt: 2, msg: 'with fields', err: { type: 'TypeError', message: 'bad', stack: /TypeError: bad/ } })
  t.match(parsed[2], { level: 40, only: 'fields' })
  t.notOk('msg' in parsed[2])
  t.equal(log.level, 'info')
  t.ok(typeof jsonLineLogger().info === 'function', 'stdout by default')
})
