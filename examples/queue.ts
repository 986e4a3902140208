/**
 * Durable delivery: a web process that only stores runs (queue, worker:
 * false) and a worker process that runs the listeners (createRunWorker),
 * sharing a Redis.
 *
 *   npm run example:queue                      # both, against a redis-server of its own (or REDIS_URL), then exits
 *   REDIS_URL=redis://127.0.0.1:6379 npx tsx examples/queue.ts web      # the web process alone, on PORT (3000)
 *   REDIS_URL=redis://127.0.0.1:6379 npx tsx examples/queue.ts worker   # a worker process alone
 *
 * In the run of both, the web process receives three runs over HTTP; the
 * worker's listener fails each run's first attempt (a downstream API
 * having a bad moment), and BullMQ retries it after backoffMs.
 */
import { fork } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import Fastify from 'fastify'
import langgraphWebhooks from '../lib/index.js'
import { createRunWorker } from '../lib/queue/index.js'
import { buildRunWebhook } from '../lib/testing.js'
import { startLocalRedis } from './redis-server.js'

const QUEUE = 'langgraph-webhooks-example'
const role = process.argv[2]

async function web (redisUrl: string, token: string, port: number) {
  const app = Fastify({ logger: { level: 'warn' } })
  await app.register(langgraphWebhooks, {
    token,
    queue: { connection: redisUrl, name: QUEUE, worker: false }
  })
  await app.listen({ port, host: '127.0.0.1' })
  return app
}

function worker (redisUrl: string, report: (line: string) => void) {
  // The report lines say what happens; the worker's own log (JSON lines by default) stays quiet here.
  const worker = createRunWorker({ connection: redisUrl, name: QUEUE, concurrency: 4, lockMs: 5000, logger: Fastify({ logger: false }).log })
  worker.onRun(async (run, { attempt }) => {
    if (attempt === 1) {
      report(`worker: ${run.status.padEnd(7)} run ${run.run_id}  attempt 1 failed (the CRM timed out); BullMQ retries it`)
      throw new Error('the CRM timed out')
    }
    report(`worker: ${run.status.padEnd(7)} run ${run.run_id}  handled on attempt ${attempt}`)
  })
  return worker
}

if (role === 'web') {
  const app = await web(process.env.REDIS_URL!, process.env.LANGGRAPH_WEBHOOK_TOKEN ?? randomBytes(32).toString('hex'), Number(process.env.PORT ?? 3000))
  console.log(`web: storing runs posted to ${app.listeningOrigin}${app.langgraphWebhooks.path}?token=… in ${process.env.REDIS_URL}`)
  process.once('SIGINT', () => { app.close().then(() => process.exit(0)) })
} else if (role === 'worker') {
  const running = worker(process.env.REDIS_URL!, (line) => { process.send?.(line) ?? console.log(line) })
  process.once('SIGTERM', () => { running.close().then(() => process.exit(0)) })
  process.once('SIGINT', () => { running.close().then(() => process.exit(0)) })
  process.send?.('ready')
} else {
  // Both, as separate processes, against a Redis of our own unless REDIS_URL is set.
  const local = process.env.REDIS_URL === undefined ? await startLocalRedis() : undefined
  const redisUrl = process.env.REDIS_URL ?? local?.url
  if (redisUrl === undefined) {
    console.error('examples/queue.ts needs Redis: install redis-server (apt-get install redis-server, brew install redis) or set REDIS_URL')
    process.exit(1)
  }
  const token = randomBytes(32).toString('hex')
  const app = await web(redisUrl, token, 0)
  const child = fork(fileURLToPath(import.meta.url), ['worker'], { env: { ...process.env, REDIS_URL: redisUrl } })
  const handled = new Set<string>()
  const allHandled = new Promise<void>((resolve) => {
    child.on('message', (line: string) => {
      if (line === 'ready') return
      console.log(line)
      const match = / run (\S+) {2}handled/.exec(line)
      if (match !== null) handled.add(match[1]!)
      if (handled.size === 3) resolve()
    })
  })

  for (const status of ['success', 'error', 'interrupted'] as const) {
    const run = buildRunWebhook({ status, ...(status === 'error' ? { error: 'the model refused' } : {}) })
    const reply = await fetch(`${app.listeningOrigin}${app.langgraphWebhooks.path}?token=${token}`, {
      method: 'POST',
      headers: { 'content-type': 'text/plain;charset=UTF-8' },
      body: JSON.stringify(run)
    })
    console.log(`web:    ${status.padEnd(7)} run ${run.run_id}  ${reply.status} (stored in Redis)`)
  }
  await allHandled
  let counts = await app.langgraphWebhooks.queue.counts()
  while (counts.completed < 3) {
    await new Promise((resolve) => setTimeout(resolve, 20))
    counts = await app.langgraphWebhooks.queue.counts()
  }
  console.log('queue:', counts)
  child.kill('SIGTERM')
  await new Promise((resolve) => child.once('exit', resolve))
  await app.close()
  await local?.stop()
}
