// The queue as BullMQ's own object, and bull-board on it as examples/bull-board.ts mounts it
// (docs/operations.md), through bull-board's HTTP API with inject, against a real redis-server;
// the under-pressure health check of examples/health.ts beside it.
import t, { type Test } from 'tap'
import Fastify from 'fastify'
import underPressure from '@fastify/under-pressure'
import { Queue } from 'bullmq'
import plugin, { type RunWebhook } from '../lib/index.js'
import { jobIdOf } from '../lib/queue/index.js'
import { buildRunWebhook, deliverRun } from '../lib/testing.js'
import { dashboard } from '../examples/bull-board.js'
import { queueHealth } from '../examples/health.js'
import { startRedisServer } from './helpers/redis-server.js'
import { instance, queueName, token, until } from './helpers/queue.js'

const server = await startRedisServer()
t.teardown(() => server.stop())

const user = 'ops'
const password = 'correct horse battery staple'
const authorization = `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`

function withToken (run: RunWebhook): RunWebhook {
  return { ...run, kwargs: { ...run.kwargs, webhook: `https://app.example/webhooks/langgraph?token=${token}` } }
}

/** An app whose listener fails while `failing.now` is set, with the dashboard on /admin/queues. */
async function withDashboard (t: Test, options: { readOnly?: boolean } = {}) {
  const name = queueName()
  const { app } = await instance(t, server, { name, attempts: 2, backoffMs: 10 })
  const failing = { now: true }
  const handled: Array<{ runId: string, attempt: number }> = []
  app.langgraphWebhooks.onRun(async (run, { attempt }) => {
    if (failing.now) throw new Error('the CRM refused the contact: 422 email is invalid')
    handled.push({ runId: run.run_id, attempt })
  })
  await app.register(dashboard, { user, password, ...options })
  await app.ready()
  const api = (method: 'GET' | 'PUT' | 'POST' | 'PATCH', url: string, payload?: object) =>
    app.inject({ method, url: `/admin/queues${url}`, headers: { authorization }, payload })
  return { app, name, failing, handled, api }
}

/** Delivers a run and waits until it is in the failed set. */
async function failedRun (t: Test, setup: Awaited<ReturnType<typeof withDashboard>>): Promise<RunWebhook> {
  const run = withToken(buildRunWebhook({ status: 'error', error: 'the model refused' }))
  const before = (await setup.app.langgraphWebhooks.queue.counts()).failed
  t.equal((await deliverRun(setup.app, run, { token })).statusCode, 202)
  await until(async () => (await setup.app.langgraphWebhooks.queue.counts()).failed === before + 1, 30_000, 'the run in the failed set')
  return run
}

t.test('app.langgraphWebhooks.queue.bullmq is the plugin\'s BullMQ Queue; without the queue option, reading it throws', async (t) => {
  const name = queueName()
  const { app } = await instance(t, server, { name, worker: false })
  await app.ready()
  const queue = app.langgraphWebhooks.queue.bullmq
  t.ok(queue instanceof Queue, 'a BullMQ Queue')
  t.equal(queue.name, name, 'of the plugin\'s queue name')
  const run = buildRunWebhook()
  t.equal((await deliverRun(app, run, { token })).statusCode, 202)
  const job = await queue.getJob(jobIdOf(run.run_id, run.status))
  t.equal(job?.data.run.run_id, run.run_id, 'the run the route stored, read with BullMQ\'s own API')
  t.equal(await job?.getState(), 'waiting')

  const without = Fastify()
  await without.register(plugin, { token })
  t.throws(() => without.langgraphWebhooks.queue.bullmq, { code: 'FST_LANGGRAPH_WEBHOOKS_NO_QUEUE' })
})

t.test('bull-board lists a failed run with the listener\'s message and no token; its Retry leads to one handled run', async (t) => {
  const setup = await withDashboard(t)
  const { name, api, failing, handled, app } = setup
  const run = await failedRun(t, setup)
  const jobId = jobIdOf(run.run_id, run.status)

  const list = await api('GET', `/api/queues?activeQueue=${name}&status=failed&page=1&jobsPerPage=10`)
  t.equal(list.statusCode, 200)
  const [queue] = list.json().queues
  t.equal(queue.name, name)
  t.match(queue.counts, { failed: 1, completed: 0 })
  t.equal(queue.jobs.length, 1)
  const [job] = queue.jobs
  t.equal(job.id, jobId)
  t.equal(job.attempts, 2)
  t.match(job.failedReason, /the CRM refused the contact: 422 email is invalid/)
  t.equal(job.data.run.kwargs.webhook, 'https://app.example/webhooks/langgraph?token=[REDACTED]', 'the token masked in the job data')
  t.equal(job.data.run.error, 'the model refused')

  // Everything the dashboard serves about the run: the list, the job, its logs, the page.
  const served = new Map([
    ['the list', list],
    ['the job', await api('GET', `/api/queues/${name}/${jobId}`)],
    ['its logs', await api('GET', `/api/queues/${name}/${jobId}/logs`)],
    ['the latest jobs', await api('GET', `/api/queues?activeQueue=${name}&status=latest`)],
    ['the job\'s page', await api('GET', `/queue/${name}/${jobId}`)]
  ])
  for (const [what, reply] of served) {
    t.equal(reply.statusCode, 200, what)
    t.notOk(reply.body.includes(token), `no token in ${what}`)
  }
  t.match(served.get('the job')!.json().job, { id: jobId, failedReason: /the CRM refused the contact/ })

  failing.now = false
  const retried = await api('PUT', `/api/queues/${name}/${jobId}/retry`)
  t.equal(retried.statusCode, 204)
  await until(async () => (await app.langgraphWebhooks.queue.counts()).completed === 1, 30_000, 'the retried run completed')
  t.same(handled, [{ runId: run.run_id, attempt: 3 }], 'handled once, on a third attempt: bull-board\'s Retry does not reset attempts')
  t.match(await app.langgraphWebhooks.queue.counts(), { failed: 0, completed: 1, waiting: 0, active: 0 })
})

t.test('the dashboard is behind basic auth; the webhook route beside it is not', async (t) => {
  const { app, name } = await withDashboard(t)
  for (const url of ['/admin/queues', `/admin/queues/queue/${name}`, '/admin/queues/api/queues', `/admin/queues/api/queues/${name}/x/retry`]) {
    const anonymous = await app.inject({ method: url.endsWith('retry') ? 'PUT' : 'GET', url })
    t.equal(anonymous.statusCode, 401, url)
    t.match(anonymous.headers['www-authenticate'], /^Basic realm="run webhooks"/)
  }
  for (const [who, secret] of [[user, 'wrong'], ['root', password], [user, '']]) {
    const wrong = await app.inject({ url: '/admin/queues/api/queues', headers: { authorization: `Basic ${Buffer.from(`${who}:${secret}`).toString('base64')}` } })
    t.equal(wrong.statusCode, 401, `${who}:${secret}`)
  }
  t.equal((await deliverRun(app, buildRunWebhook(), { token })).statusCode, 202)
})

t.test('the dashboard changes dead letters only: completed runs, waiting runs and job data stay as they are', async (t) => {
  const setup = await withDashboard(t)
  const { name, api, failing, app } = setup
  failing.now = false
  const done = buildRunWebhook()
  t.equal((await deliverRun(app, done, { token })).statusCode, 202)
  await until(async () => (await app.langgraphWebhooks.queue.counts()).completed === 1)
  failing.now = true
  const failed = await failedRun(t, setup)
  const doneId = jobIdOf(done.run_id, done.status)
  const failedId = jobIdOf(failed.run_id, failed.status)

  const refused: Array<[method: 'PUT' | 'POST' | 'PATCH', url: string, payload?: object]> = [
    ['PUT', `/api/queues/${name}/clean/completed`],
    ['PUT', `/api/queues/${name}/clean/wait`],
    ['PUT', `/api/queues/${name}/${doneId}/clean`],
    ['PUT', `/api/queues/${name}/retry/completed`],
    ['PUT', `/api/queues/${name}/${doneId}/retry`],
    ['PUT', `/api/queues/${name}/empty`],
    ['PUT', `/api/queues/${name}/obliterate`, {}],
    ['POST', `/api/queues/${name}/add`, { name: 'success', data: { run: done } }],
    ['PATCH', `/api/queues/${name}/${failedId}/update-data`, { jobData: { run: { ...failed, status: 'success' } } }]
  ]
  for (const [method, url, payload] of refused) {
    t.equal((await api(method, url, payload)).statusCode, 403, `${method} ${url}`)
  }
  t.match(await app.langgraphWebhooks.queue.counts(), { completed: 1, failed: 1, waiting: 0 }, 'nothing changed')
  t.equal((await app.langgraphWebhooks.queue.failed())[0]?.run.status, 'error', 'the job data as stored')

  t.equal((await api('PUT', `/api/queues/${name}/pause`)).statusCode, 200, 'pausing loses nothing')
  t.equal((await api('PUT', `/api/queues/${name}/resume`)).statusCode, 200)
  t.equal((await api('PUT', `/api/queues/${name}/${failedId}/clean`)).statusCode, 204, 'a dead letter can be removed')
  t.match(await app.langgraphWebhooks.queue.counts(), { completed: 1, failed: 0 })
  t.equal(await app.langgraphWebhooks.queue.bullmq.getJob(failedId), undefined, 'the dead letter is gone')
})

t.test('read-only, the dashboard shows the dead letters and changes nothing', async (t) => {
  const setup = await withDashboard(t, { readOnly: true })
  const { name, api, app } = setup
  const run = await failedRun(t, setup)
  const list = await api('GET', `/api/queues?activeQueue=${name}&status=failed`)
  t.match(list.json().queues[0], { readOnlyMode: true, allowRetries: false, jobs: [{ failedReason: /the CRM refused the contact/ }] })
  t.equal((await api('PUT', `/api/queues/${name}/${jobIdOf(run.run_id, run.status)}/retry`)).statusCode, 405)
  t.equal((await api('PUT', `/api/queues/${name}/retry/failed`)).statusCode, 405)
  t.match(await app.langgraphWebhooks.queue.counts(), { failed: 1 })
})

t.test('under-pressure\'s status route reports the queue\'s counts, and 503 while Redis does not answer', async (t) => {
  const own = await startRedisServer()
  t.teardown(() => own.stop())
  const { app } = await instance(t, own, { name: queueName(), worker: false })
  await app.register(underPressure, queueHealth)
  t.equal((await deliverRun(app, buildRunWebhook(), { token })).statusCode, 202)
  const healthy = await app.inject('/health')
  t.equal(healthy.statusCode, 200)
  t.same(healthy.json(), { status: 'ok', waiting: 1, active: 0, delayed: 0, failed: 0, completed: 0 })

  await own.stop()
  const down = await app.inject('/health')
  t.equal(down.statusCode, 503)
  t.equal(down.headers['retry-after'], '10')
  await own.start()
  await until(async () => (await app.inject('/health')).statusCode === 200, 30_000, 'healthy again')
})
