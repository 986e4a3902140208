// Load and soak over real HTTP on loopback: 50 concurrent senders mix valid
// deliveries, duplicates (sequential and simultaneous) and invalid requests,
// while 10 % of listener attempts fail and the senders retry every 500 and
// 503 until it is 204. In the end every run was handled exactly once, no
// reply was unexpected, no listener ran for an invalid request, and memory
// after a full GC did not grow beyond a stated bound. The dedupe store holds
// at most MAX_KEYS keys and is full before the first measurement, so the
// bound measures leaks, not the store's intended growth; duplicates are
// sent for recent runs only, whose keys the store still holds.
//
// Bounded: SOAK_SECONDS (default 3) of load, loopback only; set it higher
// (e.g. SOAK_SECONDS=160) for a longer soak.
import t from 'tap'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { gzipSync } from 'node:zlib'
import Fastify from 'fastify'
import langgraphWebhooks from '../lib/index.js'
import { buildRunWebhook } from '../lib/testing.js'

const TOKEN = 'soak-token-5b7d9f1a3c5e7a9b1d3f5a7c9e1b3d5f'
const PATH = '/webhooks/langgraph'
const SECONDS = Number(process.env.SOAK_SECONDS ?? 3)
const CONCURRENCY = 50
const FAILURE_RATE = 0.1
const MAX_RUNS = 2_000_000
/** The dedupe store's bound: small, so that the warm-up fills it. */
const MAX_KEYS = 500
/** Duplicates are sent for one of the last RECENT handled runs: far fewer than MAX_KEYS, so their keys are still held. */
const RECENT = 100
/** Heap growth allowed between the end of the warm-up and the end, after a full GC. */
const HEAP_BOUND_MB = 16
/** Growth of memory outside the JS heap (Buffers, sockets' native memory as V8 sees it). */
const EXTERNAL_BOUND_MB = 8
/**
 * RSS growth allowed over the same span. Loose: RSS after GC wanders by tens
 * of MiB (pages V8 and malloc keep); the heap and external bounds are the
 * sharp ones. The test process is both server and client.
 */
const RSS_BOUND_MB = 128

t.setTimeout((SECONDS + 90) * 1000)

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void
const MiB = 2 ** 20
/** Memory after a full GC; RSS as the least of three samples, as freed pages return lazily. */
async function memory (): Promise<{ heap: number, external: number, rss: number }> {
  let rss = Infinity
  for (let i = 0; i < 3; i++) {
    gc()
    await sleep(100)
    rss = Math.min(rss, process.memoryUsage.rss())
  }
  const { heapUsed, external } = process.memoryUsage()
  return { heap: heapUsed / MiB, external: external / MiB, rss: rss / MiB }
}

t.test(`${CONCURRENCY} concurrent senders for ${SECONDS} s: every run handled exactly once, 0 unexpected replies, memory stable`, async (t) => {
  const app = Fastify({ logger: false })
  await app.register(langgraphWebhooks, { token: TOKEN, dedupe: { maxKeys: MAX_KEYS } })

  // Per run (run_id `soak-<index>`): listener successes and failures.
  const successes = new Uint8Array(MAX_RUNS)
  const failures = new Uint8Array(MAX_RUNS)
  const failedReplies = new Uint8Array(MAX_RUNS)
  let strayCalls = 0
  app.langgraphWebhooks.onRun(async (run) => {
    const match = /^soak-(\d+)$/.exec(run.run_id)
    if (match === null) { strayCalls++; return }
    const index = Number(match[1])
    // Some listeners are asynchronous, some take a moment: deliveries overlap.
    if (index % 3 !== 0) await sleep(index % 4)
    if (Math.random() < FAILURE_RATE) {
      failures[index]++
      throw new Error('the application failed (on purpose)')
    }
    successes[index]++
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  // Every connection the senders opened: keep-alive reuses them across requests.
  let opened = 0
  app.server.on('connection', () => { opened++ })
  const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
  t.teardown(() => app.close())

  const unexpected: string[] = []
  const counts = new Map<string, number>()
  const count = (what: string) => counts.set(what, (counts.get(what) ?? 0) + 1)
  let runs = 0
  let requests = 0

  async function send (url: string, body: string | Buffer, headers: Record<string, string> = {}): Promise<number> {
    requests++
    const reply = await fetch(url, { method: 'POST', body, headers: { 'content-type': 'text/plain;charset=UTF-8', ...headers } })
    await reply.arrayBuffer()
    return reply.status
  }

  /** Delivers run `index` until it is acknowledged, retrying 500 and 503 as a sender does. */
  async function deliver (index: number, body: string): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      const status = await send(`${base}${PATH}?token=${TOKEN}`, body)
      count(`valid: ${status}`)
      if (status === 204) return
      if (status === 500) failedReplies[index]++
      else if (status !== 503) {
        unexpected.push(`run ${index}: ${status}`)
        return
      }
      if (attempt > 50) {
        unexpected.push(`run ${index}: still not handled after 50 attempts`)
        return
      }
      await sleep(2 + attempt * 2)
    }
  }

  const invalid: Array<[string, number, () => Promise<number>]> = [
    ['wrong token', 401, () => send(`${base}${PATH}?token=wrong`, JSON.stringify(buildRunWebhook({ run_id: 'invalid-token' })))],
    ['token twice', 401, () => send(`${base}${PATH}?token=${TOKEN}&token=${TOKEN}`, JSON.stringify(buildRunWebhook({ run_id: 'invalid-twice' })))],
    ['not a run', 400, () => send(`${base}${PATH}?token=${TOKEN}`, JSON.stringify({ ...buildRunWebhook({ run_id: 'invalid-run' }), status: 7 }))],
    ['not JSON', 400, () => send(`${base}${PATH}?token=${TOKEN}`, '{"run_id":')],
    ['__proto__', 400, () => send(`${base}${PATH}?token=${TOKEN}`, JSON.stringify(buildRunWebhook({ run_id: 'invalid-proto' })).replace('{', '{"__proto__":{"x":1},'))],
    ['XML', 415, () => send(`${base}${PATH}?token=${TOKEN}`, '<run/>', { 'content-type': 'application/xml' })],
    ['gzip', 415, () => send(`${base}${PATH}?token=${TOKEN}`, gzipSync(JSON.stringify(buildRunWebhook({ run_id: 'invalid-gzip' }))), { 'content-encoding': 'gzip' })],
    ['trailing slash', 404, () => send(`${base}${PATH}/?token=${TOKEN}`, JSON.stringify(buildRunWebhook({ run_id: 'invalid-slash' })))]
  ]

  // The last RECENT handled runs, as a ring: the test's own memory stays flat.
  const recent = new Int32Array(RECENT)
  let handled = 0
  async function sender (deadline: number, minRuns = 0): Promise<void> {
    while (Date.now() < deadline || runs < minRuns) {
      const roll = Math.random()
      if (roll < 0.7) {
        const index = runs++
        const body = JSON.stringify(buildRunWebhook({ run_id: `soak-${index}` }))
        // 5 %: the same delivery twice at once (a retry racing the original).
        if (roll < 0.035) await Promise.all([deliver(index, body), deliver(index, body)])
        else await deliver(index, body)
        recent[handled++ % RECENT] = index
      } else if (roll < 0.8 && handled > 0) {
        // A duplicate of a handled run, sent again later: acknowledged, not run.
        const index = recent[Math.floor(Math.random() * Math.min(handled, RECENT))]
        const status = await send(`${base}${PATH}?token=${TOKEN}`, JSON.stringify(buildRunWebhook({ run_id: `soak-${index}` })))
        count(`duplicate: ${status}`)
        if (status !== 204) unexpected.push(`duplicate of run ${index}: ${status}`)
      } else {
        const [name, expected, request] = invalid[Math.floor(Math.random() * invalid.length)]
        const status = await request()
        count(`${name}: ${status}`)
        if (status !== expected) unexpected.push(`${name}: ${status}, expected ${expected}`)
      }
    }
  }

  const started = Date.now()
  const warmUp = Math.min(5, SECONDS / 4) * 1000
  // The warm-up lasts until the store is full (with a margin), so that it
  // stays full while memory is measured; on a slow machine that takes longer,
  // and the measured span keeps at least half the duration.
  await Promise.all(Array.from({ length: CONCURRENCY }, () => sender(started + warmUp, MAX_KEYS * 1.5)))
  const runsBefore = runs
  const before = await memory()
  const requestsBefore = requests
  const measuredMs = Math.max(started + SECONDS * 1000 - Date.now(), SECONDS * 500)
  const measuredFrom = Date.now()
  await Promise.all(Array.from({ length: CONCURRENCY }, () => sender(measuredFrom + measuredMs)))
  const elapsed = (Date.now() - started) / 1000
  const after = await memory()

  t.same(unexpected, [], '0 unexpected replies')
  t.equal(strayCalls, 0, 'no listener ran for an invalid request')
  let notOnce = 0
  let failedAttempts = 0
  let mismatched = 0
  for (let i = 0; i < runs; i++) {
    if (successes[i] !== 1) notOnce++
    failedAttempts += failures[i]
    if (failedReplies[i] !== failures[i]) mismatched++
  }
  t.equal(notOnce, 0, `each of the ${runs} runs was handled exactly once`)
  t.ok(failedAttempts > runs * FAILURE_RATE * 0.5, `${failedAttempts} listener attempts failed and were retried`)
  t.equal(mismatched, 0, 'each failed attempt was answered 500, and only those were')
  t.ok((counts.get('valid: 503') ?? 0) > 0, 'simultaneous duplicates met 503 in flight')

  const heapGrowth = after.heap - before.heap
  const rssGrowth = after.rss - before.rss
  const externalGrowth = after.external - before.external
  t.ok(heapGrowth < HEAP_BOUND_MB, `heap after GC: ${before.heap.toFixed(1)} → ${after.heap.toFixed(1)} MiB (growth ${heapGrowth.toFixed(1)} < ${HEAP_BOUND_MB} MiB, ${runs} runs, ${runs - runsBefore} of them while measured, the dedupe store full at ${MAX_KEYS} keys)`)
  t.ok(externalGrowth < EXTERNAL_BOUND_MB, `external memory after GC: ${before.external.toFixed(1)} → ${after.external.toFixed(1)} MiB (growth < ${EXTERNAL_BOUND_MB} MiB)`)
  // A refusal before the body is read (401, 415) closes its connection; the rest keep theirs.
  t.ok(opened < requests / 4, `${opened} connections opened for ${requests} requests (keep-alive, not one per request)`)
  t.ok(rssGrowth < RSS_BOUND_MB, `RSS: ${before.rss.toFixed(0)} → ${after.rss.toFixed(0)} MiB (growth ${rssGrowth.toFixed(0)} < ${RSS_BOUND_MB} MiB)`)
  t.comment(`${requests} requests in ${elapsed.toFixed(1)} s (${Math.round(requests / elapsed)}/s; ${requests - requestsBefore} after the warm-up); replies: ${JSON.stringify(Object.fromEntries([...counts].sort()))}`)

  // The server still answers, and shuts down cleanly. A run outside the
  // soak's ids: its listener does not fail on purpose, so 204 is certain.
  t.equal(await send(`${base}${PATH}?token=${TOKEN}`, JSON.stringify(buildRunWebhook({ run_id: 'after-the-soak' }))), 204, 'the next delivery is served')
})
