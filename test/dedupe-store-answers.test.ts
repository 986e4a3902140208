/**
 * Dedupe stores may answer synchronously, asynchronously, or mix both, and
 * may throw synchronously: every such answer keeps its reply (a complete
 * that throws still acknowledges, a reserve that throws is a 503).
 */
import t, { type Test } from 'tap'
import Fastify from 'fastify'
import langgraphWebhooks, { RETRY_AFTER_SECONDS, type DedupeStore, type LanggraphWebhooksOptions } from '../lib/index.js'
import { buildRunWebhook, deliverRun } from '../lib/testing.js'

const TOKEN = 'store-answers-token-5d1f3a7c9e2b4d6f8a0c2e4b6d8f0a1c'

async function receiver (t: Test, options: Partial<LanggraphWebhooksOptions>) {
  const lines: string[] = []
  const app = Fastify({ logger: { level: 'info', stream: { write: (line: string) => { lines.push(line) } } } })
  await app.register(langgraphWebhooks, { token: TOKEN, ...options })
  t.teardown(() => app.close())
  return {
    deliver: (run = buildRunWebhook()) => deliverRun(app, run, { token: TOKEN }),
    logs: () => lines.map((line) => JSON.parse(line) as { level: number, msg: string, key?: string, err?: { message?: string } })
  }
}

t.test('a store whose complete throws synchronously: the delivery is still acknowledged, and the failure logged', async (t) => {
  let calls = 0
  const store: DedupeStore = {
    reserve: () => 'reserved',
    complete: () => { throw new Error('store down') },
    release: () => {}
  }
  const { deliver, logs } = await receiver(t, { dedupe: { store }, onRun: () => { calls++ } })
  const run = buildRunWebhook()
  const res = await deliver(run)
  t.equal(res.statusCode, 204)
  t.equal(calls, 1)
  const failure = logs().find((entry) => entry.msg === 'dedupe store failed to complete a run webhook')
  t.ok(failure, 'logged')
  t.equal(failure?.key, `${run.run_id}:success`)
  t.equal(failure?.err?.message, 'store down')
})

t.test('a store whose reserve throws synchronously: 503 with Retry-After, listeners not called', async (t) => {
  let calls = 0
  const store: DedupeStore = {
    reserve: () => { throw new Error('store down') },
    complete: () => {},
    release: () => {}
  }
  const { deliver } = await receiver(t, { dedupe: { store }, onRun: () => { calls++ } })
  const res = await deliver()
  t.equal(res.statusCode, 503)
  t.equal(res.headers['retry-after'], String(RETRY_AFTER_SECONDS))
  t.equal(res.json().code, 'FST_LANGGRAPH_WEBHOOKS_DEDUPE_UNAVAILABLE')
  t.equal(calls, 0)
})

t.test('synchronous and asynchronous answers of one store, in every combination', async (t) => {
  const handled = new Set<string>()
  let asyncReserve = false
  let asyncComplete = false
  const store: DedupeStore = {
    reserve (key) {
      const result = handled.has(key) ? 'done' : 'reserved'
      return asyncReserve ? Promise.resolve(result) : result
    },
    complete (key) {
      handled.add(key)
      return asyncComplete ? Promise.resolve() : undefined
    },
    release: () => {}
  }
  let calls = 0
  const { deliver } = await receiver(t, { dedupe: { store }, onRun: () => { calls++ } })
  for (const [reserve, complete] of [[false, false], [true, false], [false, true], [true, true]]) {
    asyncReserve = reserve
    asyncComplete = complete
    const run = buildRunWebhook()
    const before = calls
    t.equal((await deliver(run)).statusCode, 204, `reserve ${reserve ? 'async' : 'sync'}, complete ${complete ? 'async' : 'sync'}: delivered`)
    t.equal((await deliver(run)).statusCode, 204, 'the duplicate acknowledged')
    t.equal(calls - before, 1, 'the listener ran once')
  }
})

t.test('ack received with a synchronous store: 202 first, the key completed', async (t) => {
  const store: DedupeStore & { completed: string[] } = {
    completed: [],
    reserve: () => 'reserved',
    complete (key) { this.completed.push(key) },
    release: () => {}
  }
  const { deliver } = await receiver(t, { dedupe: { store }, ack: 'received', onRun: () => {} })
  const run = buildRunWebhook()
  t.equal((await deliver(run)).statusCode, 202)
  t.same(store.completed, [`${run.run_id}:success`])
})
