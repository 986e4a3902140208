/**
 * Operating the queue: bull-board beside the webhook route, behind basic
 * auth, and a health route on the queue's counts (docs/operations.md).
 *
 *   npm run example:dashboard    # against a redis-server of its own (or REDIS_URL); Ctrl-C stops it
 *
 * It sends itself three runs. The listener fails the `error` run on both of
 * its attempts (the CRM refuses the contact), so the dashboard shows it
 * failed, with the error; Retry there gives it one more attempt, which works.
 * PORT (3000), DASHBOARD_USER (admin), DASHBOARD_PASSWORD (random, printed).
 */
import { randomBytes } from 'node:crypto'
import Fastify from 'fastify'
import underPressure from '@fastify/under-pressure'
import langgraphWebhooks from '../lib/index.js'
import { buildRunWebhook } from '../lib/testing.js'
import { dashboard } from './bull-board.js'
import { queueHealth } from './health.js'
import { startLocalRedis } from './redis-server.js'

const ATTEMPTS = 2
const local = process.env.REDIS_URL === undefined ? await startLocalRedis() : undefined
const redisUrl = process.env.REDIS_URL ?? local?.url
if (redisUrl === undefined) {
  console.error('examples/dashboard.ts needs Redis: install redis-server (apt-get install redis-server, brew install redis) or set REDIS_URL')
  process.exit(1)
}
const token = process.env.LANGGRAPH_WEBHOOK_TOKEN ?? randomBytes(32).toString('hex')
const user = process.env.DASHBOARD_USER ?? 'admin'
const password = process.env.DASHBOARD_PASSWORD ?? randomBytes(12).toString('base64url')

// The lines printed here say what happens; the plugin's own log of each failed attempt stays quiet.
const app = Fastify({ logger: { level: 'fatal' } })
await app.register(langgraphWebhooks, {
  token,
  queue: { connection: redisUrl, name: 'langgraph-webhooks-dashboard', attempts: ATTEMPTS, backoffMs: 200 }
})
app.langgraphWebhooks.onRun(async (run, { attempt }) => {
  if (run.status === 'error' && attempt <= ATTEMPTS) {
    console.log(`listener: ${run.status.padEnd(7)} run ${run.run_id}  attempt ${attempt} failed (the CRM refused the contact)`)
    throw new Error('the CRM refused the contact: 422 email is invalid')
  }
  console.log(`listener: ${run.status.padEnd(7)} run ${run.run_id}  handled on attempt ${attempt}`)
})
await app.register(dashboard, { path: '/admin/queues', user, password })
await app.register(underPressure, queueHealth)
await app.listen({ port: Number(process.env.PORT ?? 3000), host: '127.0.0.1' })

const webhook = `${app.listeningOrigin}${app.langgraphWebhooks.path}?token=${token}`
for (const status of ['success', 'error', 'interrupted'] as const) {
  // kwargs.webhook as LangGraph echoes it, token included: the plugin masks it before the job is stored.
  const run = buildRunWebhook({ status, kwargs: { webhook }, ...(status === 'error' ? { error: 'the model refused' } : {}) })
  const reply = await fetch(webhook, { method: 'POST', headers: { 'content-type': 'text/plain;charset=UTF-8' }, body: JSON.stringify(run) })
  console.log(`sender:   ${status.padEnd(7)} run ${run.run_id}  ${reply.status}`)
}
console.log(`dashboard: ${app.listeningOrigin}/admin/queues (user ${user}, password ${password})`)
console.log(`health:    ${app.listeningOrigin}/health`)

process.once('SIGINT', () => {
  app.close().then(() => local?.stop()).then(() => process.exit(0))
})
