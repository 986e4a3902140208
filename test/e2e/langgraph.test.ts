// End to end: the real LangGraph JS server (@langchain/langgraph-api, in this process)
// delivers run webhooks to a Fastify app with the plugin registered.
import t, { type Test } from 'tap'
import { randomBytes } from 'node:crypto'
import Fastify, { type FastifyRequest } from 'fastify'
import langgraphWebhooks from '../../lib/index.js'
import { startLangGraphServer, waitUntilRunning } from '../../examples/langgraph-server.js'
import { FAIL_PREFIX } from '../../examples/graph.js'

const PATH = '/webhooks/langgraph'
const TIMEOUT_MS = 15_000

/** One request to the webhook route, as the app saw it. */
interface Delivery {
  url: string
  contentType: string | undefined
  userAgent: string | undefined
  statusCode?: number
  /** the run as the catch-all listener received it (a deep copy) */
  run?: any
  /** which listeners were called: 'all', 'error', 'success|interrupted' */
  calls: string[]
}

const token = randomBytes(32).toString('hex')
const wrongToken = 'wrong-' + randomBytes(16).toString('hex')
const lines: string[] = []
const deliveries: Delivery[] = []
const byRequest = new WeakMap<FastifyRequest, Delivery>()

/** The first delivery that matches and got its reply, polled for (the 401 of a wrong token reaches no waiter). */
async function finished (match: (d: Delivery) => boolean, what: string, timeoutMs = TIMEOUT_MS): Promise<Delivery> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const done = deliveries.find((d) => d.statusCode !== undefined && match(d))
    if (done) return done
    if (Date.now() > deadline) {
      const seen = deliveries.map((d) => `${d.run?.run_id ?? '-'} ${d.run?.status ?? '-'} ${d.statusCode}`)
      throw new Error(`no delivery for ${what} within ${timeoutMs} ms; seen: ${JSON.stringify(seen)}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

/** A run's delivery once answered: the plugin's waitForRun resolves as it arrives, its reply follows. */
async function waitForRun (runId: string): Promise<Delivery> {
  await app.langgraphWebhooks.waitForRun(runId, { timeoutMs: TIMEOUT_MS })
  return await finished((d) => d.run?.run_id === runId, `run ${runId}`)
}

// 1. The receiving app, first: the LangGraph server's webhook fetch throws (and kills
//    its worker loop) when nothing listens.
const app = Fastify({
  logger: { level: 'trace', stream: { write (line: string) { lines.push(line) } } }
})
app.addHook('onRequest', async (request) => {
  if (!request.url.startsWith(PATH)) return
  const delivery: Delivery = {
    url: request.url,
    contentType: request.headers['content-type'],
    userAgent: request.headers['user-agent'],
    calls: []
  }
  deliveries.push(delivery)
  byRequest.set(request, delivery)
})
app.addHook('onResponse', async (request, reply) => {
  const delivery = byRequest.get(request)
  if (delivery === undefined) return
  delivery.statusCode = reply.statusCode
})
await app.register(langgraphWebhooks, { token })
app.langgraphWebhooks.onRun((run, { request, log }) => {
  const delivery = byRequest.get(request!)!
  delivery.run = structuredClone(run)
  delivery.calls.push('all')
  log.info({ run_id: run.run_id, status: run.status, webhook: run.kwargs.webhook }, 'e2e listener got a run')
})
app.langgraphWebhooks.onRun('error', (run, { request }) => {
  byRequest.get(request!)!.calls.push('error')
})
app.langgraphWebhooks.onRun(['success', 'interrupted'], async (run, { request }) => {
  await new Promise((resolve) => setImmediate(resolve)) // an async listener is awaited before the reply
  byRequest.get(request!)!.calls.push('success|interrupted')
})
let unsubscribedCalls = 0
const off = app.langgraphWebhooks.onRun(() => { unsubscribedCalls++ })
off()

const port = await new Promise<number>((resolve, reject) => {
  app.listen({ port: 0, host: '127.0.0.1' }).then(() => {
    const address = app.server.address()
    if (address === null || typeof address === 'string') reject(new Error('no port'))
    else resolve(address.port)
  }, reject)
})
const webhook = `http://127.0.0.1:${port}${PATH}?token=${token}`

// 2. The real LangGraph server, with more workers than deliberately failing runs.
const listenersBefore = {
  uncaughtException: process.listeners('uncaughtException').length,
  unhandledRejection: process.listeners('unhandledRejection').length
}
const lg = await startLangGraphServer({ nWorkers: 4 })
const { client, graphId } = lg

t.teardown(async () => {
  await lg.close()
  await app.close()
})

/** Assertions that hold for every delivery that reached a listener. */
function checkDelivery (t: Test, d: Delivery) {
  t.match(d.contentType, /^text\/plain/, 'the JS server sends the JSON body as text/plain')
  t.equal(d.statusCode, 204, 'the route replied 204 once the listeners settled')
  t.notOk(JSON.stringify(d.run).includes(token), 'the listener never sees the token')
  t.type(d.run.kwargs.webhook, 'string')
  t.notOk(d.run.kwargs.webhook.includes(token), 'kwargs.webhook is masked')
  t.ok(d.run.kwargs.webhook.startsWith(`http://127.0.0.1:${port}${PATH}?token=`), 'kwargs.webhook keeps its shape')
  t.ok(Date.parse(d.run.run_started_at) <= Date.parse(d.run.run_ended_at), 'run_started_at <= run_ended_at')
  t.type(d.run.webhook_sent_at, 'string')
}

t.test('a thread run that finishes: success, with the final state in values', async (t) => {
  const thread = await client.threads.create()
  const run = await client.runs.create(thread.thread_id, graphId, { input: { messages: ['hi'] }, webhook })
  const d = await waitForRun(run.run_id)
  checkDelivery(t, d)
  t.equal(d.run.status, 'success')
  t.equal(d.run.thread_id, thread.thread_id)
  t.same(d.run.values, { messages: ['hi', 'echo:1'] })
  t.same(d.run.kwargs.input, { messages: ['hi'] })
  t.equal(d.run.error, undefined)
  t.same(d.calls.sort(), ['all', 'success|interrupted'])
})

t.test('a node that throws: error, with the message in run.error', async (t) => {
  const thread = await client.threads.create()
  const run = await client.runs.create(thread.thread_id, graphId, { input: { messages: ['fail:boom'] }, webhook })
  const d = await waitForRun(run.run_id)
  checkDelivery(t, d)
  t.equal(d.run.status, 'error')
  const message = typeof d.run.error === 'string' ? d.run.error : d.run.error?.message
  t.equal(message, `${FAIL_PREFIX}boom`)
  t.same(d.calls.sort(), ['all', 'error'], 'the error listener ran, the success one did not')
})

t.test('a running run cancelled with action=interrupt: interrupted, no values', async (t) => {
  const thread = await client.threads.create()
  const run = await client.runs.create(thread.thread_id, graphId, { input: { messages: ['sleep:20000'] }, webhook })
  await waitUntilRunning(client, thread.thread_id, run.run_id)
  await client.runs.cancel(thread.thread_id, run.run_id, false, 'interrupt')
  const d = await waitForRun(run.run_id)
  checkDelivery(t, d)
  t.equal(d.run.status, 'interrupted')
  t.equal(d.run.values, undefined, 'the JS server sends no values for a cancelled run')
  t.same(d.calls.sort(), ['all', 'success|interrupted'])
})

t.test('a stateless /runs/wait run: success, no values', async (t) => {
  let runId: string | undefined
  const result = await client.runs.wait(null, graphId, {
    input: { messages: ['stateless'] },
    webhook,
    onRunCreated: (params) => { runId = params.run_id }
  })
  t.same(result, { messages: ['stateless', 'echo:1'] }, 'the wait itself returns the state')
  t.type(runId, 'string')
  const d = await waitForRun(runId!)
  checkDelivery(t, d)
  t.equal(d.run.status, 'success')
  t.equal(d.run.values, undefined, 'stateless runs carry no values')
  t.equal(d.run.kwargs.temporary, true)
  t.type(d.run.thread_id, 'string', 'a temporary thread_id is still sent')
})

t.test('a human-in-the-loop interrupt() and its resume', async (t) => {
  const thread = await client.threads.create()
  const first = await client.runs.create(thread.thread_id, graphId, { input: { messages: ['ask:name?'] }, webhook })
  const d1 = await waitForRun(first.run_id)
  checkDelivery(t, d1)
  t.equal(d1.run.status, 'success', 'the JS server reports a run paused by interrupt() as success')
  t.same(d1.run.values, { messages: ['ask:name?'] }, 'values: the state before the interrupted node')
  t.equal(d1.run.kwargs.command, undefined)

  const second = await client.runs.create(thread.thread_id, graphId, { command: { resume: 'bob' }, webhook })
  const d2 = await waitForRun(second.run_id)
  checkDelivery(t, d2)
  t.equal(d2.run.status, 'success')
  t.equal(d2.run.thread_id, thread.thread_id)
  t.same(d2.run.kwargs.command, { resume: 'bob' }, 'the resume delivery carries kwargs.command')
  t.equal(d2.run.kwargs.input, undefined)
  t.same(d2.run.values, { messages: ['ask:name?', 'echo:1', 'resume:bob'] })
})

t.test("a second run on a busy thread with multitask_strategy 'interrupt': two deliveries", async (t) => {
  const thread = await client.threads.create()
  const first = await client.runs.create(thread.thread_id, graphId, { input: { messages: ['sleep:20000'] }, webhook })
  await waitUntilRunning(client, thread.thread_id, first.run_id)
  const second = await client.runs.create(thread.thread_id, graphId, {
    input: { messages: ['second'] },
    webhook,
    multitaskStrategy: 'interrupt'
  })
  const [d1, d2] = await Promise.all([waitForRun(first.run_id), waitForRun(second.run_id)])
  checkDelivery(t, d1)
  checkDelivery(t, d2)
  t.equal(d1.run.status, 'interrupted')
  t.equal(d1.run.values, undefined)
  t.equal(d2.run.status, 'success')
  t.equal(d2.run.multitask_strategy, 'interrupt')
  t.same(d2.run.values.messages.slice(-2), ['second', 'echo:2'])
})

t.test('a webhook URL with a wrong token: 401, no listener called', async (t) => {
  const thread = await client.threads.create()
  const bad = `http://127.0.0.1:${port}${PATH}?token=${wrongToken}`
  await client.runs.create(thread.thread_id, graphId, { input: { messages: ['hi'] }, webhook: bad })
  const d = await finished((d) => d.url.includes(wrongToken), 'the wrong-token request')
  t.equal(d.statusCode, 401)
  t.equal(d.run, undefined)
  t.same(d.calls, [])
})

t.test('wire and log facts over all deliveries', async (t) => {
  const received = deliveries.filter((d) => d.run !== undefined)
  t.equal(received.length, 8, 'eight runs reached the listeners')
  t.equal(new Set(received.map((d) => d.run.run_id)).size, received.length, 'one delivery per run')
  for (const d of deliveries) {
    t.match(d.contentType, /^text\/plain/, `content-type ${d.contentType}`)
    t.equal(d.userAgent, 'node', 'user-agent node')
  }
  t.equal(unsubscribedCalls, 0, 'an unsubscribed listener is never called')
  t.ok(lines.length > 0, 'the app logged')
  t.ok(lines.some((l) => l.includes('e2e listener got a run')), 'listener logs are captured')
  t.same(lines.filter((l) => l.includes(token)), [], 'the token appears in no log line')
  t.same(lines.filter((l) => l.includes(wrongToken)), [], 'nor does a wrong token')
})

t.test('close() restores the process listeners and stops the server', async (t) => {
  await lg.close()
  t.equal(process.listeners('uncaughtException').length, listenersBefore.uncaughtException)
  t.equal(process.listeners('unhandledRejection').length, listenersBefore.unhandledRejection)
  await t.rejects(fetch(`${lg.url}/ok`), 'the LangGraph server no longer listens')
})
