// Durable delivery on BullMQ against a real redis-server (test/helpers/redis-server.ts):
// the route stores runs as jobs, workers in the same process run the listeners.
import { setTimeout as sleep } from 'node:timers/promises'
import { once } from 'node:events'
import t from 'tap'
import Fastify from 'fastify'
import { Redis } from 'ioredis'
import plugin, { RETRY_AFTER_SECONDS, type RunContext, type RunWebhook } from '../lib/index.js'
import { createRunWorker } from '../lib/queue/index.js'
import { jobIdOf } from '../lib/queue/index.js'
import { buildRunWebhook, deliverRun } from '../lib/testing.js'
import { startRedisServer } from './helpers/redis-server.js'
import { connect, instance, queueName, token, until } from './helpers/queue.js'

const server = await startRedisServer()
t.teardown(() => server.stop())

function withToken (run: RunWebhook): RunWebhook {
  return { ...run, kwargs: { ...run.kwargs, webhook: `https://app.example/webhooks/langgraph?token=${token}` } }
}

t.test('a run is stored and answered 202; the worker runs the listeners with { log, attempt } and no request; a duplicate is 202 without a second job', async (t) => {
  const name = queueName()
  const { app, client, lines } = await instance(t, server, { name })
  const seen: Array<{ run: RunWebhook, context: RunContext }> = []
  app.langgraphWebhooks.onRun('success', (run, context) => {
    context.log.info('handled')
    seen.push({ run, context })
  })
  await app.ready()

  const run = withToken(buildRunWebhook())
  const first = await deliverRun(app, run, { token })
  t.equal(first.statusCode, 202)
  t.equal(first.body, '')
  const again = await deliverRun(app, run, { token })
  t.equal(again.statusCode, 202, 'a duplicate is 202 too')
  await until(() => seen.length === 1)
  await sleep(100)
  t.equal(seen.length, 1, 'listeners ran once')

  const { run: got, context } = seen[0]!
  t.equal(got.run_id, run.run_id)
  t.equal(got.kwargs.webhook, 'https://app.example/webhooks/langgraph?token=[REDACTED]', 'token masked for the listener')
  t.equal(context.attempt, 1)
  t.equal(context.request, undefined)
  t.equal(context.reconciled, false)
  const line = lines.find((l) => l.msg === 'handled')!
  t.match(line, { run_id: run.run_id, thread_id: run.thread_id, status: 'success', attempt: 1 }, 'log bound with run_id, thread_id, status and attempt')
  t.ok(lines.some((l) => l.msg === 'duplicate run webhook acknowledged: the run is already queued'))

  // What Redis holds: one job, keyed by run and status, without the token anywhere.
  const keys = await client.keys(`bull:${name}:*`)
  t.same(keys.filter((key) => key.includes(run.run_id)), [`bull:${name}:${run.run_id}.success`])
  for (const key of keys) {
    const type = await client.type(key)
    const dump = type === 'hash'
      ? JSON.stringify(await client.hgetall(key))
      : type === 'stream' ? JSON.stringify(await client.xrange(key, '-', '+')) : ''
    t.notOk(dump.includes(token), `no token in ${key}`)
  }
  t.same(await app.langgraphWebhooks.queue.counts(), { waiting: 0, active: 0, delayed: 0, failed: 0, completed: 1 })
  const ttl = await client.ttl(`bull:${name}:${run.run_id}.success`)
  t.equal(ttl, -1, 'completed jobs are removed by age as others complete, not by a TTL')
})

t.test('300 runs sent once each, 20 % of listener attempts failing, duplicates mixed in: every run handled exactly once, none lost', async (t) => {
  const name = queueName()
  const queue = { name, backoffMs: 5, attempts: 10, concurrency: 8 }
  const a = await instance(t, server, queue)
  const b = await instance(t, server, queue)
  const handled = new Map<string, number>()
  let attempts = 0
  let failures = 0
  for (const { app } of [a, b]) {
    app.langgraphWebhooks.onRun(async (run) => {
      attempts++
      await sleep(Math.random() * 3)
      if (Math.random() < 0.2) {
        failures++
        throw new Error('downstream API failed')
      }
      handled.set(run.run_id, (handled.get(run.run_id) ?? 0) + 1)
    })
    await app.ready()
  }

  const runs = Array.from({ length: 300 }, () => buildRunWebhook())
  // One delivery per run, as the JS server sends; a fifth of them also arrive
  // again, later and on the other instance, as a retrying sender's would.
  const sends = runs.map((run, i) => ({ run, app: i % 2 === 0 ? a.app : b.app }))
  for (const [i, run] of runs.entries()) if (i % 5 === 0) sends.push({ run, app: i % 2 === 0 ? b.app : a.app })
  const codes = new Map<number, number>()
  for (let i = 0; i < sends.length; i += 30) {
    await Promise.all(sends.slice(i, i + 30).map(async ({ run, app }) => {
      const reply = await deliverRun(app, run, { token })
      codes.set(reply.statusCode, (codes.get(reply.statusCode) ?? 0) + 1)
    }))
  }
  t.same([...codes], [[202, 360]], 'every delivery answered 202')

  await until(() => handled.size === 300, 30_000, 'every run handled')
  await until(async () => (await a.app.langgraphWebhooks.queue.counts()).completed === 300, 30_000, 'every job completed')
  t.ok([...handled.values()].every((count) => count === 1), 'each run handled exactly once')
  t.ok(failures > 20, `listener attempts failed (${failures} of ${attempts}) and were retried`)
  t.same(await b.app.langgraphWebhooks.queue.counts(), { waiting: 0, active: 0, delayed: 0, failed: 0, completed: 300 })
})

t.test('a run whose listener keeps failing ends in queue.failed() after its attempts; queue.retry runs it once fixed', async (t) => {
  const name = queueName()
  const { app } = await instance(t, server, { name, attempts: 3, backoffMs: 5 })
  let broken = true
  const attempts: number[] = []
  let handled = 0
  app.langgraphWebhooks.onRun('error', async (run, { attempt }) => {
    attempts.push(attempt)
    if (broken) throw new Error(`CRM rejected run ${run.run_id}`)
    handled++
  })
  app.langgraphWebhooks.onRun('error', () => {
    // eslint-disable-next-line no-throw-literal
    if (broken) throw 'a second listener threw a string'
  })
  await app.ready()

  const run = withToken(buildRunWebhook({ status: 'error', error: 'boom' }))
  t.equal((await deliverRun(app, run, { token })).statusCode, 202)
  await until(async () => (await app.langgraphWebhooks.queue.counts()).failed === 1)
  t.same(attempts, [1, 2, 3], 'three attempts, counted from 1')

  const [failed, ...rest] = await app.langgraphWebhooks.queue.failed()
  t.equal(rest.length, 0)
  t.equal(failed!.run.run_id, run.run_id)
  t.equal(failed!.run.kwargs.webhook, 'https://app.example/webhooks/langgraph?token=[REDACTED]', 'token masked in the dead letter')
  t.equal(failed!.attempts, 3)
  t.match(failed!.error, `2 listeners failed for run ${run.run_id} (error): CRM rejected run ${run.run_id}; a second listener threw a string`)
  t.ok(failed!.failedAt instanceof Date && Math.abs(Date.now() - failed!.failedAt.getTime()) < 10_000)
  t.same(await app.langgraphWebhooks.queue.failed({ offset: 1 }), [])

  t.equal((await deliverRun(app, run, { token })).statusCode, 202, "the sender's retry of a dead letter is a duplicate")
  t.equal(await app.langgraphWebhooks.queue.retry(run.run_id, 'success'), false, 'no such job')
  broken = false
  t.equal(await app.langgraphWebhooks.queue.retry(run.run_id, 'error'), true)
  await until(() => handled === 1)
  t.same(attempts, [1, 2, 3, 1], 'retried with its attempts reset')
  t.equal(await app.langgraphWebhooks.queue.retry(run.run_id, 'error'), false, 'a completed run is not retried')
  await sleep(50)
  t.equal(handled, 1)
  t.same(await app.langgraphWebhooks.queue.counts(), { waiting: 0, active: 0, delayed: 0, failed: 0, completed: 1 })
})

t.test('worker: false only enqueues; the runs are handled once a worker starts', async (t) => {
  const name = queueName()
  const { app, client } = await instance(t, server, { name, worker: false })
  let local = 0
  app.langgraphWebhooks.onRun(() => { local++ })
  await app.ready()
  const runs = Array.from({ length: 10 }, () => buildRunWebhook())
  for (const run of runs) t.equal((await deliverRun(app, run, { token })).statusCode, 202)
  await sleep(100)
  t.equal(local, 0, 'no listener runs in a web-only instance')
  t.same(await app.langgraphWebhooks.queue.counts(), { waiting: 10, active: 0, delayed: 0, failed: 0, completed: 0 })

  const handled: string[] = []
  const worker = createRunWorker({ connection: client, name, concurrency: 4, lockMs: 1000 })
  worker.onRun(['success'], (run, { attempt }) => { handled.push(`${run.run_id}:${attempt}`) })
  await until(() => handled.length === 10)
  await worker.close()
  t.same(handled.sort(), runs.map((run) => `${run.run_id}:1`).sort())
  t.equal(client.status, 'ready', "the user's connection stays open after the worker closed")
})

t.test('a run id holding ":" (refused by BullMQ in job ids) is stored under an escaped id', async (t) => {
  const name = queueName()
  const { app, client } = await instance(t, server, { name })
  const handled: string[] = []
  app.langgraphWebhooks.onRun((run) => { handled.push(run.run_id) })
  await app.ready()
  for (const runId of ['urn:run:1', 'urn%3Arun:1']) {
    t.equal((await deliverRun(app, buildRunWebhook({ run_id: runId }), { token })).statusCode, 202)
  }
  await until(() => handled.length === 2)
  t.same(handled.sort(), ['urn%3Arun:1', 'urn:run:1'])
  t.equal(jobIdOf('urn:run:1', 'success'), 'urn%3Arun%3A1.success')
  t.equal(await client.exists(`bull:${name}:urn%253Arun%3A1.success`), 1, 'distinct runs stay distinct')
})

t.test('graceful close with jobs in flight: listeners finish, then the connections made by the plugin close', async (t) => {
  const name = queueName()
  const observer = await connect(t, server)
  const clientsBefore = (await observer.client('LIST') as string).trim().split('\n').length
  const { lines, logger } = (await import('./helpers/log.js')).logSink('info')
  const app = Fastify({ logger })
  // Options rather than a client: the plugin makes its clients, and must close them.
  await app.register(plugin, { token, queue: { connection: { host: '127.0.0.1', port: server.port }, name, concurrency: 4, lockMs: 2000 } })
  const started: string[] = []
  const finished: string[] = []
  app.langgraphWebhooks.onRun(async (run) => {
    started.push(run.run_id)
    await sleep(300)
    finished.push(run.run_id)
  })
  await app.ready()
  const runs = Array.from({ length: 4 }, () => buildRunWebhook())
  for (const run of runs) t.equal((await deliverRun(app, run, { token })).statusCode, 202)
  await until(() => started.length === 4)
  const closing = Date.now()
  await app.close()
  t.equal(finished.length, 4, 'close() waited for the running listeners')
  t.ok(Date.now() - closing < 2000, 'within lockMs')
  t.notOk(lines.some((l) => l.level >= 50), 'nothing logged as an error')
  const completed = await observer.zcard(`bull:${name}:completed`)
  t.equal(completed, 4, 'their jobs completed before the worker closed')
  await until(async () => (await observer.client('LIST') as string).trim().split('\n').length === clientsBefore, 30_000, 'the plugin\'s clients closed')
})

t.test('close() waits for a stuck listener only up to lockMs; another worker then takes its run over', async (t) => {
  const name = queueName()
  const stuck = await instance(t, server, { name, lockMs: 400 })
  const other = await instance(t, server, { name, lockMs: 400, worker: false })
  let started = 0
  stuck.app.langgraphWebhooks.onRun(async () => {
    started++
    await new Promise(() => {}) // never settles
  })
  await stuck.app.ready()
  const run = buildRunWebhook()
  t.equal((await deliverRun(other.app, run, { token })).statusCode, 202)
  await until(() => started === 1)
  const closing = Date.now()
  await stuck.app.close()
  const took = Date.now() - closing
  t.ok(took >= 350 && took < 1500, `close() gave up after lockMs (${took} ms)`)
  t.ok(stuck.lines.some((l) => l.msg === 'run webhook listeners still running at shutdown are left to other workers'))
  t.equal(stuck.client.status, 'ready', "the user's client stays open")

  const attempts: number[] = []
  const worker = createRunWorker({ connection: other.client, name, lockMs: 400, logger: Fastify().log })
  worker.onRun((taken, { attempt }) => {
    if (taken.run_id === run.run_id) attempts.push(attempt)
  })
  t.teardown(() => worker.close())
  await until(() => attempts.length === 1, 30_000, 'the run taken over')
  t.same(attempts, [2], 'the takeover is the second attempt')
})

t.test('Redis stopped: 503 with Retry-After within addTimeoutMs while the client reconnects; 202 again once it is back', async (t) => {
  const own = await startRedisServer()
  t.teardown(() => own.stop())
  // A URL: the plugin's own client, which reports its connection errors to nobody but the queue.
  const { app, lines } = await instance(t, own, { name: queueName(), worker: false, addTimeoutMs: 300, connection: own.url })
  await app.ready()
  t.equal((await deliverRun(app, buildRunWebhook(), { token })).statusCode, 202)
  await own.stop()
  await sleep(50)
  const started = Date.now()
  const down = await deliverRun(app, buildRunWebhook(), { token })
  t.equal(down.statusCode, 503)
  t.equal(down.headers['retry-after'], String(RETRY_AFTER_SECONDS))
  t.equal(down.json().code, 'FST_LANGGRAPH_WEBHOOKS_QUEUE_UNAVAILABLE')
  t.ok(Date.now() - started < 600, 'answered within the bound')
  // Refused at once while the client waits to reconnect; within the bound while it tries.
  await until(async () => {
    await deliverRun(app, buildRunWebhook(), { token })
    return lines.some((l) => l.msg === 'the queue cannot store a run webhook: Redis is unreachable')
  }, 3000, 'a refusal without waiting')
  await own.start()
  await until(async () => (await deliverRun(app, buildRunWebhook(), { token })).statusCode === 202, 30_000, 'accepted again')
})

t.test('Redis stalled (SIGSTOP): 503 with Retry-After within addTimeoutMs, never a hang; the stalled add lands later and its retry is a duplicate', async (t) => {
  const own = await startRedisServer()
  t.teardown(() => own.stop())
  const name = queueName()
  const { app, client } = await instance(t, own, { name, addTimeoutMs: 300 })
  const handled: string[] = []
  app.langgraphWebhooks.onRun((run) => { handled.push(run.run_id) })
  await app.ready()
  t.equal((await deliverRun(app, buildRunWebhook(), { token })).statusCode, 202)
  await until(() => handled.length === 1)

  own.pause()
  t.teardown(() => own.resume())
  const run = buildRunWebhook()
  const started = Date.now()
  const stalled = await deliverRun(app, run, { token })
  const took = Date.now() - started
  t.equal(stalled.statusCode, 503)
  t.equal(stalled.headers['retry-after'], String(RETRY_AFTER_SECONDS))
  t.equal(stalled.json().code, 'FST_LANGGRAPH_WEBHOOKS_QUEUE_UNAVAILABLE')
  t.ok(took >= 290 && took < 800, `answered after addTimeoutMs (${took} ms)`)
  own.resume()

  await until(() => handled.length === 2, 30_000, 'the stalled add handled once Redis went on')
  t.equal(handled[1], run.run_id)
  t.equal((await deliverRun(app, run, { token })).statusCode, 202, "the sender's retry")
  await sleep(100)
  t.equal(handled.length, 2, 'is a duplicate: handled once')
  t.equal(client.status, 'ready')
})

t.test('Redis killed (SIGKILL) and restarted from its append-only file: nothing that got 202 is lost', async (t) => {
  const own = await startRedisServer({ appendonly: true })
  t.teardown(() => own.stop())
  const name = queueName()
  const web = await instance(t, own, { name, worker: false, addTimeoutMs: 300 })
  await web.app.ready()

  const accepted: string[] = []
  let refused = 0
  const send = async () => {
    const run = buildRunWebhook()
    const reply = await deliverRun(web.app, run, { token })
    if (reply.statusCode === 202) accepted.push(run.run_id)
    else if (reply.statusCode === 503) refused++
    else throw new Error(`unexpected ${reply.statusCode}`)
  }
  // Deliveries keep coming while Redis is killed.
  const sending = { on: true }
  const senders = Array.from({ length: 4 }, async () => { while (sending.on) await send() })
  await until(() => accepted.length >= 100)
  await own.kill()
  await sleep(50)
  sending.on = false
  await Promise.all(senders)
  for (let i = 0; i < 5; i++) await send() // refused at once while Redis is down
  t.ok(refused >= 5, `${refused} deliveries refused with 503 while Redis was down`)

  await own.start()
  const handled = new Set<string>()
  const worker = createRunWorker({ connection: own.url, name, concurrency: 16, lockMs: 1000, logger: web.app.log })
  worker.onRun((run) => { handled.add(run.run_id) })
  t.teardown(() => worker.close())
  await until(() => accepted.every((id) => handled.has(id)), 30_000, `all ${accepted.length} accepted runs handled`)
  t.pass(`all ${accepted.length} runs answered 202 were handled after the restart`)
})

t.test('Redis refusing writes (maxmemory reached, noeviction): 503 with Retry-After, and the error logged', async (t) => {
  const name = queueName()
  const { app, client, lines } = await instance(t, server, { name, worker: false })
  await app.ready()
  await client.config('SET', 'maxmemory-policy', 'noeviction')
  await client.config('SET', 'maxmemory', '1')
  t.teardown(() => client.config('SET', 'maxmemory', '0'))
  const full = await deliverRun(app, buildRunWebhook(), { token })
  await client.config('SET', 'maxmemory', '0')
  t.equal(full.statusCode, 503)
  t.equal(full.headers['retry-after'], String(RETRY_AFTER_SECONDS))
  t.match(lines.find((l) => l.msg === 'the queue failed to store a run webhook'), { level: 50, err: { message: /OOM/ } })
  t.equal((await deliverRun(app, buildRunWebhook(), { token })).statusCode, 202, 'accepted again once Redis has room')
})

t.test("with a queue, a delivery received by one instance resolves waitForRun on every instance (the queue's Redis)", async (t) => {
  const name = queueName()
  const a = await instance(t, server, { name, worker: false })
  const b = await instance(t, server, { name })
  await a.app.ready()
  await b.app.ready()
  const run = withToken(buildRunWebhook())
  const waiting = b.app.langgraphWebhooks.waitForRun(run.run_id, { timeoutMs: 3000 })
  await sleep(100) // the relay's subscription is made at registration; give it its round-trip
  t.equal((await deliverRun(a.app, run, { token })).statusCode, 202)
  const got = await waiting
  t.equal(got.run_id, run.run_id)
  t.equal(got.kwargs.webhook, 'https://app.example/webhooks/langgraph?token=[REDACTED]', 'the token masked for the waiter too')
})

t.test('without the queue option, app.langgraphWebhooks.queue says how to set it', async (t) => {
  const app = Fastify()
  await app.register(plugin, { token })
  const { queue } = app.langgraphWebhooks
  for (const call of [() => queue.counts(), () => queue.failed(), () => queue.retry('x', 'success'), () => queue.retryFailed({ since: 0 })] as Array<() => Promise<unknown>>) {
    await t.rejects(call(), { code: 'FST_LANGGRAPH_WEBHOOKS_NO_QUEUE' })
  }
  t.throws(() => queue.onDeadLetter(() => {}), { code: 'FST_LANGGRAPH_WEBHOOKS_NO_QUEUE' })
})

t.test('a client the plugin did not make stays open after close; the queue works with a redis:// URL', async (t) => {
  const name = queueName()
  const app = Fastify()
  await app.register(plugin, { token, queue: { connection: server.url, name } })
  const handled: string[] = []
  app.langgraphWebhooks.onRun((run) => { handled.push(run.run_id) })
  await app.ready()
  t.equal((await deliverRun(app, buildRunWebhook(), { token })).statusCode, 202)
  await until(() => handled.length === 1)
  await app.close()

  const client = new Redis(server.url)
  t.teardown(() => client.disconnect())
  await once(client, 'ready')
  const user = Fastify()
  await user.register(plugin, { token, queue: { connection: client, name } })
  await user.ready()
  await user.close()
  t.equal(client.status, 'ready')
  t.equal(await client.ping(), 'PONG')
})
