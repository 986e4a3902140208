// Web and worker processes apart, as they are deployed: the web instance
// (worker: false) in this process, workers spawned from test/fixtures/run-worker.ts.
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { buildRunWebhook, deliverRun } from '../lib/testing.js'
import { startRedisServer } from './helpers/redis-server.js'
import { instance, nodeArgs, queueName, token, until } from './helpers/queue.js'

const server = await startRedisServer()
t.teardown(() => server.stop())
const fixture = fileURLToPath(new URL('./fixtures/run-worker.ts', import.meta.url))
const LOCK_MS = 600
// A worker process starts tsx and connects to Redis: on a loaded 2-core machine that alone can take seconds.
const SPAWN_MS = 60_000

interface WorkerProcess {
  child: ChildProcess
  events: Array<{ event?: string, run_id?: string, attempt?: number, attempts?: number, error?: string, webhook?: string, msg?: string, level?: number, err?: Record<string, unknown> }>
}

function spawnWorker (name: string): WorkerProcess {
  const child = spawn(process.execPath, nodeArgs(fixture), {
    env: { ...process.env, REDIS_URL: server.url, QUEUE_NAME: name, LOCK_MS: String(LOCK_MS) },
    stdio: ['ignore', 'pipe', 'inherit']
  })
  const events: WorkerProcess['events'] = []
  createInterface({ input: child.stdout! }).on('line', (line) => { events.push(JSON.parse(line)) })
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })
  return { child, events }
}

t.test('runs accepted while no worker process runs are handled once one starts; a worker SIGKILLed mid-listener loses its run to another after lockMs', async (t) => {
  const name = queueName()
  const { app } = await instance(t, server, { name, worker: false, lockMs: LOCK_MS })
  await app.ready()

  // No worker anywhere: the route still stores and acknowledges.
  const runs = Array.from({ length: 5 }, () => buildRunWebhook())
  const hanging = buildRunWebhook({ values: { hang: true } })
  for (const run of [...runs, hanging]) t.equal((await deliverRun(app, run, { token })).statusCode, 202)
  t.same(await app.langgraphWebhooks.queue.counts(), { waiting: 6, active: 0, delayed: 0, failed: 0, completed: 0 })

  const first = spawnWorker(name)
  await until(() => first.events.filter((e) => e.event === 'done').length === 5 &&
    first.events.some((e) => e.event === 'start' && e.run_id === hanging.run_id), SPAWN_MS, 'the first worker took every run')
  t.same(first.events.filter((e) => e.event === 'done').map((e) => e.run_id).sort(), runs.map((run) => run.run_id).sort(), 'each accepted run handled once')

  // A listener's end comes before BullMQ marks its job completed: a worker
  // killed in between would have that run taken over too (at least once).
  await until(async () => (await app.langgraphWebhooks.queue.counts()).completed === 5, 30_000, 'the five jobs marked completed')

  // Killed mid-listener: no chance to release its claim.
  first.child.kill('SIGKILL')
  await once(first.child, 'exit')
  const killed = Date.now()
  const second = spawnWorker(name)
  await until(() => second.events.some((e) => e.event === 'start' && e.run_id === hanging.run_id), SPAWN_MS, 'the run taken over')
  const after = Date.now() - killed
  const takeover = second.events.find((e) => e.event === 'start')!
  t.equal(takeover.attempt, 2, 'taken over as its second attempt')
  t.ok(after >= LOCK_MS / 2, `taken over once the dead worker's claim expired (${after} ms after the kill)`)
  t.notOk(second.events.some((e) => e.event === 'done' && e.run_id !== hanging.run_id), 'the handled runs are not run again')
  t.same(await app.langgraphWebhooks.queue.counts(), { waiting: 0, active: 1, delayed: 0, failed: 0, completed: 5 })

  // A graceful stop of a worker process: SIGTERM, close(), exit.
  const third = spawnWorker(name)
  await until(() => third.events.some((e) => e.event === 'ready'), SPAWN_MS, 'the third worker ready')
  third.child.kill('SIGTERM')
  await once(third.child, 'exit')
  t.ok(third.events.some((e) => e.event === 'closed'), 'closed and exited on its own')
})

t.test('a worker process given no logger writes pino JSON lines on stdout, info and above, errors with type, message and stack', async (t) => {
  const name = queueName()
  const { app } = await instance(t, server, { name, worker: false })
  await app.ready()
  const worker = spawnWorker(name)
  const run = buildRunWebhook({ values: { log: true } })
  t.equal((await deliverRun(app, run, { token })).statusCode, 202)
  await until(() => worker.events.some((e) => e.msg === 'an error line'), SPAWN_MS, 'the error line written')
  const logged = worker.events.filter((e) => e.msg !== undefined)
  t.match(logged.find((e) => e.msg === 'an info line'), { level: 30, run_id: run.run_id, attempt: 1 })
  t.match(logged.find((e) => e.msg === 'an error line'), { level: 50, run_id: run.run_id, err: { type: 'TypeError', message: 'bad', stack: /TypeError: bad/ } })
  t.notOk(logged.some((e) => e.msg === 'a debug line'), 'debug is below the level: the lines after it are there, it is not')
  worker.child.kill('SIGKILL')
})

t.test('worker.onDeadLetter in a worker process: told once, in the process whose last attempt failed, token masked', async (t) => {
  const name = queueName()
  const { app } = await instance(t, server, { name, worker: false, attempts: 2, backoffMs: 5 })
  await app.ready()
  const worker = spawnWorker(name)
  await until(() => worker.events.some((e) => e.event === 'ready'), SPAWN_MS, 'the worker ready')
  const run = buildRunWebhook({ values: { fail: true }, kwargs: { webhook: `https://app.example/webhooks/langgraph?token=${token}` } })
  const next = buildRunWebhook()
  t.equal((await deliverRun(app, run, { token })).statusCode, 202)
  await until(() => worker.events.some((e) => e.event === 'dead-letter'), SPAWN_MS, 'the dead letter reported')
  t.equal((await deliverRun(app, next, { token })).statusCode, 202)
  await until(() => worker.events.some((e) => e.event === 'done' && e.run_id === next.run_id), SPAWN_MS, 'the next run handled')
  t.same(worker.events.filter((e) => e.event === 'start').map((e) => [e.run_id, e.attempt]), [[run.run_id, 1], [run.run_id, 2], [next.run_id, 1]], 'two attempts, then the next run')
  t.same(worker.events.filter((e) => e.event === 'dead-letter'), [{
    event: 'dead-letter',
    run_id: run.run_id,
    attempts: 2,
    error: `1 listener failed for run ${run.run_id} (success): always`,
    webhook: 'https://app.example/webhooks/langgraph?token=[REDACTED]'
  }], 'once, after the last attempt')
  worker.child.kill('SIGKILL')
})
