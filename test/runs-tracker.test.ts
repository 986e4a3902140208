// The two stores of tracked runs answer alike: the same cases run against
// the memory tracker and the Redis one (a real redis-server).
import t, { type Test } from 'tap'
import { randomUUID } from 'node:crypto'
import { createRequire } from 'node:module'
import { Redis } from 'ioredis'
import Fastify from 'fastify'
import plugin from '../lib/index.js'
import { createRedisDedupeStore } from '../lib/dedupe/redis.js'
import { buildRunWebhook, deliverRun } from '../lib/testing.js'
import { TOKEN } from './helpers/app.js'
import { logSink } from './helpers/log.js'
import { createMemoryRunTracker, HANDLED_MS, MAX_TRACKED_MS, RECONCILED_MS, type RunTracker, type TrackedRun } from '../lib/runs/tracker.js'
import { createRedisRunTracker } from '../lib/runs/redis.js'
import { RedisUnavailableError } from '../lib/errors.js'
import { startRedisServer } from './helpers/redis-server.js'

const LEASE_MS = 1000
const server = await startRedisServer()
t.teardown(() => server.stop())

function noop (): void {}

async function connect (t: Test): Promise<Redis> {
  const client = new Redis(server.port, '127.0.0.1', { retryStrategy: () => 50 })
  client.on('error', noop)
  t.teardown(() => client.disconnect())
  await client.ping()
  return client
}

function tracked (overrides: Partial<TrackedRun> = {}): TrackedRun {
  return { runId: randomUUID(), threadId: randomUUID(), stateless: false, createdAt: Date.now(), failures: 0, ...overrides }
}

const kinds: Record<string, (t: Test) => Promise<RunTracker>> = {
  memory: async () => createMemoryRunTracker({ leaseMs: LEASE_MS }, noop),
  redis: async (t) => createRedisRunTracker({ client: await connect(t), prefix: `test:${randomUUID()}:`, timeoutMs: 500 }, { leaseMs: LEASE_MS })
}

for (const [kind, create] of Object.entries(kinds)) {
  t.test(`${kind}: a tracked run comes due, is leased, rescheduled and dropped`, async (t) => {
    const tracker = await create(t)
    const run = tracked()
    const now = Date.now()
    t.equal(await tracker.track(run, now + 100), true)
    t.same(await tracker.due(now, 10), [], 'not due yet')
    t.same(await tracker.due(now + 100, 10), [run], 'due')
    t.same(await tracker.due(now + 100 + LEASE_MS - 1, 10), [], 'leased to the check that took it')
    t.same(await tracker.due(now + 100 + LEASE_MS, 10), [run], 'due again once the lease ran out (a check that died)')
    await tracker.reschedule({ ...run, failures: 2 }, now + 5000)
    t.same(await tracker.due(now + 4999, 10), [])
    t.same(await tracker.due(now + 5000, 10), [{ ...run, failures: 2 }], 'rescheduled with its failures')
    await tracker.drop(run.runId)
    t.same(await tracker.due(now + 100_000, 10), [], 'dropped')
    await tracker.reschedule(run, now)
    t.same(await tracker.due(now + 100_000, 10), [], 'rescheduling an untracked run does not track it')
  })

  t.test(`${kind}: due runs come in batches`, async (t) => {
    const tracker = await create(t)
    const now = Date.now()
    for (let i = 0; i < 5; i++) await tracker.track(tracked(), now)
    t.equal((await tracker.due(now, 3)).length, 3)
    t.equal((await tracker.due(now, 3)).length, 2)
  })

  t.test(`${kind}: a webhook and a reconciliation never both have a run`, async (t) => {
    const tracker = await create(t)
    const run = tracked()
    t.equal(await tracker.claim(run.runId, 'reconcile', 'a'), 'refused', 'an untracked run is not reconciled')
    await tracker.track(run, Date.now())
    t.equal(await tracker.claim(run.runId, 'webhook', 'w1'), 'claimed')
    t.equal(await tracker.claim(run.runId, 'webhook', 'w2'), 'claimed', 'webhooks together (duplicates are dedupe\'s concern)')
    t.equal(await tracker.claim(run.runId, 'reconcile', 'a'), 'refused', 'not while a webhook has it')
    await tracker.release(run.runId, 'webhook', 'w1')
    t.equal(await tracker.claim(run.runId, 'reconcile', 'a'), 'refused', 'nor while the other webhook has it')
    await tracker.release(run.runId, 'webhook', 'w2')
    await tracker.release(run.runId, 'webhook', 'w2')
    t.equal(await tracker.claim(run.runId, 'reconcile', 'a'), 'claimed', 'once both failed')
    t.equal(await tracker.claim(run.runId, 'reconcile', 'b'), 'refused', 'one reconciliation at a time')
    t.equal(await tracker.claim(run.runId, 'webhook', 'w3'), 'refused', 'a webhook while it is reconciled')
    await tracker.release(run.runId, 'reconcile', 'b')
    t.equal(await tracker.claim(run.runId, 'reconcile', 'b'), 'refused', 'only its holder releases a reconciliation')
    await tracker.release(run.runId, 'webhook', 'w3')
    t.equal(await tracker.claim(run.runId, 'webhook', 'w3'), 'refused', 'nor does a webhook release it')
    await tracker.release(run.runId, 'reconcile', 'a')
    t.equal(await tracker.claim(run.runId, 'reconcile', 'b'), 'claimed')
    await tracker.handled(run.runId, 'reconcile')
    t.equal(await tracker.claim(run.runId, 'webhook', 'w4'), 'refused', 'a webhook after the reconciliation')
    t.equal(await tracker.claim(run.runId, 'reconcile', 'c'), 'refused')
    t.same(await tracker.due(Date.now() + MAX_TRACKED_MS, 10), [], 'no longer tracked')
    t.equal(await tracker.track(run, Date.now()), false, 'nor tracked again')
  })

  t.test(`${kind}: a webhook handled first ends the tracking, even one that beats runs.create's reply`, async (t) => {
    const tracker = await create(t)
    const run = tracked()
    await tracker.track(run, Date.now())
    t.equal(await tracker.claim(run.runId, 'webhook', 'w1'), 'claimed')
    await tracker.handled(run.runId, 'webhook')
    t.same(await tracker.due(Date.now() + 1000, 10), [])
    t.equal(await tracker.claim(run.runId, 'reconcile', 'a'), 'refused')
    t.equal(await tracker.claim(run.runId, 'webhook', 'w2'), 'passed', 'a later webhook goes through, untracked')
    await tracker.release(run.runId, 'webhook', 'w2')

    const early = tracked()
    t.equal(await tracker.claim(early.runId, 'webhook', 'w1'), 'claimed', 'a webhook of a run not tracked yet')
    await tracker.handled(early.runId, 'webhook')
    t.equal(await tracker.track(early, Date.now()), false, 'then runs.create\'s tracking is a no-op')
    t.same(await tracker.due(Date.now() + 1000, 10), [])
  })
}

t.test('memory: bounded (the oldest run dropped first, and reported), and expiring', async (t) => {
  const dropped: string[] = []
  const tracker = createMemoryRunTracker({ leaseMs: LEASE_MS, maxRuns: 2 }, (run) => dropped.push(run.runId))
  const [a, b, c] = [tracked(), tracked(), tracked({ createdAt: Date.now() - MAX_TRACKED_MS })]
  const now = Date.now()
  await tracker.track(a, now)
  await tracker.track(b, now)
  await tracker.track(c, now)
  t.same(dropped, [a.runId], 'the oldest')
  t.same(await tracker.due(now, 10), [b], 'a run tracked for longer than a day is dropped')
  t.same(dropped, [a.runId, c.runId])

  // The marks of handled runs expire too.
  const clock = t.capture(Date, 'now', () => at)
  let at = now
  await tracker.track(a, now)
  await tracker.handled(a.runId, 'webhook')
  t.equal(await tracker.track(a, now), false)
  at += HANDLED_MS
  t.equal(await tracker.track(a, now), true, 'tracked again a minute after its webhook was handled')
  await tracker.handled(a.runId, 'reconcile')
  at += RECONCILED_MS - 1
  t.equal(await tracker.claim(a.runId, 'webhook', 'w'), 'refused')
  at += 1
  t.equal(await tracker.claim(a.runId, 'webhook', 'w'), 'claimed', 'a webhook an hour after the reconciliation goes through')
  t.ok(clock.args().length > 0)
})

t.test('memory: the marks of handled runs are bounded', async (t) => {
  const tracker = createMemoryRunTracker({ leaseMs: LEASE_MS, maxRuns: 2 }, noop)
  const runs = [tracked(), tracked(), tracked()]
  for (const run of runs) await tracker.handled(run.runId, 'reconcile')
  t.equal(await tracker.claim(runs[0].runId, 'webhook', 'w'), 'claimed', 'the oldest mark was forgotten')
  t.equal(await tracker.claim(runs[2].runId, 'webhook', 'w'), 'refused')
})

t.test('redis: fails fast while Redis is unreachable, and works again after', async (t) => {
  const client = await connect(t)
  const tracker = createRedisRunTracker({ client, prefix: `test:${randomUUID()}:`, timeoutMs: 300 }, { leaseMs: LEASE_MS })
  const run = tracked()
  await tracker.track(run, Date.now())
  await server.stop()
  while (client.status === 'ready') await new Promise((resolve) => setTimeout(resolve, 10))
  await t.rejects(tracker.claim(run.runId, 'webhook', 'w'), RedisUnavailableError)
  await server.start()
  await client.ping()
  t.equal(await tracker.claim(randomUUID(), 'webhook', 'w'), 'claimed', 'works again (the restarted Redis is empty)')
})

t.test('redis: an operation that takes too long fails after timeoutMs', async (t) => {
  const client = await connect(t)
  const tracker = createRedisRunTracker({ client, prefix: `test:${randomUUID()}:`, timeoutMs: 100 }, { leaseMs: LEASE_MS })
  const admin = await connect(t)
  await admin.client('PAUSE', 400, 'ALL')
  const started = Date.now()
  await t.rejects(tracker.due(Date.now(), 10), { message: /took longer than 100 ms/ })
  t.ok(Date.now() - started < 350)
  await new Promise((resolve) => setTimeout(resolve, 400 - (Date.now() - started)))
  t.same(await tracker.due(Date.now(), 10), [])
})

t.test('redis: an error Redis answers is passed on', async (t) => {
  const client = await connect(t)
  const prefix = `test:${randomUUID()}:`
  await client.set(`${prefix}{runs}:due`, 'not a sorted set')
  const tracker = createRedisRunTracker({ client, prefix, timeoutMs: 500 }, { leaseMs: LEASE_MS })
  await t.rejects(tracker.due(Date.now(), 10), { message: /WRONGTYPE/ })
})

t.test('redis: every key a script touches is passed in KEYS, and every key the tracker touches is in the {runs} slot', async (t) => {
  const client = await connect(t)
  const prefix = `test:${randomUUID()}:`
  const tracker = createRedisRunTracker({ client, prefix, timeoutMs: 500 }, { leaseMs: LEASE_MS })
  const watching = await (await connect(t)).monitor()
  t.teardown(() => watching.disconnect())
  // Each operation's commands, the script's own (source `lua`) beside the call that ran it, in whichever order Redis reports them.
  const operations: Array<Array<{ args: string[], lua: boolean }>> = [[]]
  watching.on('monitor', (_time: string, args: string[], source: string) => {
    if (args[0] === 'echo' && args[1] === 'next operation') operations.push([])
    else operations.at(-1)!.push({ args, lua: source === 'lua' })
  })
  const [a, b, expired] = [tracked(), tracked(), tracked({ createdAt: Date.now() - MAX_TRACKED_MS })]
  const now = Date.now()
  const steps = [
    () => tracker.track(a, now), () => tracker.track(b, now), () => tracker.track(expired, now),
    () => tracker.claim(a.runId, 'webhook', 'w'), () => tracker.release(a.runId, 'webhook', 'w'),
    () => tracker.due(now + 10, 10), () => tracker.claim(a.runId, 'reconcile', 'r'), () => tracker.release(a.runId, 'reconcile', 'r'),
    () => tracker.reschedule({ ...a, failures: 1 }, now), () => tracker.handled(a.runId, 'reconcile'), () => tracker.drop(b.runId)
  ]
  for (const step of steps) {
    await step()
    await client.echo('next operation')
  }
  while (operations.length <= steps.length) await new Promise((resolve) => setTimeout(resolve, 10))
  const keysOf = async (args: string[]): Promise<string[]> => await client.call('COMMAND', 'GETKEYS', ...args).catch(() => []) as string[]
  const scripts: number[] = []
  const touched: string[] = []
  for (const commands of operations.slice(0, steps.length)) {
    const calls = commands.filter(({ args, lua }) => !lua && /^eval/.test(args[0]))
    const declared = calls.flatMap(({ args }) => args.slice(3, 3 + Number(args[2])))
    scripts.push(calls.length)
    for (const { args, lua } of commands) {
      const keys = await keysOf(args)
      touched.push(...keys)
      if (lua) t.same(keys.filter((key) => !declared.includes(key)), [], `${args[0]} in a script touches only keys passed in KEYS`)
    }
  }
  t.same(scripts, [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0], 'one script for each operation but drop (a transaction): all six ran')
  t.ok(touched.length > 30)
  t.same(touched.filter((key) => !key.startsWith(`${prefix}{runs}:`)), [], 'every key shares the {runs} hash tag')
  t.same(await tracker.due(now + 10, 10), [], 'the expired run was forgotten')
})

// The SDK's CommonJS build (see examples/langgraph-server.ts for why); no call reaches a server here.
const { Client } = createRequire(import.meta.url)('@langchain/langgraph-sdk') as typeof import('@langchain/langgraph-sdk')
const sdk = new Client({ apiUrl: 'http://127.0.0.1:9' })

t.test('redis: the tracker failing after a webhook claimed its run is logged; the reply is the listeners\'', async (t) => {
  const client = await connect(t)
  const sink = logSink('error')
  const app = Fastify({ logger: sink.logger })
  t.teardown(() => app.close())
  await app.register(plugin, {
    token: TOKEN,
    dedupe: { store: createRedisDedupeStore(client, { prefix: `test:${randomUUID()}:`, timeoutMs: 200 }) },
    langgraph: { client: sdk, webhookUrl: 'https://api.example.com/webhooks/langgraph' }
  })
  // Redis goes away while the listeners run.
  app.langgraphWebhooks.onRun(async (run) => {
    await server.stop()
    if (run.status === 'error') throw new Error('the listener failed too')
  })
  t.equal((await deliverRun(app, buildRunWebhook(), { token: TOKEN })).statusCode, 204)
  t.ok(sink.lines.some((line) => line.msg === 'the store of tracked runs failed to mark a run handled'))
  await server.start()
  await client.ping()
  t.equal((await deliverRun(app, buildRunWebhook({ status: 'error' }), { token: TOKEN })).statusCode, 500)
  t.ok(sink.lines.some((line) => line.msg === 'the store of tracked runs failed to release a run'))
  await server.start()
  await client.ping()
})

t.test('redis: the relay of an instance started while Redis is down', async (t) => {
  const sink = logSink('warn')
  const app = Fastify({ logger: sink.logger })
  t.teardown(() => app.close())
  await server.stop()
  const client = new Redis(server.port, '127.0.0.1', { retryStrategy: () => 50 })
  client.on('error', noop)
  t.teardown(() => client.disconnect())
  while (client.status !== 'reconnecting') await new Promise((resolve) => setTimeout(resolve, 5))
  await app.register(plugin, { token: TOKEN, dedupe: { store: createRedisDedupeStore(client, { timeoutMs: 100 }) } })
  await app.ready()
  t.ok(sink.lines.some((line) => /could not subscribe to the deliveries of other instances yet/.test(line.msg)), 'it says so, and goes on')
  t.ok(sink.lines.some((line) => /relays deliveries to waiters failed/.test(line.msg)), 'connection errors are logged')
  const body = buildRunWebhook()
  const waiting = app.langgraphWebhooks.waitForRun(body.run_id)
  t.equal((await deliverRun(app, body, { token: TOKEN })).statusCode, 503, 'the dedupe store is down')
  t.equal((await waiting).run_id, body.run_id, 'local waiters still resolve (nothing is published while disconnected)')
  await server.start()
})

t.test('redis: a failed publish is logged', async (t) => {
  const admin = await connect(t)
  // A user that may do anything but publish.
  const user = `no-publish-${randomUUID()}`
  await admin.call('ACL', 'SETUSER', user, 'on', 'nopass', '~*', '&*', '+@all', '-publish')
  const client = new Redis(server.port, '127.0.0.1', { username: user, password: 'x' })
  t.teardown(() => client.disconnect())
  const sink = logSink('warn')
  const app = Fastify({ logger: sink.logger })
  t.teardown(() => app.close())
  await app.register(plugin, { token: TOKEN, dedupe: { store: createRedisDedupeStore(client) } })
  await app.ready()
  const body = buildRunWebhook()
  t.equal((await deliverRun(app, body, { token: TOKEN })).statusCode, 204)
  const deadline = Date.now() + 2000
  while (!sink.lines.some((line) => /could not tell other instances about a delivery/.test(line.msg)) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10))
  const logged = sink.lines.find((line) => /could not tell other instances about a delivery/.test(line.msg))
  t.match(logged, { run_id: body.run_id, err: { message: /NOPERM/ } })
})

t.test('redis: close() while the loop waits for a slow Redis: it waits for the look, and the loop stops', async (t) => {
  const client = await connect(t)
  const admin = await connect(t)
  const sink = logSink('error')
  const app = Fastify({ logger: sink.logger })
  await app.register(plugin, {
    token: TOKEN,
    dedupe: { store: createRedisDedupeStore(client, { prefix: `test:${randomUUID()}:`, timeoutMs: 1000 }) },
    langgraph: { client: sdk, webhookUrl: 'https://api.example.com/webhooks/langgraph', reconcileAfterMs: 20, reconcileEveryMs: 20 }
  })
  await app.ready()
  await new Promise((resolve) => setTimeout(resolve, 30))
  await admin.client('PAUSE', 300, 'WRITE')
  // The loop's look (a Lua script that writes) is held by the pause.
  await new Promise((resolve) => setTimeout(resolve, 40))
  const started = Date.now()
  await app.close()
  t.ok(Date.now() - started >= 100, 'close() waited for the look under way')
  const monitor = await connect(t)
  let commands = 0
  const watching = await monitor.monitor()
  watching.on('monitor', () => { commands++ })
  await new Promise((resolve) => setTimeout(resolve, 100))
  watching.disconnect()
  t.equal(commands, 0, 'no look after close')
  t.same(sink.lines, [])
})
