import { setTimeout as sleep } from 'node:timers/promises'
import { test, type Test } from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import plugin, { createMemoryDedupeStore, RETRY_AFTER_SECONDS, type DedupeStore, type LanggraphWebhooksOptions } from '../lib/index.js'
import { buildRunWebhook, deliverRun } from '../lib/testing.js'
import { logSink } from './helpers/log.js'

const token = 'x'.repeat(32)

interface Deferred {
  promise: Promise<void>
  resolve: () => void
  reject: (error: Error) => void
}

function deferred (): Deferred {
  const result = {} as Deferred
  result.promise = new Promise<void>((resolve, reject) => Object.assign(result, { resolve, reject }))
  return result
}

async function build (t: Test, options: Partial<LanggraphWebhooksOptions>, logger?: object): Promise<FastifyInstance> {
  const app = Fastify(logger === undefined ? {} : { logger })
  await app.register(plugin, { token, dedupe: true, ...options })
  t.teardown(() => app.close())
  return app
}

/** Waits until `condition()` holds (a few event-loop turns at most in these tests). */
async function until (condition: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !condition(); i++) await sleep(5)
  if (!condition()) throw new Error('condition not reached')
}

test('dedupe is off by default: a duplicate runs the listeners again', async (t) => {
  let calls = 0
  const app = await build(t, { dedupe: undefined, onRun: () => { calls++ } })
  const run = buildRunWebhook()
  t.equal((await deliverRun(app, run, { token })).statusCode, 204)
  t.equal((await deliverRun(app, run, { token })).statusCode, 204)
  t.equal(calls, 2)
})

test('a duplicate of a handled delivery gets 204 without running the listeners', async (t) => {
  let calls = 0
  const app = await build(t, { onRun: async () => { calls++ } })
  const run = buildRunWebhook()
  const first = await deliverRun(app, run, { token })
  t.equal(first.statusCode, 204)
  t.equal(calls, 1)
  for (let i = 0; i < 3; i++) {
    const duplicate = await deliverRun(app, run, { token })
    t.equal(duplicate.statusCode, 204)
    t.equal(duplicate.body, '')
  }
  t.equal(calls, 1, 'listener ran once for all four deliveries')

  // Synchronous listeners take the same path.
  let syncCalls = 0
  app.langgraphWebhooks.onRun('error', () => { syncCalls++ })
  const failed = buildRunWebhook({ status: 'error', error: 'boom' })
  t.equal((await deliverRun(app, failed, { token })).statusCode, 204)
  t.equal((await deliverRun(app, failed, { token })).statusCode, 204)
  t.equal(syncCalls, 1)
})

test('the key is run_id + status: another outcome of the same run runs the listeners', async (t) => {
  const seen: string[] = []
  const app = await build(t, { onRun: (run) => { seen.push(run.status) } })
  const run = buildRunWebhook()
  await deliverRun(app, run, { token })
  await deliverRun(app, { ...run, status: 'rollback' }, { token })
  await deliverRun(app, run, { token })
  await deliverRun(app, { ...run, status: 'rollback' }, { token })
  t.same(seen, ['success', 'rollback'])
  // A different webhook_sent_at (a re-send rather than a retry) is still the same outcome.
  await deliverRun(app, { ...run, webhook_sent_at: new Date(Date.now() + 1000).toISOString() }, { token })
  t.same(seen, ['success', 'rollback'])
})

test('a duplicate of a delivery whose listeners failed runs them again', async (t) => {
  let calls = 0
  const app = await build(t, {
    onRun: async () => {
      calls++
      if (calls === 1) throw new Error('database down')
    }
  })
  const run = buildRunWebhook()
  const first = await deliverRun(app, run, { token })
  t.equal(first.statusCode, 500)
  t.equal(first.json().code, 'FST_LANGGRAPH_WEBHOOKS_LISTENER_FAILED')
  const retry = await deliverRun(app, run, { token })
  t.equal(retry.statusCode, 204)
  t.equal(calls, 2)
  const third = await deliverRun(app, run, { token })
  t.equal(third.statusCode, 204)
  t.equal(calls, 2, 'handled now: not run a third time')
})

test('a synchronous throw leaves no done mark either', async (t) => {
  let calls = 0
  const app = await build(t, {
    onRun: () => {
      calls++
      if (calls === 1) throw new Error('sync failure')
    }
  })
  const run = buildRunWebhook()
  t.equal((await deliverRun(app, run, { token })).statusCode, 500)
  t.equal((await deliverRun(app, run, { token })).statusCode, 204)
  t.equal((await deliverRun(app, run, { token })).statusCode, 204)
  t.equal(calls, 2)
})

test('a duplicate while the first is in flight gets 503 with Retry-After and never runs concurrently', async (t) => {
  let calls = 0
  let running = 0
  let maxRunning = 0
  const gate = deferred()
  const app = await build(t, {
    onRun: async () => {
      calls++
      maxRunning = Math.max(maxRunning, ++running)
      await gate.promise
      running--
    }
  })
  const run = buildRunWebhook()
  const first = deliverRun(app, run, { token })
  await until(() => calls === 1)

  const duplicates = await Promise.all(Array.from({ length: 5 }, () => deliverRun(app, run, { token })))
  for (const duplicate of duplicates) {
    t.equal(duplicate.statusCode, 503)
    t.equal(duplicate.headers['retry-after'], String(RETRY_AFTER_SECONDS))
    t.equal(duplicate.json().code, 'FST_LANGGRAPH_WEBHOOKS_IN_FLIGHT')
  }
  t.equal(calls, 1)

  gate.resolve()
  t.equal((await first).statusCode, 204)
  t.equal((await deliverRun(app, run, { token })).statusCode, 204, 'the sender retry after the first settled')
  t.equal(calls, 1)
  t.equal(maxRunning, 1)
})

test('concurrent identical deliveries: exactly one runs the listeners', async (t) => {
  let calls = 0
  const app = await build(t, { onRun: async () => { calls++; await sleep(10) } })
  const run = buildRunWebhook()
  const replies = await Promise.all(Array.from({ length: 20 }, () => deliverRun(app, run, { token })))
  const codes = replies.map((reply) => reply.statusCode).sort()
  t.equal(codes.filter((code) => code === 204).length, 1)
  t.equal(codes.filter((code) => code === 503).length, 19)
  t.equal(calls, 1)
})

test('the memory store forgets a handled delivery after ttlMs', async (t) => {
  let calls = 0
  const app = await build(t, { dedupe: { ttlMs: 40 }, onRun: () => { calls++ } })
  const run = buildRunWebhook()
  await deliverRun(app, run, { token })
  await deliverRun(app, run, { token })
  t.equal(calls, 1)
  await sleep(60)
  await deliverRun(app, run, { token })
  t.equal(calls, 2, 'remembered for ttlMs only')
})

test('the memory store keeps at most maxKeys keys, dropping the least recently used', async (t) => {
  const calls = new Map<string, number>()
  const app = await build(t, {
    dedupe: { maxKeys: 2 },
    onRun: (run) => { calls.set(run.run_id, (calls.get(run.run_id) ?? 0) + 1) }
  })
  const [a, b, c] = [buildRunWebhook(), buildRunWebhook(), buildRunWebhook()]
  for (const run of [a, b, c]) await deliverRun(app, run, { token })
  await deliverRun(app, c, { token })
  await deliverRun(app, b, { token })
  t.equal(calls.get(b.run_id), 1)
  t.equal(calls.get(c.run_id), 1)
  await deliverRun(app, a, { token })
  t.equal(calls.get(a.run_id), 2, 'a was evicted by c: its duplicate runs again')
})

test('createMemoryDedupeStore: reserve, complete, release and expiry', async (t) => {
  const store = createMemoryDedupeStore({ maxKeys: 10, ttlMs: 1000 })
  t.equal(store.reserve('k', 30, 'a'), 'reserved')
  t.equal(store.reserve('k', 30, 'b'), 'in-flight')

  store.release('k', 'b')
  t.equal(store.reserve('k', 30, 'b'), 'in-flight', "another owner's release leaves the lease in place")
  store.release('k', 'a')
  t.equal(store.reserve('k', 30, 'b'), 'reserved', "the owner's release frees the key")

  await sleep(40)
  t.equal(store.reserve('k', 30, 'c'), 'reserved', 'a lease expires after leaseMs (a crashed holder)')
  store.release('k', 'b')
  t.equal(store.reserve('k', 30, 'd'), 'in-flight', 'the expired holder cannot drop the new lease')

  store.complete('k', 1000)
  t.equal(store.reserve('k', 30, 'e'), 'done')
  store.release('k', 'c')
  store.release('k')
  t.equal(store.reserve('k', 30, 'e'), 'done', 'a release never erases a done mark')

  store.release('unknown', 'a')
  t.equal(store.reserve('unknown', 30), 'reserved')
  store.release('unknown')
  t.equal(store.reserve('unknown', 30), 'reserved', 'without owners, release drops the lease')

  store.complete('short', 20)
  await sleep(30)
  t.equal(store.reserve('short', 30), 'reserved', 'a done mark lasts ttlMs')

  const defaults = createMemoryDedupeStore()
  t.equal(defaults.reserve('k', 1000), 'reserved')
})

test('a custom store object receives the key, lease, owner and ttl', async (t) => {
  const calls: unknown[][] = []
  const marks = new Map<string, string>()
  const store: DedupeStore = {
    async reserve (key, leaseMs, owner) {
      calls.push(['reserve', key, leaseMs, typeof owner])
      const mark = marks.get(key)
      if (mark === 'done') return 'done'
      if (mark !== undefined) return 'in-flight'
      marks.set(key, owner!)
      return 'reserved'
    },
    async complete (key, ttlMs) {
      calls.push(['complete', key, ttlMs])
      marks.set(key, 'done')
    },
    async release (key, owner) {
      calls.push(['release', key, marks.get(key) === owner])
      marks.delete(key)
    }
  }
  let fail = true
  const app = await build(t, {
    dedupe: { store, ttlMs: 5000, leaseMs: 700 },
    onRun: async () => { if (fail) throw new Error('first attempt fails') }
  })
  const run = buildRunWebhook({ status: 'interrupted' })
  const key = `${run.run_id}:interrupted`
  t.equal((await deliverRun(app, run, { token })).statusCode, 500)
  fail = false
  t.equal((await deliverRun(app, run, { token })).statusCode, 204)
  t.equal((await deliverRun(app, run, { token })).statusCode, 204)
  t.same(calls, [
    ['reserve', key, 700, 'string'],
    ['release', key, true],
    ['reserve', key, 700, 'string'],
    ['complete', key, 5000],
    ['reserve', key, 700, 'string']
  ])
})

test('owners are unique per delivery', async (t) => {
  const owners: Array<string | undefined> = []
  const store: DedupeStore = {
    reserve (_key, _leaseMs, owner) { owners.push(owner); return 'reserved' },
    complete () {},
    release () {}
  }
  const app = await build(t, { dedupe: { store } })
  const run = buildRunWebhook()
  for (let i = 0; i < 3; i++) await deliverRun(app, run, { token })
  t.equal(new Set(owners).size, 3)
})

test('a store that fails to reserve: 503 and the listeners never run', async (t) => {
  for (const [name, reserve] of [
    ['throws', () => { throw new Error('store down') }],
    ['rejects', async () => { throw new Error('store down') }]
  ] as const) {
    let calls = 0
    const sink = logSink()
    const app = await build(t, {
      dedupe: { store: { reserve, complete () {}, release () {} } },
      onRun: () => { calls++ }
    }, sink.logger)
    const reply = await deliverRun(app, buildRunWebhook(), { token })
    t.equal(reply.statusCode, 503, name)
    t.equal(reply.json().code, 'FST_LANGGRAPH_WEBHOOKS_DEDUPE_UNAVAILABLE')
    t.equal(calls, 0, `${name}: listeners never run unguarded`)
    t.ok(sink.lines.some((line) => line.msg === 'dedupe store failed to reserve a run webhook' && line.err.message === 'store down'))
  }
})

test('a store that fails to complete: still 204 (the listeners ran), and logged', async (t) => {
  let calls = 0
  const sink = logSink()
  const app = await build(t, {
    dedupe: { store: { reserve: () => 'reserved', complete: async () => { throw new Error('complete failed') }, release () {} } },
    onRun: async () => { calls++ }
  }, sink.logger)
  const run = buildRunWebhook()
  const reply = await deliverRun(app, run, { token })
  t.equal(reply.statusCode, 204)
  t.equal(calls, 1)
  const line = sink.lines.find((line) => line.msg === 'dedupe store failed to complete a run webhook')
  t.equal(line?.key, `${run.run_id}:success`)
  t.equal(line?.err.message, 'complete failed')
})

test('a store that fails to release: still 500, and logged', async (t) => {
  const sink = logSink()
  const app = await build(t, {
    dedupe: { store: { reserve: () => 'reserved', complete () {}, release: () => { throw new Error('release failed') } } },
    onRun: async () => { throw new Error('listener failed') }
  }, sink.logger)
  const reply = await deliverRun(app, buildRunWebhook(), { token })
  t.equal(reply.statusCode, 500)
  t.equal(reply.json().code, 'FST_LANGGRAPH_WEBHOOKS_LISTENER_FAILED')
  t.ok(sink.lines.some((line) => line.msg === 'dedupe store failed to release a run webhook' && line.err.message === 'release failed'))
})

test("ack: 'received' with dedupe", async (t) => {
  const calls: string[] = []
  let gate = deferred()
  const app = await build(t, {
    ack: 'received',
    onRun: async (run) => {
      calls.push(run.run_id)
      await gate.promise
    }
  })

  const run = buildRunWebhook()
  t.equal((await deliverRun(app, run, { token })).statusCode, 202)
  await until(() => calls.length === 1)
  const inFlight = await deliverRun(app, run, { token })
  t.equal(inFlight.statusCode, 503, 'listeners still running: the duplicate is asked to retry')
  t.equal(inFlight.headers['retry-after'], String(RETRY_AFTER_SECONDS))
  gate.resolve()
  await sleep(5)
  t.equal((await deliverRun(app, run, { token })).statusCode, 204, 'handled: acknowledged without listeners')
  t.equal(calls.length, 1)

  gate = deferred()
  const failing = buildRunWebhook()
  t.equal((await deliverRun(app, failing, { token })).statusCode, 202)
  await until(() => calls.length === 2)
  gate.reject(new Error('listener failed after the ack'))
  await sleep(5)
  gate = deferred()
  gate.resolve()
  t.equal((await deliverRun(app, failing, { token })).statusCode, 202, 'released: a re-delivery runs the listeners again')
  await until(() => calls.length === 3)
  await sleep(5)
  t.equal((await deliverRun(app, failing, { token })).statusCode, 204)
  t.equal(calls.length, 3)
})
