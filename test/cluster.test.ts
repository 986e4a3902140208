// Every Redis feature on a real Redis Cluster (three masters, a replica
// each) that the test starts: the queue, the Redis dedupe store, tracked
// runs and their reconciliation, and waitForRun across instances, with an
// ioredis Cluster given in each form the plugin takes.
import t, { type Test } from 'tap'
import { randomUUID } from 'node:crypto'
import Fastify, { type FastifyInstance } from 'fastify'
import type { Cluster } from 'ioredis'
import plugin, { type LanggraphWebhooksOptions, type RunWebhook } from '../lib/index.js'
import { createRedisDedupeStore } from '../lib/dedupe/redis.js'
import { createRunWorker, jobIdOf } from '../lib/queue/index.js'
import type { LanggraphClient } from '../lib/runs/reconcile.js'
import { buildRunWebhook, deliverRun } from '../lib/testing.js'
import { logSink } from './helpers/log.js'
import { queueName, token, until } from './helpers/queue.js'
import { startRedisCluster } from './helpers/redis-cluster.js'

const cluster = await startRedisCluster(t)
const WEBHOOK_URL = 'https://api.example.com/webhooks/langgraph'

interface ClusterInstance {
  app: FastifyInstance
  client: Cluster
  /** Log lines at warn level and above. */
  lines: Array<Record<string, any>>
}

/** One instance of the application, with a Cluster client of its own, as a process of its own would have. */
async function instance (t: Test, options: (client: Cluster) => Omit<LanggraphWebhooksOptions, 'token'>): Promise<ClusterInstance> {
  const client = await cluster.connect(t)
  const { lines, logger } = logSink('warn')
  const app = Fastify({ logger })
  await app.register(plugin, { token, ...options(client) })
  t.teardown(() => app.close())
  await app.ready()
  return { app, client, lines }
}

/** What an operator would alert on: an error-level line, and any mention of a slot error; `expected` lines aside. */
function failures (lines: Array<Record<string, any>>, expected?: string): Array<Record<string, any>> {
  return lines.filter((line) => (line.level >= 50 && line.msg !== expected) || /CROSSSLOT|MOVED|ASK /.test(JSON.stringify(line)))
}

/** A LangGraph client whose runs end as `status` when fetched, and whose `runs.create` starts fresh run ids. */
function langgraphClient (status = 'success'): LanggraphClient & { started: string[] } {
  const started: string[] = []
  const now = (): string => new Date().toISOString()
  return {
    started,
    runs: {
      create: async (threadId, assistantId) => {
        const runId = randomUUID()
        started.push(runId)
        return { run_id: runId, thread_id: threadId!, assistant_id: assistantId, created_at: now(), updated_at: now(), status: 'pending' }
      },
      stream: () => { throw new Error('not called in these tests') },
      get: async (threadId, runId) => {
        // What the server answers: the run, without what only a webhook carries.
        const { values, webhook_sent_at: sentAt, ...run } = buildRunWebhook({ run_id: runId, thread_id: threadId, status: status as RunWebhook['status'] })
        return run
      }
    },
    threads: { getState: async () => ({ values: { messages: ['done'] } }) }
  } as LanggraphClient & { started: string[] }
}

for (const form of ['queue.connection', 'redis'] as const) {
  t.test(`the queue on a Redis Cluster given as ${form}: stored, deduplicated, handled, its dead letters retried`, async (t) => {
    const name = queueName()
    const handled: string[] = []
    const { app, client, lines } = await instance(t, (client) => form === 'redis'
      ? { redis: client, queue: { name, attempts: 1 } }
      : { queue: { connection: client, name, attempts: 1 } })
    app.langgraphWebhooks.onRun((run) => {
      handled.push(run.run_id)
      if (run.values?.fail === true) throw new Error('listener failed')
    })

    const runs = Array.from({ length: 20 }, () => buildRunWebhook())
    const failing = buildRunWebhook({ values: { fail: true } })
    for (const run of [...runs, failing]) t.equal((await deliverRun(app, run, { token })).statusCode, 202)
    t.equal((await deliverRun(app, runs[0], { token })).statusCode, 202, 'a duplicate is acknowledged')
    await until(async () => (await app.langgraphWebhooks.queue.counts()).completed === 20, 30_000, 'every run handled')
    await until(async () => (await app.langgraphWebhooks.queue.failed()).length === 1, 30_000, 'the failing run in the failed set')
    t.same(handled.sort(), [...runs, failing].map((run) => run.run_id).sort(), 'each run handled once, the duplicate not again')

    t.equal(await app.langgraphWebhooks.queue.retry(failing.run_id, failing.status), true, 'a dead letter is queued again')
    await until(() => handled.filter((id) => id === failing.run_id).length === 2, 30_000, 'the retried run handled')
    // Every key of the queue in one slot: the queue's name as a hash tag.
    t.equal(await client.exists(`{${name}}:${name}:${jobIdOf(runs[0].run_id, runs[0].status)}`), 1, 'the job under the hash-tagged prefix')
    t.same(failures(lines, 'run webhook listeners failed for the last time: the run is in the failed set (queue.failed(), queue.retry())'), [],
      'no slot error, nothing at error level but the listener\'s own failure')
  })
}

t.test('a queue name that carries a hash tag of its own keeps BullMQ\'s prefix; braces with nothing between are no hash tag', async (t) => {
  const cases: Array<[name: string, prefix: string | undefined]> = [[`{${queueName()}}`, 'bull'], [`${queueName()}{}{x}`, undefined]]
  for (const [name, prefix] of cases) {
    const { app, client, lines } = await instance(t, (client) => ({ queue: { connection: client, name } }))
    const run = buildRunWebhook()
    app.langgraphWebhooks.onRun(() => {})
    t.equal((await deliverRun(app, run, { token })).statusCode, 202)
    await until(async () => (await app.langgraphWebhooks.queue.counts()).completed === 1, 30_000, 'the run handled')
    t.equal(await client.exists(`${prefix ?? `{${name}}`}:${name}:${jobIdOf(run.run_id, run.status)}`), 1, name)
    t.same(failures(lines), [])
  }
})

t.test('createRunWorker on a Cluster handles the runs a web instance (worker: false) stored', async (t) => {
  const name = queueName()
  const web = await instance(t, (client) => ({ queue: { connection: client, name, worker: false } }))
  const workerClient = await cluster.connect(t)
  const { lines, logger } = logSink('warn')
  const worker = createRunWorker({ connection: workerClient, name, logger: Fastify({ logger }).log })
  const handled: string[] = []
  worker.onRun((run, { attempt }) => { handled.push(`${run.run_id} ${attempt}`) })
  t.teardown(() => worker.close())
  const runs = Array.from({ length: 10 }, () => buildRunWebhook())
  for (const run of runs) t.equal((await deliverRun(web.app, run, { token })).statusCode, 202)
  await until(() => handled.length === 10, 30_000, 'the worker handled every run')
  t.same(handled.sort(), runs.map((run) => `${run.run_id} 1`).sort())
  t.same(failures([...lines, ...web.lines]), [])
})

for (const form of ['redis with dedupe: true', 'createRedisDedupeStore'] as const) {
  t.test(`the Redis dedupe store on a Cluster (${form}): concurrent duplicates on two instances run the listeners once`, async (t) => {
    const prefix = `test:${randomUUID()}:`
    const options = (client: Cluster): Omit<LanggraphWebhooksOptions, 'token'> => form === 'createRedisDedupeStore'
      ? { dedupe: { store: createRedisDedupeStore(client, { prefix }) } }
      : { redis: client, dedupe: true }
    const [a, b] = [await instance(t, options), await instance(t, options)]
    const handled: string[] = []
    for (const { app } of [a, b]) app.langgraphWebhooks.onRun((run) => { handled.push(run.run_id) })
    const runs = Array.from({ length: 30 }, () => buildRunWebhook())
    const replies = await Promise.all(runs.flatMap((run) => [deliverRun(a.app, run, { token }), deliverRun(b.app, run, { token })]))
    const codes = replies.map((reply) => reply.statusCode)
    t.ok(codes.every((code) => code === 204 || code === 503), 'each delivery handled, a duplicate, or in flight (503: retried)')
    // The sender retries what got 503: a duplicate by then.
    for (const run of runs) t.equal((await deliverRun(b.app, run, { token })).statusCode, 204)
    t.same(handled.sort(), runs.map((run) => run.run_id).sort(), 'each run handled once')
    const keyPrefix = form === 'createRedisDedupeStore' ? prefix : 'langgraph-webhooks:'
    t.equal(await a.client.get(`${keyPrefix}{dedupe}:${runs[0].run_id}:success`), 'done')
    t.same(failures([...a.lines, ...b.lines]), [])
  })
}

for (const form of ['redis', 'queue'] as const) {
  t.test(`tracked runs on a Cluster (${form}): a run without a webhook is reconciled once by two instances; one whose webhook came is not`, async (t) => {
    const langgraph = langgraphClient()
    const name = queueName()
    const options = (client: Cluster): Omit<LanggraphWebhooksOptions, 'token'> => ({
      ...(form === 'queue' ? { queue: { connection: client, name } } : { redis: client }),
      langgraph: { client: langgraph, webhookUrl: WEBHOOK_URL, reconcileAfterMs: 200, reconcileEveryMs: 200 }
    })
    const [a, b] = [await instance(t, options), await instance(t, options)]
    const handled: Array<{ runId: string, reconciled: boolean }> = []
    for (const { app } of [a, b]) app.langgraphWebhooks.onRun((run, { reconciled }) => { handled.push({ runId: run.run_id, reconciled }) })

    const silent = await a.app.langgraphWebhooks.runs.create(randomUUID(), 'agent')
    const delivered = await b.app.langgraphWebhooks.runs.create(randomUUID(), 'agent')
    t.equal((await deliverRun(a.app, buildRunWebhook({ run_id: delivered.run_id, thread_id: delivered.thread_id }), { token })).statusCode, form === 'queue' ? 202 : 204)
    await until(() => handled.some((entry) => entry.runId === silent.run_id), 30_000, 'the silent run reconciled')
    await until(() => handled.some((entry) => entry.runId === delivered.run_id), 30_000, 'the delivered run handled')
    const prefix = form === 'queue' ? `langgraph-webhooks:${name}:` : 'langgraph-webhooks:'
    t.equal(await a.client.exists(`${prefix}{runs}:run:${silent.run_id}`), 0, 'the reconciled run is no longer tracked')
    t.equal(await a.client.get(`${prefix}{runs}:claim:${silent.run_id}`), 'done:r', 'and refuses its late webhook')
    t.same(handled.filter((entry) => entry.runId === silent.run_id), [{ runId: silent.run_id, reconciled: true }], 'reconciled once')
    t.same(handled.filter((entry) => entry.runId === delivered.run_id), [{ runId: delivered.run_id, reconciled: false }], 'the webhook only')
    t.same(failures([...a.lines, ...b.lines]), [])
  })

  t.test(`waitForRun on one instance is resolved by a delivery to another, on a Cluster (${form})`, async (t) => {
    const name = queueName()
    const options = (client: Cluster): Omit<LanggraphWebhooksOptions, 'token'> =>
      form === 'queue' ? { queue: { connection: client, name } } : { redis: client, dedupe: true }
    const [a, b] = [await instance(t, options), await instance(t, options)]
    const run = buildRunWebhook()
    const waiting = a.app.langgraphWebhooks.waitForRun(run.run_id, { timeoutMs: 30_000 })
    // The subscription is set up at registration: a delivery now reaches the waiter.
    t.equal((await deliverRun(b.app, run, { token })).statusCode, form === 'queue' ? 202 : 204)
    const got = await waiting as RunWebhook<{ messages: string[] }>
    t.equal(got.run_id, run.run_id)
    t.equal(got.values?.messages?.[1], 'hello')
    // A late caller on the first instance finds it too.
    const late = buildRunWebhook()
    t.equal((await deliverRun(b.app, late, { token })).statusCode, form === 'queue' ? 202 : 204)
    t.equal((await a.app.langgraphWebhooks.waitForRun(late.run_id, { timeoutMs: 30_000 })).run_id, late.run_id)
    t.same(failures([...a.lines, ...b.lines]), [])
  })
}
