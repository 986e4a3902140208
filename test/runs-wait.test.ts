// waitForRun through the plugin, with deliveries made by fastify.inject.
import t from 'tap'
import { setMaxListeners } from 'node:events'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { setTimeout as sleep } from 'node:timers/promises'
import { buildRunWebhook, deliverRun } from '../lib/testing.js'
import { REMEMBER_MS, RunWaiters } from '../lib/runs/waiters.js'
import { buildApp, TOKEN } from './helpers/app.js'

t.test('a delivery resolves the waiters of its run, with the run as listeners see it', async (t) => {
  const { app } = await buildApp()
  t.teardown(() => app.close())
  const seen: unknown[] = []
  app.langgraphWebhooks.onRun((run) => { seen.push(run) })
  const body = buildRunWebhook({ kwargs: { webhook: `http://127.0.0.1/webhooks/langgraph?token=${TOKEN}` } })
  const other = buildRunWebhook()
  const waiting = [app.langgraphWebhooks.waitForRun(body.run_id), app.langgraphWebhooks.waitForRun(body.run_id)]
  const elsewhere = app.langgraphWebhooks.waitForRun(other.run_id, { timeoutMs: 200 })
  t.equal((await deliverRun(app, body, { token: TOKEN })).statusCode, 204)
  const [first, second] = await Promise.all(waiting)
  t.equal(first, seen[0], 'the very run the listeners got')
  t.equal(second, first)
  t.equal(first.kwargs.webhook, 'http://127.0.0.1/webhooks/langgraph?token=[REDACTED]', 'token masked')
  await t.rejects(elsewhere, { code: 'FST_LANGGRAPH_WEBHOOKS_WAIT_TIMEOUT' }, 'another run\'s waiter is not resolved')
})

t.test('resolved whatever the listeners do: a failing listener, a duplicate', async (t) => {
  const { app } = await buildApp({ dedupe: true })
  t.teardown(() => app.close())
  let fail = true
  app.langgraphWebhooks.onRun(() => { if (fail) throw new Error('boom') })
  const body = buildRunWebhook()
  const waiting = app.langgraphWebhooks.waitForRun(body.run_id)
  t.equal((await deliverRun(app, body, { token: TOKEN })).statusCode, 500)
  t.equal((await waiting).run_id, body.run_id)
  fail = false
  t.equal((await deliverRun(app, body, { token: TOKEN })).statusCode, 204)
  const again = app.langgraphWebhooks.waitForRun(body.run_id, { timeoutMs: 50 })
  t.equal((await deliverRun(app, body, { token: TOKEN })).statusCode, 204, 'a duplicate')
  t.equal((await again).run_id, body.run_id)
})

t.test('refused deliveries resolve nothing: a wrong token, an invalid run', async (t) => {
  const { app } = await buildApp()
  t.teardown(() => app.close())
  const body = buildRunWebhook()
  const waiting = app.langgraphWebhooks.waitForRun(body.run_id, { timeoutMs: 300 })
  t.equal((await deliverRun(app, body, { token: 'wrong'.repeat(8) })).statusCode, 401)
  t.equal((await deliverRun(app, { ...body, status: 42 }, { token: TOKEN })).statusCode, 400)
  await t.rejects(waiting, { code: 'FST_LANGGRAPH_WEBHOOKS_WAIT_TIMEOUT', message: `No delivery of run ${body.run_id} arrived within 300 ms` })
})

t.test('a delivery of the last minute resolves a late call at once', async (t) => {
  const clock = t.capture(Date, 'now', () => now)
  let now = 1_000_000
  const { app } = await buildApp()
  t.teardown(() => app.close())
  const body = buildRunWebhook()
  await deliverRun(app, body, { token: TOKEN })
  now += REMEMBER_MS - 1
  t.equal((await app.langgraphWebhooks.waitForRun(body.run_id)).run_id, body.run_id, 'just under a minute later')
  now += 2
  await t.rejects(app.langgraphWebhooks.waitForRun(body.run_id, { timeoutMs: 20 }), { code: 'FST_LANGGRAPH_WEBHOOKS_WAIT_TIMEOUT' }, 'not after')
  t.ok(clock.args().length > 0)
})

t.test('an abort signal rejects with its reason', async (t) => {
  const { app } = await buildApp()
  t.teardown(() => app.close())
  const controller = new AbortController()
  const waiting = app.langgraphWebhooks.waitForRun('run-1', { signal: controller.signal })
  const reason = new Error('the user left')
  controller.abort(reason)
  await t.rejects(waiting, reason)
  await t.rejects(app.langgraphWebhooks.waitForRun('run-1', { signal: controller.signal }), reason, 'an aborted signal rejects at once')
  await t.rejects(app.langgraphWebhooks.waitForRun('run-1', { signal: AbortSignal.timeout(10) }), { name: 'TimeoutError' })
  // A settled wait leaves nothing on the signal.
  const kept = new AbortController()
  const body = buildRunWebhook()
  const resolved = app.langgraphWebhooks.waitForRun(body.run_id, { signal: kept.signal })
  await deliverRun(app, body, { token: TOKEN })
  await resolved
  kept.abort()
})

t.test('arguments are checked', async (t) => {
  const { app } = await buildApp()
  t.teardown(() => app.close())
  const wait = app.langgraphWebhooks.waitForRun as (...args: unknown[]) => Promise<unknown>
  await t.rejects(wait(''), { name: 'TypeError', message: /runId must be a non-empty string/ })
  await t.rejects(wait(42), { name: 'TypeError' })
  await t.rejects(wait('r', null), { message: /options must be an object/ })
  await t.rejects(wait('r', { timeoutMs: '5000' }), { message: /got the string "5000"/ })
  await t.rejects(wait('r', { timeoutMs: 0 }), { message: /positive integer/ })
  await t.rejects(wait('r', { timeoutMs: 2 ** 31 }), { message: /up to 2147483647/ })
  await t.rejects(wait('r', { signal: {} }), { message: /signal must be an AbortSignal/ })
})

t.test('close() rejects the waiters left; a wait after close is refused', async (t) => {
  const { app } = await buildApp()
  const waiting = app.langgraphWebhooks.waitForRun('run-1')
  await app.close()
  await t.rejects(waiting, { code: 'FST_LANGGRAPH_WEBHOOKS_SHUTTING_DOWN' })
  await t.rejects(app.langgraphWebhooks.waitForRun('run-2'), { code: 'FST_LANGGRAPH_WEBHOOKS_SHUTTING_DOWN' })
})

t.test('remembered deliveries expire, and are bounded: the oldest is forgotten first', async (t) => {
  const rememberMs = 300
  const waiters = new RunWaiters({ rememberMs, maxRemembered: 3 })
  t.teardown(() => waiters.close())
  const runs = [1, 2, 3, 4].map(() => buildRunWebhook())
  for (const run of runs) waiters.heard(run)
  await t.rejects(waiters.wait(runs[0].run_id, { timeoutMs: 5 }), { code: 'FST_LANGGRAPH_WEBHOOKS_WAIT_TIMEOUT' }, 'the oldest was forgotten')
  t.equal(await waiters.wait(runs[3].run_id, { timeoutMs: 1000 }), runs[3])
  await sleep(rememberMs + 50)
  await t.rejects(waiters.wait(runs[3].run_id, { timeoutMs: 5 }), { code: 'FST_LANGGRAPH_WEBHOOKS_WAIT_TIMEOUT' }, 'expired')
  waiters.heard(runs[1])
  t.equal(await waiters.wait(runs[1].run_id, { timeoutMs: 1000 }), runs[1], 'heard again, remembered again')
})

t.test('remembered deliveries are bounded in bytes: large values are remembered only while they fit', async (t) => {
  const waiters = new RunWaiters({ maxRememberedBytes: 10_000 })
  t.teardown(() => waiters.close())
  const big = buildRunWebhook({ values: { messages: ['x'.repeat(20_000)] } })
  waiters.heard(big)
  await t.rejects(waiters.wait(big.run_id, { timeoutMs: 5 }), { code: 'FST_LANGGRAPH_WEBHOOKS_WAIT_TIMEOUT' }, 'a body over the budget is not remembered (measured when its size is not given)')
  const runs = [1, 2, 3].map(() => buildRunWebhook())
  for (const run of runs) waiters.heard(run, 4_000)
  await t.rejects(waiters.wait(runs[0].run_id, { timeoutMs: 5 }), { code: 'FST_LANGGRAPH_WEBHOOKS_WAIT_TIMEOUT' }, 'the oldest made room')
  t.equal(await waiters.wait(runs[2].run_id, { timeoutMs: 1000 }), runs[2])
  t.equal(await waiters.wait(runs[1].run_id, { timeoutMs: 1000 }), runs[1])
})

t.test("a webhook is remembered by its body's length: a body over the budget still resolves a waiter, but not a late caller", async (t) => {
  const { app } = await buildApp()
  t.teardown(() => app.close())
  const large = buildRunWebhook({ values: { messages: ['x'.repeat(2 * 1024 * 1024)] } })
  const waiting = app.langgraphWebhooks.waitForRun(large.run_id, { timeoutMs: 5000 })
  t.equal((await deliverRun(app, large, { token: TOKEN })).statusCode, 204)
  t.equal((await waiting).run_id, large.run_id, 'the waiter already there is resolved')
  await t.rejects(app.langgraphWebhooks.waitForRun(large.run_id, { timeoutMs: 20 }), { code: 'FST_LANGGRAPH_WEBHOOKS_WAIT_TIMEOUT' }, 'a 2 MiB body is not kept for late callers')
  const small = buildRunWebhook()
  t.equal((await deliverRun(app, small, { token: TOKEN })).statusCode, 204)
  t.equal((await app.langgraphWebhooks.waitForRun(small.run_id, { timeoutMs: 1000 })).run_id, small.run_id, 'a small one is')
})

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

async function heapMiB (): Promise<number> {
  for (let i = 0; i < 3; i++) {
    gc()
    await sleep(10)
  }
  return process.memoryUsage().heapUsed / 2 ** 20
}

t.test('10 000 waiters that time out leave memory as it was', async (t) => {
  const { app } = await buildApp({}, { logger: false })
  t.teardown(() => app.close())
  const controller = new AbortController()
  setMaxListeners(20_000, controller.signal)
  // Warm up the code paths, so that compiled code is in the baseline.
  await Promise.allSettled(Array.from({ length: 1000 }, (_, i) => app.langgraphWebhooks.waitForRun(`warm-${i}`, { timeoutMs: 5, signal: controller.signal })))
  const before = await heapMiB()
  const settled = Promise.allSettled(Array.from({ length: 10_000 }, (_, i) =>
    app.langgraphWebhooks.waitForRun(`run-${i}`, { timeoutMs: 300 + (i % 50), signal: controller.signal })))
  const during = await heapMiB()
  const results = await settled
  t.ok(results.every((r) => r.status === 'rejected' && (r.reason as { code?: string }).code === 'FST_LANGGRAPH_WEBHOOKS_WAIT_TIMEOUT'), 'every one timed out')
  results.length = 0
  const after = await heapMiB()
  t.ok(during - before > 1, `the waiters do take memory while they wait: ${before.toFixed(1)} → ${during.toFixed(1)} MiB`)
  t.ok(after - before < 0.5, `heap after GC: ${before.toFixed(1)} → ${after.toFixed(1)} MiB`)
})

t.test('a body stripped of its run_id (allowedFields) resolves nothing, and is not remembered', async (t) => {
  const { app } = await buildApp({ allowedFields: ['status', 'values'] })
  t.teardown(() => app.close())
  const waiting = app.langgraphWebhooks.waitForRun('undefined', { timeoutMs: 100 })
  t.equal((await deliverRun(app, { status: 'success', values: { messages: [] } }, { token: TOKEN })).statusCode, 204)
  await t.rejects(waiting, { code: 'FST_LANGGRAPH_WEBHOOKS_WAIT_TIMEOUT' })
  const waiters = new RunWaiters()
  t.teardown(() => waiters.close())
  waiters.heard({ status: 'success' } as never)
  await t.rejects(waiters.wait('undefined', { timeoutMs: 10 }), { code: 'FST_LANGGRAPH_WEBHOOKS_WAIT_TIMEOUT' })
})

t.test('at most 10 000 callers wait at once: one more is refused with a clear error, and room is made as waits settle', async (t) => {
  const { app } = await buildApp({}, { logger: false })
  t.teardown(() => app.close())
  const controller = new AbortController()
  setMaxListeners(20_000, controller.signal)
  const waiting = Array.from({ length: 10_000 }, (_, i) => app.langgraphWebhooks.waitForRun(`run-${i}`, { signal: controller.signal }))
  await t.rejects(app.langgraphWebhooks.waitForRun('one-more', { timeoutMs: 100 }), { code: 'FST_LANGGRAPH_WEBHOOKS_TOO_MANY_WAITERS', message: /10000 callers are waiting already/ })
  const body = buildRunWebhook({ run_id: 'run-0' })
  await t.rejects(app.langgraphWebhooks.waitForRun('run-0', { timeoutMs: 100 }), { code: 'FST_LANGGRAPH_WEBHOOKS_TOO_MANY_WAITERS' }, 'a second waiter of the same run counts too')
  t.equal((await deliverRun(app, body, { token: TOKEN })).statusCode, 204)
  t.equal((await waiting[0]).run_id, 'run-0')
  const next = app.langgraphWebhooks.waitForRun('another', { timeoutMs: 10 })
  await t.rejects(next, { code: 'FST_LANGGRAPH_WEBHOOKS_WAIT_TIMEOUT' }, 'a settled wait made room for one more')
  controller.abort(new Error('done'))
  await Promise.allSettled(waiting)
})

t.test('a run too deep to measure is delivered to its waiters, and not remembered for late ones', async (t) => {
  const waiters = new RunWaiters()
  t.teardown(() => waiters.close())
  let values: Record<string, unknown> = {}
  for (let i = 0; i < 20_000; i++) values = { a: values }
  const deep = buildRunWebhook({ values })
  const waiting = waiters.wait(deep.run_id)
  waiters.arrived(deep)
  t.equal(await waiting, deep, 'the waiter got it')
  await t.rejects(waiters.wait(deep.run_id, { timeoutMs: 50 }), { code: 'FST_LANGGRAPH_WEBHOOKS_WAIT_TIMEOUT' }, 'a late caller waits for another delivery')
  const shallow = buildRunWebhook()
  waiters.arrived(shallow)
  t.equal(await waiters.wait(shallow.run_id, { timeoutMs: 50 }), shallow, 'a run that can be measured is remembered')
})
