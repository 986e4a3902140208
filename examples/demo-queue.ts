// The demo's queued path (`npm run demo`, when redis-server is on the PATH):
// a receiver with `queue` stores the webhook in Redis, answers 202, and its
// worker runs the listener; the listener fails its first attempt, and BullMQ
// retries it.
import type { AddressInfo } from 'node:net'
import Fastify from 'fastify'
import langgraphWebhooks from '../lib/index.js'
import { describeRun } from './app.js'
import type { LangGraphServer } from './langgraph-server.js'
import { startLocalRedis } from './redis-server.js'

export async function demoQueuedPath ({ client, graphId }: LangGraphServer, token: string, timeoutMs: number): Promise<void> {
  const redis = await startLocalRedis()
  if (redis === undefined) {
    console.log('\n(redis-server is not on the PATH: the queued path is skipped; see docs/durable-delivery.md)')
    return
  }
  const app = Fastify({ logger: { level: 'fatal' } })
  let timer: NodeJS.Timeout | undefined
  try {
    await app.register(langgraphWebhooks, { token, queue: { connection: redis.url, backoffMs: 200 } })
    const handled = new Promise<void>((resolve) => {
      app.langgraphWebhooks.onRun((run, { attempt }) => {
        if (attempt === 1) {
          console.log(`queued: attempt 1 of run ${run.run_id} failed on purpose; BullMQ retries it`)
          throw new Error('a downstream API had a bad moment')
        }
        console.log(`queued: ${describeRun(run)}  (attempt ${attempt})`)
        resolve()
      })
    })
    await app.listen({ port: 0, host: '127.0.0.1' })
    const { port } = app.server.address() as AddressInfo
    const webhook = `http://127.0.0.1:${port}${app.langgraphWebhooks.path}?token=${token}`
    console.log('\nthe queued path: a receiver with queue (Redis at ' + redis.url + ') stores the webhook, then its worker runs the listener')
    const thread = await client.threads.create()
    await client.runs.create(thread.thread_id, graphId, { input: { messages: ['queued'] }, webhook })
    await Promise.race([handled, new Promise((resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`the queued run was not handled within ${timeoutMs} ms`)), timeoutMs)
    })])
  } finally {
    clearTimeout(timer)
    await app.close()
    await redis.stop()
  }
}
