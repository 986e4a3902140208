// Several instances on one Redis Cluster, as deployed: three web instances
// (worker: false) behind a load balancer and two workers, each with a
// Cluster client of its own. Every run is handled exactly once, whichever
// instance got it, however often it was sent, however its first attempt went.
import t from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import plugin from '../lib/index.js'
import { createRunWorker } from '../lib/queue/index.js'
import type { LanggraphClient } from '../lib/runs/reconcile.js'
import { buildRunWebhook, deliverRun } from '../lib/testing.js'
import { logSink } from './helpers/log.js'
import { queueName, token, until } from './helpers/queue.js'
import { startRedisCluster } from './helpers/redis-cluster.js'

// CLUSTER_RUNS=10000 npx tap test/cluster-instances.test.ts for a longer run.
const RUNS = Number(process.env.CLUSTER_RUNS ?? 1000)
const WEB = 3
const WORKERS = 2
// How many deliveries are in flight at once, as a sender's parallel runs would be.
const IN_FLIGHT = 32

const cluster = await startRedisCluster(t)

t.test(`${RUNS} runs through ${WEB} web instances and ${WORKERS} workers: 10 % sent again to another instance, 20 % failing their first attempt, each handled once; waitForRun and reconciliation across instances`, async (t) => {
  const name = queueName()
  // Each instance's log lines at warn level and above.
  const logs: Array<Array<Record<string, any>>> = []
  const log = () => {
    const sink = logSink('warn')
    logs.push(sink.lines)
    return sink.logger
  }

  // A run the application started whose webhook never comes: the LangGraph server has it finished.
  const silent = buildRunWebhook()
  const langgraph: LanggraphClient = {
    runs: {
      create: async () => ({ ...silent, status: 'pending' }),
      stream: () => { throw new Error('not called in this test') },
      get: async () => ({ ...silent, status: 'success' })
    },
    threads: { getState: async () => ({ values: silent.values }) }
  }

  const webs: FastifyInstance[] = []
  for (let i = 0; i < WEB; i++) {
    const client = await cluster.connect(t)
    const app = Fastify({ logger: log() })
    await app.register(plugin, {
      token,
      queue: { connection: client, name, worker: false, backoffMs: 10 },
      langgraph: { client: langgraph, webhookUrl: 'https://api.example.com/webhooks/langgraph', reconcileAfterMs: 500, reconcileEveryMs: 500 }
    })
    t.teardown(() => app.close())
    await app.ready()
    webs.push(app)
  }

  const failing = new Set<string>()
  const attempts = new Map<string, number[]>()
  const reconciled: string[] = []
  for (let i = 0; i < WORKERS; i++) {
    const worker = createRunWorker({ connection: await cluster.connect(t), name, concurrency: 16, logger: Fastify({ logger: log() }).log })
    worker.onRun((run, context) => {
      if (context.reconciled) reconciled.push(run.run_id)
      attempts.set(run.run_id, [...attempts.get(run.run_id) ?? [], context.attempt])
      if (failing.has(run.run_id) && context.attempt === 1) throw new Error('first attempt fails')
    })
    t.teardown(() => worker.close())
  }

  const runs = Array.from({ length: RUNS }, (_, i) => {
    const run = buildRunWebhook()
    if (i % 5 === 0) failing.add(run.run_id)
    return run
  })
  // Each run once through instance i % 3, and every tenth again through the next one.
  const deliveries = runs.flatMap((run, i) => i % 10 === 0
    ? [{ run, web: i % WEB }, { run, web: (i + 1) % WEB }]
    : [{ run, web: i % WEB }])

  // Started on one instance, delivered through another.
  const awaited = runs[RUNS - 1]
  const waiting = webs[0].langgraphWebhooks.waitForRun(awaited.run_id, { timeoutMs: 60_000 })
  await webs[1].langgraphWebhooks.runs.create(silent.thread_id, silent.assistant_id)

  const started = performance.now()
  const codes: number[] = []
  for (let i = 0; i < deliveries.length; i += IN_FLIGHT) {
    const replies = await Promise.all(deliveries.slice(i, i + IN_FLIGHT).map(({ run, web }) => deliverRun(webs[web], run, { token })))
    codes.push(...replies.map((reply) => reply.statusCode))
  }
  const stored = performance.now()
  t.same(new Set(codes), new Set([202]), 'every delivery acknowledged 202, duplicates included')
  t.equal((await waiting).run_id, awaited.run_id, 'waitForRun on one instance resolved by a delivery to another')

  const handledOnce = (): boolean => runs.every((run) => attempts.get(run.run_id)?.length === (failing.has(run.run_id) ? 2 : 1))
  await until(() => handledOnce() && reconciled.length > 0, 60_000, 'every run handled')
  const handled = performance.now()
  t.comment(`${RUNS} runs (${deliveries.length} deliveries): stored in ${Math.round(stored - started)} ms, all handled ${Math.round(handled - started)} ms after the first was sent`)

  const wrong = runs.filter((run) => attempts.get(run.run_id)?.join() !== (failing.has(run.run_id) ? '1,2' : '1'))
  t.same(wrong.map((run) => ({ run_id: run.run_id, attempts: attempts.get(run.run_id) })), [], 'each run handled once; a failed first attempt retried once')
  t.same(reconciled, [silent.run_id], 'the run without a webhook reconciled once, by one of the three instances')
  t.same(attempts.get(silent.run_id), [1])
  const counts = await webs[2].langgraphWebhooks.queue.counts()
  t.same({ ...counts, completed: 0 }, { waiting: 0, active: 0, delayed: 0, failed: 0, completed: 0 })
  const lines = logs.flat()
  t.same(lines.filter((line) => line.msg !== 'run webhook listeners failed: the run will be retried'), [], 'no slot error, nothing else at warn level or above')
  t.equal(lines.length, failing.size, 'each failed first attempt logged')
})
