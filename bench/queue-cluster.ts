/**
 * `npm run bench:cluster`: runs per second through the queue, web and worker
 * together, on one Redis and on a Redis Cluster of three masters (a replica
 * each), at each concurrency: that many deliveries in flight through the
 * plugin's route (worker: false) while a worker (createRunWorker) with that
 * concurrency handles them with a no-op listener. Timed from the first
 * delivery to the last run handled; the 202's latency is the route's. On
 * the cluster, also with `queue.waitForReplicas: 1`.
 *
 * Options: --runs (per case, default 5000), --concurrency 8,32.
 */
import { parseArgs } from 'node:util'
import Fastify from 'fastify'
import { Cluster, Redis } from 'ioredis'
import langgraphWebhooks from '../lib/index.js'
import { createRunWorker } from '../lib/queue/index.js'
import { buildRunWebhook } from '../lib/testing.js'
import { startLocalRedis } from '../examples/redis-server.js'
import { startRedisCluster } from '../test/helpers/redis-cluster.js'
import { TOKEN } from './cases.js'

const { values: args } = parseArgs({
  options: {
    runs: { type: 'string', default: '5000' },
    concurrency: { type: 'string', default: '8,32' }
  }
})
const runs = Number(args.runs)
const levels = args.concurrency.split(',').map(Number)
const quiet = Fastify({ logger: false }).log

interface Target {
  what: string
  /** A client of its own for each user, as processes of their own would have. */
  connect: () => Redis | Cluster
  waitForReplicas: number
}

async function measure ({ what, connect, waitForReplicas }: Target, concurrency: number): Promise<void> {
  const name = `bench-${concurrency}-${waitForReplicas}-${Date.now()}`
  const [webClient, workerClient] = [connect(), connect()]
  const web = Fastify({ logger: false })
  await web.register(langgraphWebhooks, { token: TOKEN, queue: { connection: webClient, name, worker: false, waitForReplicas } })
  await web.ready()
  let handled = 0
  let finish: (at: number) => void = () => {}
  const done = new Promise<number>((resolve) => { finish = resolve })
  const worker = createRunWorker({ connection: workerClient, name, concurrency, logger: quiet })
  worker.onRun(() => { if (++handled === runs) finish(performance.now()) })

  const bodies = Array.from({ length: runs }, () => JSON.stringify(buildRunWebhook()))
  const latencies: number[] = []
  let next = 0
  const started = performance.now()
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < runs) {
      const payload = bodies[next++]
      const sent = performance.now()
      const reply = await web.inject({ method: 'POST', url: `/webhooks/langgraph?token=${TOKEN}`, headers: { 'content-type': 'application/json' }, payload })
      if (reply.statusCode !== 202) throw new Error(`the route answered ${reply.statusCode}: ${reply.body}`)
      latencies.push(performance.now() - sent)
    }
  }))
  const last = await done
  await worker.close()
  await web.close()
  webClient.disconnect()
  workerClient.disconnect()
  latencies.sort((a, b) => a - b)
  const at = (q: number): string => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))].toFixed(1)
  console.log(`| ${what} | ${concurrency} | ${(runs / ((last - started) / 1000)).toFixed(0)} | ${at(0.5)} | ${at(0.99)} |`)
}

const redis = await startLocalRedis()
if (redis === undefined) throw new Error('bench:cluster needs redis-server (and redis-cli) on the PATH')
const cluster = await startRedisCluster()
const noop = (): void => {}
const single = (): Redis => new Redis(redis.url).on('error', noop)
const clustered = (): Cluster => new Cluster([...cluster.startupNodes]).on('error', noop)

try {
  console.log(`${runs} runs a case, no-op listener\n`)
  console.log('| Redis | concurrency | runs/s (web + worker) | 202 p50 ms | 202 p99 ms |')
  console.log('|---|---:|---:|---:|---:|')
  for (const target of [
    { what: 'one Redis', connect: single, waitForReplicas: 0 },
    { what: 'cluster, 3 masters', connect: clustered, waitForReplicas: 0 },
    { what: 'cluster, waitForReplicas: 1', connect: clustered, waitForReplicas: 1 }
  ]) {
    for (const concurrency of levels) await measure(target, concurrency)
  }
} finally {
  await Promise.all([redis.stop(), cluster.stop()])
}
