// The queue option's validation, its combinations with other options, a
// missing bullmq, and the parts of the queue module with no Redis behind them.
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'
import Fastify from 'fastify'
import plugin, { type LanggraphWebhooksOptions } from '../lib/index.js'
import { RunListeners } from '../lib/listeners.js'
import { createRunWorker } from '../lib/queue/index.js'
import * as redisModule from '../lib/redis.js'
import { resolveOptions } from '../lib/options.js'
import { createTelemetry } from '../lib/telemetry.js'
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
  await refused(t, { queue: { connection: lazy, waitForReplicas: -1 } }, 'queue.waitForReplicas must be a non-negative integer, got -1')
  await refused(t, { queue: { connection: lazy, waitForReplicas: '1' } }, 'queue.waitForReplicas must be a non-negative integer, got the string "1"')
})

t.test('options that do not combine with a queue are refused', async (t) => {
  await refused(t, { dedupe: true, queue: { connection: lazy } }, /dedupe and queue do not combine: with queue, the job key \(run_id and status\) already makes a duplicate a no-op/)
  await refused(t, { ack: 'received', queue: { connection: lazy } }, /ack does not apply with queue/)
  await refused(t, { redactToken: false, queue: { connection: lazy } }, /redactToken: false does not combine with queue/)
  await refused(t, { allowedFields: ['run_id', 'values'], queue: { connection: lazy } }, /queue reads run_id and status from every webhook body, but allowedFields does not list status/)
  t.ok(resolveQueueOptions({ connection: lazy }, { dedupe: false, redactToken: true }), 'dedupe: false and redactToken: true are fine')
  t.match(resolveQueueOptions({ connection: 'rediss://cache:6380' }), {
    connection: { options: 'rediss://cache:6380' }, name: 'langgraph-webhooks', attempts: 10, backoffMs: 1000, concurrency: 8, worker: true, lockMs: 30_000, addTimeoutMs: 2000, keepCompletedMs: 3_600_000, keepFailedMs: 604_800_000, waitForReplicas: 0
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
  const child = spawnSync(process.execPath, nodeArgs('--import', `${fixtures}without-bullmq.mjs`, `${fixtures}register-queue.ts`), { encoding: 'utf8', timeout: 120_000 })
  t.same(JSON.parse(child.stdout), {
    code: 'FST_LANGGRAPH_WEBHOOKS_MISSING_PEER',
    message: 'The queue option needs the bullmq package, an optional peer dependency: npm install bullmq'
  }, child.stderr)

  // The same path in this process, with the loader swapped.
  const missing = Object.assign(new Error("Cannot find module 'bullmq'"), { code: 'MODULE_NOT_FOUND' })
  const { loadPeer } = redisModule
  await t.rejects(loadPeer('bullmq', 'queue', async () => { throw missing }), { code: 'FST_LANGGRAPH_WEBHOOKS_MISSING_PEER', message: /npm install bullmq$/ })
  const broken = new SyntaxError('bullmq is broken')
  await t.rejects(loadPeer('bullmq', 'queue', async () => { throw broken }), broken, 'another failure is passed on as it is')
  const { startQueue } = await t.mockImport<typeof import('../lib/queue/queue.js')>('../lib/queue/queue.js', {
    '../lib/redis.js': { ...redisModule, loadBullmq: () => loadPeer('bullmq', 'queue', async () => { throw missing }) }
  })
  await t.rejects(startQueue(resolveQueueOptions({ connection: lazy })!, new RunListeners(), Fastify().log, createTelemetry()), { code: 'FST_LANGGRAPH_WEBHOOKS_MISSING_PEER' })
})

t.test('a worker created without a logger, closed before it took anything', async (t) => {
  const worker = createRunWorker({ connection: lazy, onRun: () => {} })
  await worker.close()
  t.equal(worker.bullmq.closing !== undefined, true)
})
