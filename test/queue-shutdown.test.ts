// Shutting down while Redis is unreachable: app.close() and worker.close()
// are bounded, whatever lockMs, and quick when no listener is running.
import t, { type Test } from 'tap'
import Fastify from 'fastify'
import type { Redis } from 'ioredis'
import { createRunWorker } from '../lib/queue/index.js'
import { buildRunWebhook, deliverRun } from '../lib/testing.js'
import { startRedisServer, type RedisServer } from './helpers/redis-server.js'
import { connect, instance, queueName, token, until } from './helpers/queue.js'

/** How long `close` took, in ms. */
async function timed (close: () => Promise<void>): Promise<number> {
  const started = Date.now()
  await close()
  return Date.now() - started
}

async function ownServer (t: Test): Promise<RedisServer> {
  const server = await startRedisServer()
  t.teardown(() => server.stop())
  return server
}

/** Kills Redis and waits until a client of it has noticed, as the worker's have by then. */
async function kill (server: RedisServer, observer: Redis): Promise<void> {
  await server.kill()
  await until(() => observer.status !== 'ready', 30_000, 'the connection lost')
}

t.test('Redis killed, the in-process worker idle: app.close() within a second or so, whatever lockMs', async (t) => {
  const server = await ownServer(t)
  const { app, client } = await instance(t, server, { name: queueName(), lockMs: 30_000 })
  await app.ready()
  await kill(server, client)
  const took = await timed(() => app.close())
  t.ok(took < 2000, `app.close() took ${took} ms`)
})

t.test("Redis killed, the plugin's own clients (a redis:// URL): app.close() within a second or so", async (t) => {
  const server = await ownServer(t)
  const { app, client } = await instance(t, server, { name: queueName(), connection: server.url })
  await app.ready()
  await kill(server, client)
  const took = await timed(() => app.close())
  t.ok(took < 2000, `app.close() took ${took} ms`)
})

t.test('Redis stalled (SIGSTOP) right after ready, the worker still connecting: app.close() within a second or so', async (t) => {
  const server = await ownServer(t)
  const { app } = await instance(t, server, { name: queueName(), connection: server.url, addTimeoutMs: 300 })
  await app.ready()
  server.pause()
  t.teardown(() => server.resume())
  const took = await timed(() => app.close())
  t.ok(took < 2000, `app.close() took ${took} ms`)
})

t.test('Redis stalled (SIGSTOP), the in-process worker idle: app.close() gives up on Redis instead of hanging', async (t) => {
  const server = await ownServer(t)
  // addTimeoutMs bounds every wait on Redis.
  const { app, lines } = await instance(t, server, { name: queueName(), connection: server.url, addTimeoutMs: 300 })
  const handled: string[] = []
  app.langgraphWebhooks.onRun((run) => { handled.push(run.run_id) })
  await app.ready()
  // A run handled: the worker's connections are up, and it waits for the next.
  t.equal((await deliverRun(app, buildRunWebhook(), { token })).statusCode, 202)
  await until(() => handled.length === 1, 30_000, 'the first run handled')
  server.pause()
  const took = await timed(() => app.close())
  t.ok(took < 2000, `app.close() took ${took} ms`)
  t.ok(lines.some((l) => l.msg === 'Redis did not answer while the run webhook worker closed: its connections are dropped'))
})

for (const outage of ['killed', 'stalled'] as const) {
  t.test(`Redis ${outage}, a worker process idle: worker.close() within a second or so`, async (t) => {
    const server = await ownServer(t)
    const observer = await connect(t, server)
    const worker = createRunWorker({ connection: server.url, name: queueName(), logger: Fastify().log })
    await until(() => worker.bullmq.isRunning(), 30_000, 'the worker running')
    if (outage === 'killed') await kill(server, observer)
    else server.pause()
    const took = await timed(() => worker.close())
    t.ok(took < 2000, `worker.close() took ${took} ms`)
  })
}

t.test('Redis killed while a listener runs: app.close() gives up on it after lockMs, and on Redis after that', async (t) => {
  const server = await ownServer(t)
  const { app, client, lines } = await instance(t, server, { name: queueName(), lockMs: 1000 })
  let started = 0
  app.langgraphWebhooks.onRun(async () => {
    started++
    await new Promise(() => {}) // never settles
  })
  await app.ready()
  t.equal((await deliverRun(app, buildRunWebhook(), { token })).statusCode, 202)
  await until(() => started === 1)
  await kill(server, client)
  const took = await timed(() => app.close())
  t.ok(took < 3000, `app.close() took ${took} ms`)
  t.ok(lines.some((l) => l.msg === 'run webhook listeners still running at shutdown are left to other workers'))
})
