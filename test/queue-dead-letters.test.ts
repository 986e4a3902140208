// Operating the dead letters against a real redis-server: bulk replay
// (queue.retryFailed) and alerts (queue.onDeadLetter, worker.onDeadLetter).
import t from 'tap'
import { createRunWorker } from '../lib/queue/index.js'
import type { FailedRun, RunWebhook } from '../lib/index.js'
import { buildRunWebhook, deliverRun } from '../lib/testing.js'
import { startRedisServer } from './helpers/redis-server.js'
import { instance, queueName, token, until } from './helpers/queue.js'
import { watchProcess } from './helpers/process.js'

const server = await startRedisServer()
t.teardown(() => server.stop())

const MASKED = 'https://app.example/webhooks/langgraph?token=[REDACTED]'

function withToken (run: RunWebhook): RunWebhook {
  return { ...run, kwargs: { ...run.kwargs, webhook: `https://app.example/webhooks/langgraph?token=${token}` } }
}

t.test('retryFailed({ since }) queues again, attempts reset, exactly the dead letters failed since then, and says how many', async (t) => {
  const { app } = await instance(t, server, { name: queueName(), attempts: 1 })
  const broken = new Set<string>()
  const handled: Array<{ runId: string, attempt: number }> = []
  app.langgraphWebhooks.onRun(async (run, { attempt }) => {
    if (broken.has(run.run_id)) throw new Error('CRM down')
    handled.push({ runId: run.run_id, attempt })
  })
  await app.ready()
  const queue = app.langgraphWebhooks.queue
  const send = async (runs: RunWebhook[]) => {
    for (const run of runs) {
      broken.add(run.run_id)
      t.equal((await deliverRun(app, run, { token })).statusCode, 202)
    }
    await until(async () => (await queue.counts()).failed === broken.size, 10_000, `${broken.size} dead letters`)
  }

  const before = Array.from({ length: 3 }, () => buildRunWebhook())
  await send(before)
  const since = new Date(Math.max(...(await queue.failed()).map((failed) => failed.failedAt.getTime())) + 1)
  await until(() => Date.now() > since.getTime())
  const after = [buildRunWebhook(), buildRunWebhook(), buildRunWebhook({ status: 'error', error: 'boom' })]
  await send(after)

  // The outage is over: what failed since then runs again, once.
  broken.clear()
  t.equal(await queue.retryFailed({ since, status: 'error' }), 1, 'the one of that status')
  t.equal(await queue.retryFailed({ since: since.getTime() }), 2, 'the others (epoch ms works as a Date does)')
  await until(() => handled.length === 3, 10_000, 'the three retried runs handled')
  t.same(handled.map((one) => one.runId).sort(), after.map((run) => run.run_id).sort(), 'exactly the runs that failed since then')
  t.ok(handled.every((one) => one.attempt === 1), 'with their attempts reset')
  t.equal(await queue.retryFailed({ since }), 0, 'nothing left to retry since then')
  t.same((await queue.failed()).map((failed) => failed.run.run_id).sort(), before.map((run) => run.run_id).sort(), 'the older dead letters stay')

  // Bounded by limit: the rest on the next call.
  t.equal(await queue.retryFailed({ limit: 2 }), 2)
  t.equal(await queue.retryFailed(), 1)
  await until(async () => (await queue.counts()).completed === 6, 10_000, 'every run completed')
  t.equal(handled.length, 6, 'each run handled once')
  t.same(await queue.counts(), { waiting: 0, active: 0, delayed: 0, failed: 0, completed: 6 })
})

t.test('retryFailed refuses arguments it cannot read, rather than retrying every dead letter', async (t) => {
  const { app } = await instance(t, server, { name: queueName(), worker: false })
  const retryFailed = app.langgraphWebhooks.queue.retryFailed as (options?: unknown) => Promise<number>
  const refused = [
    [{ sinse: new Date() }, /unknown option "sinse"/],
    [{ since: '09:00' }, /since must be a Date or a time in epoch milliseconds/],
    [{ since: new Date('nope') }, /since must be a Date/],
    [{ status: '' }, /status must be a run status/],
    [{ status: 3 }, /status must be a run status/],
    [{ limit: 0 }, /limit must be a positive integer/],
    [{ limit: 1.5 }, /limit must be a positive integer/],
    [null, /give an object, or nothing/],
    ['error', /give an object, or nothing/]
  ] as const
  for (const [given, message] of refused) {
    await t.rejects(retryFailed(given), { code: 'FST_LANGGRAPH_WEBHOOKS_INVALID_ARGUMENT', message }, JSON.stringify(given))
  }
})

t.test('onDeadLetter: once per run that exhausted its attempts, not for attempts that will be retried; unsubscribed listeners are not called', async (t) => {
  const { app, lines } = await instance(t, server, { name: queueName(), attempts: 3, backoffMs: 5 })
  let flaky = 0
  app.langgraphWebhooks.onRun(async (run) => {
    if (run.status === 'error') throw new Error(`CRM rejected run ${run.run_id}`)
    // The first attempt of a success fails, its retry succeeds: no dead letter.
    if (flaky++ === 0) throw new Error('flaky')
  })
  const dead: FailedRun[] = []
  app.langgraphWebhooks.queue.onDeadLetter((failedRun, { log }) => {
    log.info('alerted')
    dead.push(failedRun)
  })
  const off = app.langgraphWebhooks.queue.onDeadLetter(() => { throw new Error('unsubscribed, never called') })
  off()
  await app.ready()

  const recovering = buildRunWebhook()
  const failing = withToken(buildRunWebhook({ status: 'error', error: 'boom' }))
  t.equal((await deliverRun(app, recovering, { token })).statusCode, 202)
  t.equal((await deliverRun(app, failing, { token })).statusCode, 202)
  await until(() => dead.length === 1, 10_000, 'the alert')
  await until(async () => (await app.langgraphWebhooks.queue.counts()).completed === 1, 10_000, 'the recovering run completed')

  t.equal(dead.length, 1, 'one alert: the run retried after a failure is no dead letter')
  const [alert] = dead
  t.equal(alert.run.run_id, failing.run_id)
  t.equal(alert.run.kwargs.webhook, MASKED, 'token masked')
  t.equal(alert.attempts, 3)
  t.equal(alert.error, `1 listener failed for run ${failing.run_id} (error): CRM rejected run ${failing.run_id}`)
  t.ok(alert.failedAt instanceof Date)
  const [listed] = await app.langgraphWebhooks.queue.failed()
  t.same(alert, listed, 'shaped as queue.failed() lists it')
  t.match(lines.find((line) => line.msg === 'alerted'), { run_id: failing.run_id, thread_id: failing.thread_id, status: 'error' }, 'its log is bound to the run')
  t.notOk(lines.some((line) => line.msg?.startsWith('a dead-letter listener failed')), 'the unsubscribed listener was not called')
})

t.test('a dead-letter listener that throws, or rejects with anything, is logged and changes nothing else', async (t) => {
  const escaped = watchProcess(t)
  const { app, lines } = await instance(t, server, { name: queueName(), attempts: 1 })
  let broken = true
  const handled: string[] = []
  app.langgraphWebhooks.onRun((run) => {
    if (broken) throw new Error('down')
    handled.push(run.run_id)
  })
  const revoked = Proxy.revocable({}, {})
  revoked.revoke()
  const hostile: Array<() => unknown> = [
    () => { throw new Error('pager down') },
    () => Promise.reject(revoked.proxy),
    () => ({ get then () { throw new Error('then') } }),
    // eslint-disable-next-line prefer-promise-reject-errors
    () => Promise.reject(null)
  ]
  let calls = 0
  for (const listener of hostile) app.langgraphWebhooks.queue.onDeadLetter(() => { calls++; return listener() })
  const alerted: string[] = []
  app.langgraphWebhooks.queue.onDeadLetter((failedRun) => { alerted.push(failedRun.run.run_id) })
  await app.ready()

  const run = buildRunWebhook()
  t.equal((await deliverRun(app, run, { token })).statusCode, 202)
  await until(() => lines.filter((line) => line.msg === 'a dead-letter listener failed (it is not called again for this run)').length === 4, 10_000, 'four failures logged')
  const logged = lines.filter((line) => line.msg === 'a dead-letter listener failed (it is not called again for this run)')
  t.same(logged.map((line) => line.err.message).sort(), ['[unprintable value]', 'null', 'pager down', 'then'].sort(), 'each described')
  t.ok(logged.every((line) => line.level === 50 && line.run_id === run.run_id))
  t.same(alerted, [run.run_id], 'the other listener was told')
  t.equal(calls, 4, 'each called once, never retried')
  t.same(await app.langgraphWebhooks.queue.counts(), { waiting: 0, active: 0, delayed: 0, failed: 1, completed: 0 }, 'the run is a dead letter as before')

  broken = false
  t.equal(await app.langgraphWebhooks.queue.retry(run.run_id, run.status), true, 'and can be retried')
  const next = buildRunWebhook()
  t.equal((await deliverRun(app, next, { token })).statusCode, 202)
  await until(() => handled.length === 2, 10_000, 'both runs handled')
  t.same(handled.sort(), [run.run_id, next.run_id].sort())
  t.equal(calls, 4, 'no listener called again')
  t.same(escaped, [], 'nothing escaped to the process')
})

t.test('createRunWorker: worker.onDeadLetter, in the worker whose last attempt failed', async (t) => {
  const name = queueName()
  const { app, client } = await instance(t, server, { name, worker: false, attempts: 2, backoffMs: 5 })
  await app.ready()
  const web: FailedRun[] = []
  app.langgraphWebhooks.queue.onDeadLetter((failedRun) => { web.push(failedRun) })
  t.throws(() => app.langgraphWebhooks.queue.onDeadLetter('alert' as never), { code: 'FST_LANGGRAPH_WEBHOOKS_INVALID_ARGUMENT', message: /listener must be a function/ })

  const worker = createRunWorker({ connection: client, name, lockMs: 1000, logger: app.log })
  t.teardown(() => worker.close())
  worker.onRun(() => { throw new Error('always') })
  const dead: FailedRun[] = []
  worker.onDeadLetter((failedRun) => { dead.push(failedRun) })
  const run = withToken(buildRunWebhook())
  t.equal((await deliverRun(app, run, { token })).statusCode, 202)
  await until(() => dead.length === 1, 10_000, 'the worker told')
  t.equal(dead[0].run.kwargs.webhook, MASKED)
  t.equal(dead[0].attempts, 2)
  t.same(web, [], 'a web process without a worker is not told: its worker did not fail the run')
})

t.test('Redis refusing writes: retry and retryFailed reject with its error, and the run stays a dead letter', async (t) => {
  const { app, client } = await instance(t, server, { name: queueName(), attempts: 1 })
  app.langgraphWebhooks.onRun(() => { throw new Error('down') })
  await app.ready()
  const run = buildRunWebhook()
  t.equal((await deliverRun(app, run, { token })).statusCode, 202)
  await until(async () => (await app.langgraphWebhooks.queue.counts()).failed === 1, 10_000, 'a dead letter')
  // A Redis that must write to replicas it does not have refuses every write.
  await client.config('SET', 'min-replicas-to-write', '1')
  t.teardown(() => client.config('SET', 'min-replicas-to-write', '0'))
  await t.rejects(app.langgraphWebhooks.queue.retry(run.run_id, run.status), /NOREPLICAS/)
  await t.rejects(app.langgraphWebhooks.queue.retryFailed(), /NOREPLICAS/)
  await client.config('SET', 'min-replicas-to-write', '0')
  t.same(await app.langgraphWebhooks.queue.counts(), { waiting: 0, active: 0, delayed: 0, failed: 1, completed: 0 }, 'still a dead letter')
})
