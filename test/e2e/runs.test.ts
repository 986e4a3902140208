// Runs the application starts through the plugin, against the real LangGraph
// JS server in this process: their webhooks resolve waitForRun, and runs
// whose webhook was lost or failed are reconciled from the server.
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import Fastify, { type FastifyInstance } from 'fastify'
import { Type } from '@sinclair/typebox'
import langgraphWebhooks, { serializeRequest, type LanggraphClient, type LanggraphWebhooksOptions, type RunContext, type RunWebhook } from '../../lib/index.js'
import { startLangGraphServer, waitUntilRunning } from '../../examples/langgraph-server.js'
import { FAIL_PREFIX } from '../../examples/graph.js'
import { MAX_FAILURES } from '../../lib/runs/reconcile.js'
import { MAX_TRACKED_MS } from '../../lib/runs/tracker.js'
import { freePort } from '../helpers/redis-server.js'

const token = randomBytes(32).toString('hex')
const RECONCILE = { reconcileAfterMs: 300, reconcileEveryMs: 150 }

/** What the listeners of one app saw. */
interface Seen {
  run: RunWebhook
  reconciled: boolean
}

// The LangGraph server calls the receivers: they must listen before runs start.
const lg = await startLangGraphServer({ nWorkers: 4 })
const { client, graphId } = lg
t.teardown(() => lg.close())

const lines: string[] = []

/** An app listening on a port of its own, with the plugin; `webhookPath` is where its runs' webhooks go. */
async function receiver (
  options: { webhookPath?: string, setup?: (app: FastifyInstance) => void, reconcile?: typeof RECONCILE, sdk?: LanggraphClient } & Partial<LanggraphWebhooksOptions> = {}
): Promise<{ app: FastifyInstance, seen: Seen[] }> {
  const { webhookPath = '/webhooks/langgraph', setup, reconcile = RECONCILE, sdk = client, ...rest } = options
  const port = await freePort()
  const app = Fastify({
    logger: { level: 'debug', serializers: { req: serializeRequest }, stream: { write: (line: string) => { lines.push(line) } } }
  })
  // Where webhooks lead nowhere: a 404 (Fastify's own 404 would log the URL, token included).
  app.post('/nowhere', async (request, reply) => reply.code(404).send())
  await app.register(langgraphWebhooks, {
    token,
    langgraph: { client: sdk, webhookUrl: `http://127.0.0.1:${port}${webhookPath}`, ...reconcile },
    ...rest
  } as LanggraphWebhooksOptions)
  const seen: Seen[] = []
  app.langgraphWebhooks.onRun((run, { reconciled }: RunContext) => {
    seen.push({ run: structuredClone(run), reconciled })
  })
  setup?.(app)
  await app.listen({ port, host: '127.0.0.1' })
  t.teardown(() => app.close())
  return { app, seen }
}

const of = (seen: Seen[], runId: string): Seen[] => seen.filter((s) => s.run.run_id === runId)

t.test('runs.create on a thread: the webhook arrives and resolves waitForRun', async (t) => {
  const { app, seen } = await receiver()
  const thread = await client.threads.create()
  const run = await app.langgraphWebhooks.runs.create(thread.thread_id, graphId, { input: { messages: ['hi'] } })
  t.equal(run.status, 'pending', 'runs.create returns the SDK run')
  const delivered = await app.langgraphWebhooks.waitForRun(run.run_id, { timeoutMs: 10_000 })
  t.equal(delivered.status, 'success')
  t.same(delivered.values, { messages: ['hi', 'echo:1'] })
  t.notOk(JSON.stringify(delivered).includes(token), 'the waiter gets the run with its token masked')
  t.match(delivered.kwargs.webhook, /\?token=\[REDACTED\]$/, 'the webhook the plugin set is the route, token masked')
  await sleep(RECONCILE.reconcileAfterMs * 2)
  t.same(of(seen, run.run_id).map((s) => s.reconciled), [false], 'delivered once, by its webhook: handled, it is no longer tracked')
})

t.test('runs.create stateless (null): the webhook arrives and resolves waitForRun', async (t) => {
  const { app, seen } = await receiver()
  const run = await app.langgraphWebhooks.runs.create(null, graphId, { input: { messages: ['stateless'] } })
  const delivered = await app.langgraphWebhooks.waitForRun(run.run_id, { timeoutMs: 10_000 })
  t.equal(delivered.status, 'success')
  t.equal(delivered.values, undefined, 'stateless runs carry no values')
  await sleep(RECONCILE.reconcileAfterMs * 2)
  t.same(of(seen, run.run_id).map((s) => s.reconciled), [false])
})

t.test('runs.stream on a thread: yields the chunks, and its webhook resolves waitForRun', async (t) => {
  const { app, seen } = await receiver()
  const thread = await client.threads.create()
  const events: string[] = []
  let runId: string | undefined
  for await (const chunk of app.langgraphWebhooks.runs.stream(thread.thread_id, graphId, { input: { messages: ['streamed'] }, streamMode: 'values' })) {
    events.push(chunk.event)
    if (chunk.event === 'metadata') runId = chunk.data.run_id
  }
  t.same(events, ['metadata', 'values', 'values'])
  const delivered = await app.langgraphWebhooks.waitForRun(runId!, { timeoutMs: 10_000 })
  t.same(delivered.values, { messages: ['streamed', 'echo:1'] })
  t.same(of(seen, runId!).map((s) => s.reconciled), [false])
})

t.test('runs.createBatch: stateless runs, each webhook resolving waitForRun, each delivered once', async (t) => {
  const { app, seen } = await receiver()
  const runs = await app.langgraphWebhooks.runs.createBatch([
    { assistantId: graphId, input: { messages: ['first'] } },
    { assistantId: graphId, input: { messages: ['second'] } }
  ])
  t.equal(runs.length, 2, 'createBatch returns the SDK runs')
  const delivered = await Promise.all(runs.map((run) => app.langgraphWebhooks.waitForRun(run.run_id, { timeoutMs: 10_000 })))
  t.same(delivered.map((run) => run.status), ['success', 'success'])
  t.match(delivered[0].kwargs.webhook, /\?token=\[REDACTED\]$/, 'the webhook the plugin set is the route, token masked')
  await sleep(RECONCILE.reconcileAfterMs * 2)
  t.same(runs.map((run) => of(seen, run.run_id).map((s) => s.reconciled)), [[false], [false]], 'handled by their webhooks: no longer tracked')
})

t.test('runs.createBatch: runs whose webhook leads nowhere are tracked, and reconciled (their threads kept)', async (t) => {
  const { app, seen } = await receiver({ webhookPath: '/nowhere' })
  // The SDK sends a batch's payloads as given: the server's own field name.
  const runs = await app.langgraphWebhooks.runs.createBatch([{ assistantId: graphId, input: { messages: ['kept'] }, on_completion: 'keep' }])
  const delivered = await app.langgraphWebhooks.waitForRun(runs[0].run_id, { timeoutMs: 10_000 })
  t.equal(delivered.status, 'success')
  t.equal(delivered.values, undefined, 'a stateless run carries no values')
  t.same(of(seen, runs[0].run_id).map((s) => s.reconciled), [true], 'reconciled')
})

t.test('the first handling fails (the JS server does not retry): the run is reconciled and handled once more', async (t) => {
  const failed = new Set<string>()
  const replies: number[] = []
  const { app, seen } = await receiver({
    setup (app) {
      app.langgraphWebhooks.onRun((run) => {
        if (!failed.has(run.run_id)) {
          failed.add(run.run_id)
          throw new Error('the database is down')
        }
      })
      app.addHook('onResponse', async (request, reply) => { if (request.url.startsWith('/webhooks/')) replies.push(reply.statusCode) })
    }
  })
  const thread = await client.threads.create()
  const run = await app.langgraphWebhooks.runs.create(thread.thread_id, graphId, { input: { messages: ['flaky'] } })
  await app.langgraphWebhooks.waitForRun(run.run_id)
  const deadline = Date.now() + 10_000
  while (of(seen, run.run_id).length < 2 && Date.now() < deadline) await sleep(20)
  await sleep(RECONCILE.reconcileEveryMs * 3)
  t.same(replies, [500], 'the webhook was answered 500, and never sent again')
  const deliveries = of(seen, run.run_id)
  t.same(deliveries.map((s) => s.reconciled), [false, true], 'then reconciled once, successfully')
  t.equal(deliveries[1].run.status, 'success')
  t.same(deliveries[1].run.values, { messages: ['flaky', 'echo:1'] }, 'with the thread\'s values')
  t.notOk(JSON.stringify(deliveries[1].run).includes(token), 'the reconciled run has its token masked')
})

t.test('the webhook URL leads nowhere: runs are delivered by reconciliation alone', async (t) => {
  // The webhooks go to a path that answers 404 (a closed port would kill a server worker).
  const { app, seen } = await receiver({ webhookPath: '/nowhere' })
  const [slowThread, failingThread] = await Promise.all([client.threads.create(), client.threads.create()])
  const [slow, failing] = await Promise.all([
    app.langgraphWebhooks.runs.create(slowThread.thread_id, graphId, { input: { messages: ['sleep:900'] } }),
    app.langgraphWebhooks.runs.create(failingThread.thread_id, graphId, { input: { messages: ['fail:boom'] } })
  ])

  t.test('a run still running at the first check is delivered once when it ends, with its values', async (t) => {
    const delivered = await app.langgraphWebhooks.waitForRun(slow.run_id, { timeoutMs: 10_000 })
    t.equal(delivered.status, 'success')
    t.same(delivered.values, { messages: ['sleep:900', 'echo:1'] })
    t.ok(lines.some((line) => line.includes(slow.run_id) && line.includes('not finished yet')), 'it was checked while running')
    await sleep(RECONCILE.reconcileEveryMs * 3)
    const deliveries = of(seen, slow.run_id)
    t.same(deliveries.map((s) => s.reconciled), [true], 'delivered once')
    t.type(deliveries[0].run.webhook_sent_at, 'string')
  })

  t.test('a run cancelled while running is reconciled as interrupted, without values (as the JS server sends it)', async (t) => {
    const thread = await client.threads.create()
    const run = await app.langgraphWebhooks.runs.create(thread.thread_id, graphId, { input: { messages: ['sleep:30000'] } })
    await waitUntilRunning(client, thread.thread_id, run.run_id)
    await client.runs.cancel(thread.thread_id, run.run_id, false, 'interrupt')
    const delivered = await app.langgraphWebhooks.waitForRun(run.run_id, { timeoutMs: 10_000 })
    t.equal(delivered.status, 'interrupted')
    t.equal(delivered.values, undefined)
  })

  t.test('a failed run is reconciled as error, with its error', async (t) => {
    const delivered = await app.langgraphWebhooks.waitForRun(failing.run_id, { timeoutMs: 10_000 })
    t.equal(delivered.status, 'error')
    t.equal(delivered.error, FAIL_PREFIX + 'boom', 'the error the webhook would have carried')
    t.same(delivered.values, { messages: ['fail:boom'] }, 'and the thread\'s state')
    t.same(of(seen, failing.run_id).map((s) => s.reconciled), [true])
  })
})

t.test('a webhook arriving after its run was reconciled reaches no listener', async (t) => {
  // The webhook is held in transit until the run was reconciled.
  let reconciled: () => void
  const held = new Promise<void>((resolve) => { reconciled = resolve })
  const replies: number[] = []
  const { app, seen } = await receiver({
    setup (app) {
      app.addHook('onRequest', async (request) => { if (request.url.startsWith('/webhooks/')) await held })
      app.addHook('onResponse', async (request, reply) => { if (request.url.startsWith('/webhooks/')) replies.push(reply.statusCode) })
      app.langgraphWebhooks.onRun((run, { reconciled: isReconciled }) => { if (isReconciled) reconciled() })
    }
  })

  const thread = await client.threads.create()
  const run = await app.langgraphWebhooks.runs.create(thread.thread_id, graphId, { input: { messages: ['late'] } })
  const delivered = await app.langgraphWebhooks.waitForRun(run.run_id, { timeoutMs: 10_000 })
  const deadline = Date.now() + 10_000
  while (replies.length === 0 && Date.now() < deadline) await sleep(20)
  t.same(replies, [204], 'the late webhook is acknowledged')
  t.same(of(seen, run.run_id).map((s) => s.reconciled), [true], 'only the reconciliation reached the listeners')
  t.same(delivered.values, { messages: ['late', 'echo:1'] })
  t.ok(lines.some((line) => line.includes(run.run_id) && line.includes('reconciled already')), 'the refusal is logged')
})

t.test('a reconciled run whose values fail the valuesSchema is logged and dropped', async (t) => {
  const Numbers = Type.Object({ messages: Type.Array(Type.Number()) })
  const { app, seen } = await receiver({ webhookPath: '/nowhere', valuesSchema: Numbers })
  const thread = await client.threads.create()
  const run = await app.langgraphWebhooks.runs.create(thread.thread_id, graphId, { input: { messages: ['text'] } })
  const deadline = Date.now() + 10_000
  while (!lines.some((line) => line.includes(run.run_id) && line.includes('not a valid run webhook')) && Date.now() < deadline) await sleep(20)
  await sleep(RECONCILE.reconcileEveryMs * 3)
  t.same(of(seen, run.run_id), [], 'no listener got it')
  t.equal(lines.filter((line) => line.includes(run.run_id) && line.includes('not a valid run webhook')).length, 1, 'dropped after one try')
})

t.test('a fetched run that is not a run webhook (a server or proxy that leaves out created_at) is logged and dropped', async (t) => {
  // The real server, behind a fetch that strips a required field from runs.get's answer.
  const stripping = new (client.constructor as typeof import('@langchain/langgraph-sdk').Client)({
    apiUrl: lg.url,
    callerOptions: {
      async fetch (url: string, init: RequestInit) {
        const response = await fetch(url, init)
        if (init?.method !== undefined && init.method !== 'GET') return response
        if (!/\/runs\/[^/]+$/.test(new URL(url).pathname)) return response
        const { created_at: _, ...rest } = await response.json() as Record<string, unknown>
        return new Response(JSON.stringify(rest), { status: response.status, headers: { 'content-type': 'application/json' } })
      }
    }
  })
  const { app, seen } = await receiver({ webhookPath: '/nowhere', sdk: stripping })
  const thread = await client.threads.create()
  const run = await app.langgraphWebhooks.runs.create(thread.thread_id, graphId, { input: { messages: ['stripped'] } })
  const dropped = (): string[] => lines.filter((line) => line.includes(run.run_id) && line.includes('not a valid run webhook'))
  const deadline = Date.now() + 10_000
  while (dropped().length === 0 && Date.now() < deadline) await sleep(20)
  await sleep(RECONCILE.reconcileEveryMs * 3)
  t.equal(dropped().length, 1, 'dropped at once')
  t.match(dropped()[0], /created_at is required/)
  t.same(of(seen, run.run_id), [])
})

t.test('a run that cannot be fetched any more (a stateless run\'s thread is deleted with it) is dropped after a few tries', async (t) => {
  const { app, seen } = await receiver({ webhookPath: '/nowhere' })
  const run = await app.langgraphWebhooks.runs.create(null, graphId, { input: { messages: ['gone'] } })
  const mine = (): string[] => lines.filter((line) => line.includes(run.run_id))
  const deadline = Date.now() + 10_000
  while (!mine().some((line) => line.includes('it is dropped')) && Date.now() < deadline) await sleep(20)
  await sleep(RECONCILE.reconcileEveryMs * 3)
  const tries = mine().filter((line) => line.includes('could not be fetched'))
  t.equal(tries.length, MAX_FAILURES, `${MAX_FAILURES} tries`)
  t.match(JSON.parse(tries.at(-1)!), { level: 50, failures: MAX_FAILURES, msg: /it is dropped/ }, 'the last one logged as an error')
  t.same(of(seen, run.run_id), [])
})

t.test('a reconciled delivery whose listener fails is tried again at the next check', async (t) => {
  let failures = 0
  const { app, seen } = await receiver({
    webhookPath: '/nowhere',
    setup (app) {
      app.langgraphWebhooks.onRun(() => { if (failures++ === 0) throw new Error('not yet') })
    }
  })
  const thread = await client.threads.create()
  const run = await app.langgraphWebhooks.runs.create(thread.thread_id, graphId, { input: { messages: ['again'] } })
  const deadline = Date.now() + 10_000
  while (of(seen, run.run_id).length < 2 && Date.now() < deadline) await sleep(20)
  await sleep(RECONCILE.reconcileEveryMs * 3)
  t.same(of(seen, run.run_id).map((s) => s.reconciled), [true, true], 'delivered twice: the failure, then the success')
  t.ok(lines.some((line) => line.includes(run.run_id) && line.includes('could not be delivered; it is checked again later')))
})

t.test('a run tracked for longer than a day is dropped, with a warning', async (t) => {
  const { app, seen } = await receiver({ webhookPath: '/nowhere', reconcile: { reconcileAfterMs: 60_000, reconcileEveryMs: 100 } })
  const thread = await client.threads.create()
  const run = await app.langgraphWebhooks.runs.create(thread.thread_id, graphId, { input: { messages: ['old'] } })
  const realNow = Date.now
  t.capture(Date, 'now', () => realNow() + MAX_TRACKED_MS)
  const deadline = realNow() + 5_000
  while (!lines.some((line) => line.includes(run.run_id) && line.includes('no longer reconciled')) && realNow() < deadline) await sleep(20)
  t.ok(lines.some((line) => line.includes(run.run_id) && line.includes('no longer reconciled')))
  t.same(of(seen, run.run_id), [])
})

t.test('a webhook whose listeners are slow keeps the reconciliation out', async (t) => {
  const { app, seen } = await receiver({
    setup (app) {
      app.langgraphWebhooks.onRun(() => sleep(RECONCILE.reconcileAfterMs * 3))
    }
  })
  const thread = await client.threads.create()
  const run = await app.langgraphWebhooks.runs.create(thread.thread_id, graphId, { input: { messages: ['slow listener'] } })
  const deadline = Date.now() + 10_000
  const refused = (): boolean => lines.some((line) => line.includes(run.run_id) && line.includes('reconciled run not delivered: its webhook has it'))
  while (!refused() && Date.now() < deadline) await sleep(20)
  t.ok(refused(), 'the reconciliation found the run finished, and its webhook in the listeners')
  await sleep(RECONCILE.reconcileAfterMs * 3)
  t.same(of(seen, run.run_id).map((s) => s.reconciled), [false], 'only the webhook reached the listeners')
})

t.test('the token is in no log line', async (t) => {
  t.ok(lines.length > 0)
  t.same(lines.filter((line) => line.includes(token)), [])
})
