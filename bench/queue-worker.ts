/**
 * `npm run bench:worker`: worker throughput, runs per second through no-op
 * listeners, at concurrency 1, 8 and 32. A redis-server of its own holds a
 * queue filled by the plugin's route beforehand (every run stored as the
 * route stores it); one worker (createRunWorker) then drains it, timed from
 * its first run to its last.
 *
 * Options: --runs (per concurrency, default 3000), --concurrency 1,8,32.
 */
import { parseArgs } from 'node:util'
import Fastify from 'fastify'
import langgraphWebhooks from '../lib/index.js'
import { createRunWorker } from '../lib/queue/index.js'
import { buildRunWebhook } from '../lib/testing.js'
import { startLocalRedis } from '../examples/redis-server.js'
import { TOKEN } from './cases.js'

const { values: args } = parseArgs({
  options: {
    runs: { type: 'string', default: '3000' },
    concurrency: { type: 'string', default: '1,8,32' }
  }
})
const runs = Number(args.runs)
const levels = args.concurrency.split(',').map(Number)

const redis = await startLocalRedis()
if (redis === undefined) throw new Error('bench:worker needs redis-server on the PATH')
const quiet = Fastify({ logger: false }).log

try {
  for (const concurrency of levels) {
    const name = `bench-worker-${concurrency}`
    const web = Fastify({ logger: false })
    await web.register(langgraphWebhooks, { token: TOKEN, queue: { connection: redis.url, name, worker: false } })
    // Filled through the route, 32 at a time.
    for (let sent = 0; sent < runs; sent += 32) {
      await Promise.all(Array.from({ length: Math.min(32, runs - sent) }, async () => {
        const reply = await web.inject({ method: 'POST', url: `/webhooks/langgraph?token=${TOKEN}`, payload: buildRunWebhook() })
        if (reply.statusCode !== 202) throw new Error(`the route answered ${reply.statusCode}`)
      }))
    }

    let first = 0
    let handled = 0
    let finish: (at: number) => void = () => {}
    const done = new Promise<number>((resolve) => { finish = resolve })
    const worker = createRunWorker({ connection: redis.url, name, concurrency, logger: quiet })
    worker.onRun(() => {
      if (handled === 0) first = performance.now()
      if (++handled === runs) finish(performance.now())
    })
    const last = await done
    await worker.close()
    await web.close()
    const perSecond = (runs - 1) / ((last - first) / 1000)
    console.log(`concurrency ${String(concurrency).padStart(2)}: ${perSecond.toFixed(0).padStart(6)} runs/s (${runs} runs)`)
  }
} finally {
  await redis.stop()
}
